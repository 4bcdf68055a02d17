"""Reporting the child classifier: customer-photo figures, the model card and ``metrics.json``.

>>> _percent(0.1234)
'12.3%'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pixsearch.exporter.child_data import CUSTOMER_FOLDER, LABELS_TEXT, PhotoLabels
from pixsearch.exporter.child_export import PARITY_MAX_ABS
from pixsearch.exporter.child_train import TrainedClassifier


@dataclass
class PolicyTrainReport:
    """What ``pixsearch train-policy`` did: the classifier, the data, the customer photos."""

    classifier: TrainedClassifier
    photos: int
    positives: int
    missing_photos: int
    customer: dict[str, Any]
    seed: int
    bundle_dir: str | None
    bundle_id: str | None
    feature_source: str
    card_path: Path | None = None

    def manifest_metrics(self) -> dict[str, Any]:
        c = self.classifier
        keys = ("roc_auc", "recall", "false_positive_rate", "precision", "photos", "positives")
        return {
            "target_recall": c.target_recall,
            "validation": {k: c.validation[k] for k in keys},
            "test": {k: c.test[k] for k in keys} if c.test else None,
            "customer_photos_flagged": self.customer.get("flagged"),
            "customer_photos": self.customer.get("photos"),
            "no_person_photos_flagged": c.no_person_flagged,
            "split": {**c.split, "seed": self.seed, "grouped_by": "photo file sha256"},
        }


def customer_figures(
    labels: PhotoLabels,
    scores: np.ndarray,
    threshold: float,
    parts: dict[str, np.ndarray],
    folder: str = CUSTOMER_FOLDER,
) -> dict[str, Any]:
    """How many of the customer's photos (``practicum/train_images``) the classifier flags."""
    is_customer = np.array([folder in p.as_posix() for p in labels.paths])
    rows = np.flatnonzero(is_customer)
    flagged = scores[rows] >= threshold
    caption_child = labels.labels[rows].astype(bool)
    persons = labels.person_labels
    by_part = {}
    for name, part in parts.items():
        inside = np.isin(rows, part)
        by_part[name] = {"photos": int(inside.sum()), "flagged": int(flagged[inside].sum())}
    return {
        "photos": len(rows),
        "flagged": int(flagged.sum()),
        "caption_labelled_child": int(caption_child.sum()),
        "flagged_and_caption_child": int((flagged & caption_child).sum()),
        "missed_caption_child": int((~flagged & caption_child).sum()),
        "caption_no_person": int((persons[rows] == 0).sum()) if persons is not None else None,
        "flagged_and_caption_no_person": (
            int((flagged & (persons[rows] == 0)).sum()) if persons is not None else None
        ),
        "by_split": by_part,
    }


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def model_card(report: PolicyTrainReport) -> str:
    """The model card (Markdown) with every figure of the run."""
    c = report.classifier
    v, t, cu = c.validation, c.test, report.customer
    lines = [
        "# Child-photo classifier (content policy, issue #4)",
        "",
        f"Labels: {LABELS_TEXT}. Inputs: the image encoder's pooled features "
        f"(`image_encoder.onnx` sha256 `{report.feature_source[:16]}…`). Output: a score in "
        "[0,1]; the indexer sets `restricted = score >= threshold`, and a restricting profile "
        "excludes restricted photos inside the vector search.",
        "",
        f"Photos: {report.photos} ({report.positives} labelled as showing a child, "
        f"{_percent(report.positives / max(report.photos, 1))}); {report.missing_photos} "
        f"captioned images without a file. Split grouped by photo content (seed {report.seed}): "
        f"train {c.split['train']}, validation {c.split['validation']} (model choice and "
        f"threshold), test {c.split['test']} (untouched until the end).",
        "",
        f"**Chosen: {c.name}**, threshold **{c.threshold:.6f}** (the highest that keeps recall "
        f">= {c.target_recall:g} on validation).",
        "",
        "| split | photos | with a child | ROC-AUC | recall | false-positive rate | precision |"
        " flagged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in (("validation", v), ("test", t), ("train", c.train)):
        if m is None:
            continue
        lines.append(
            f"| {name} | {m['photos']} | {m['positives']} | {m['roc_auc']:.4f} | "
            f"{_percent(m['recall'])} ({m['tp']}/{m['tp'] + m['fn']}) | "
            f"{_percent(m['false_positive_rate'])} ({m['fp']}/{m['fp'] + m['tn']}) | "
            f"{_percent(m['precision'])} | {_percent(m['flagged_share'])} |"
        )
    lines += [
        "",
        f"Customer photos (`{CUSTOMER_FOLDER}`): **{cu['flagged']} of {cu['photos']} flagged**; "
        f"{cu['caption_labelled_child']} are labelled as showing a child by their captions, "
        f"{cu['flagged_and_caption_child']} of them flagged, {cu['missed_caption_child']} missed. "
        "By split (photos in train were fitted on, so their figure is optimistic): "
        + ", ".join(f"{k} {p['flagged']}/{p['photos']}" for k, p in cu["by_split"].items())
        + ".",
        "",
    ]
    if c.no_person_flagged:
        lines += [
            "Photos whose captions name no person, flagged: "
            + ", ".join(f"{k} {p['flagged']}/{p['photos']}" for k, p in c.no_person_flagged.items())
            + (
                f"; customer photos {cu['flagged_and_caption_no_person']}/"
                f"{cu['caption_no_person']}."
                if cu.get("caption_no_person") is not None
                else "."
            ),
            "",
        ]
    if c.person:
        g = c.person
        lines += [
            "## Person gate",
            "",
            f"Rule: `restricted = person_present AND child_score >= t`. Person labels: "
            f"{g['labels']}. Gate: {g['model']}, probability threshold "
            f"{g['person_threshold']:.6f} (keeps {g['target_recall']:g} of the validation photos "
            f"with people); child probability threshold {g['child_threshold']:.6f}. The ONNX "
            "score is `sigmoid(min(z_person - logit(person_threshold), z_child - "
            "logit(child_threshold)))`: it reaches 0.5 exactly when both stages pass.",
            "",
            "| person model | person ROC-AUC | gate recall (people) | gate recall (children) |"
            " passes the gate | combined FPR at the recall target |",
            "|---|---|---|---|---|---|",
        ]
        for row in g["candidates"]:
            mark = " (chosen)" if row["model"] == g["model"] else ""
            lines.append(
                f"| {row['model']}{mark} | {row['person_val_roc_auc']:.4f} | "
                f"{_percent(row['gate_person_recall'])} | {_percent(row['gate_child_recall'])} | "
                f"{_percent(row['gate_pass_share'])} | {_percent(row['val_fpr_at_target'])} |"
            )
        lines.append("")
    lines += [
        "## Child candidates (fit on train, scored on validation, alone)",
        "",
        "| model | ROC-AUC | false-positive rate at the recall target | seconds |",
        "|---|---|---|---|",
    ]
    for row in c.candidates:
        mark = " (chosen)" if row["model"] == c.name else ""
        lines.append(
            f"| {row['model']}{mark} | {row['val_roc_auc']:.4f} | "
            f"{_percent(row['val_fpr_at_target'])} | {row['seconds']} |"
        )
    lines += [
        "",
        f"ONNX parity with scikit-learn on {c.parity['rows']} validation + test photos: max abs "
        f"diff {c.parity['max_abs_diff']:.2e} (allowed {PARITY_MAX_ABS:g}).",
        "",
        "## Limits",
        "",
        "- Labels come from captions: a child that no caption mentions is a negative, and "
        "captions that call adults `girls`/`boys` make positives (the text rule favours recall).",
        "- Recall was set on a validation part of a few hundred photos with children; on the "
        "test part it lands near the target, not above it for sure. Photos unlike Flickr8k "
        "(studio portraits, drawings, crowds far away) are not measured.",
        "- A restricted photo is excluded under `strict`; a missed child photo is shown.",
        "- The person gate is as good as its captions: a person no caption names is a negative.",
        "",
        f"Reproduce: `pixsearch train-policy DATA --recall {c.target_recall:g} --seed "
        f"{report.seed}"
        + (f" --person-recall {c.person['target_recall']:g}" if c.person else " --no-person-gate")
        + f"` ({c.seconds} s of training after the features are cached).",
        "",
    ]
    return "\n".join(lines)


def write_model_card(report: PolicyTrainReport, out_dir: Path) -> Path:
    """Write ``model_card.md`` and ``metrics.json`` into ``out_dir``; returns the card's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    card = out_dir / "model_card.md"
    card.write_text(model_card(report), encoding="utf-8")
    c = report.classifier
    metrics = {
        "model": c.name,
        "threshold": c.threshold,
        "target_recall": c.target_recall,
        "validation": c.validation,
        "test": c.test,
        "train": c.train,
        "candidates": c.candidates,
        "person_gate": c.person,
        "no_person_flagged": c.no_person_flagged,
        "parity": c.parity,
        "customer": report.customer,
        "photos": report.photos,
        "positives": report.positives,
        "seed": report.seed,
        "bundle_id": report.bundle_id,
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return card
