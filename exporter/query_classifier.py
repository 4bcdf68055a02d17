"""The query policy's learned second opinion: train, threshold, export, add to the bundle.

``pixsearch train-policy DATA --only queries`` runs :func:`run_train_queries`: texts from
:mod:`pixsearch.exporter.query_data`, embedded by the bundle's own text encoder (the int8 ONNX
model that encodes queries at search time, cached by :func:`text_features`); a logistic
regression and two small MLPs fitted on the training part; the one with the best validation
recall at its threshold kept. Its threshold is set on validation so that at most
``--query-fpr`` of each kind of validation texts *not* about children (captions, reworded
captions, near misses) is flagged. A query is blocked when the lexicon **or** this classifier
says so, so the threshold guards the near misses, and the lexicon keeps recall where the
classifier is unsure.

The model is exported like the child-photo classifier, the scaler folded into the first
layer: ``query_classifier.onnx``, input ``features float32 [N,384]`` (the query's text
embedding, the one search computes anyway), output ``scores float32 [N]``. The manifest
section is ``policy.query_classifier``.

>>> round(threshold_for_fpr(np.array([0.1, 0.2, 0.3, 0.9]), 0.25), 6)  # flags 0.9 only
0.3
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pixsearch.exporter.query_data import DEFAULT_SEED, LABELS_TEXT, QueryTexts, load_query_texts

ONNX_FILE = "query_classifier.onnx"
DEFAULT_FPR = 0.003
"""Share of each kind of validation texts not about children the classifier may flag: the
lexicon is the first opinion, so the second one is held to a low false-positive rate."""
C_VALUES = (0.01, 0.1, 1.0)
COMMAND = "pixsearch train-policy DATA --only queries"
NEAR_MISS_REPEATS = 5
"""Times each training near miss is shown (they are few: ~1,500 of ~57,000 texts)."""

Log = Callable[[str], None]


def choose_threshold(scores: np.ndarray, data: QueryTexts, fpr: float) -> float:
    """The lowest threshold flagging at most ``fpr`` of the validation negatives of *each* kind
    (captions, reworded captions, near misses): near misses are held to the same rate as
    captions although they are few."""
    return max(
        threshold_for_fpr(scores[data.mask("validation", kind) & (data.labels == 0)], fpr)
        for kind in ("caption", "reworded", "near miss")
    )


def threshold_for_fpr(negative_scores: np.ndarray, fpr: float) -> float:
    """The lowest threshold that flags at most ``fpr`` of ``negative_scores`` (``>=`` flags)."""
    scores = np.sort(np.asarray(negative_scores, np.float64))[::-1]
    allowed = int(np.floor(fpr * len(scores)))
    if allowed >= len(scores):
        return 0.0
    # strictly above the first score that must not be flagged
    return float(np.float32(scores[allowed]) + np.float32(1e-7))


@dataclass
class QueryClassifierReport:
    """What :func:`run_train_queries` trained, measured and wrote."""

    name: str
    threshold: float
    target_fpr: float
    seed: int
    onnx_bytes: bytes
    feature_source: str
    metrics: dict[str, Any]
    candidates: list[dict[str, Any]]
    parity: dict[str, float]
    counts: dict[str, int]
    bundle_id: str | None = None
    bundle_dir: str | None = None
    card_path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    from pixsearch.exporter.child_train import roc_auc

    flagged = scores >= threshold
    positive = labels.astype(bool)
    return {
        "texts": len(labels),
        "positives": int(positive.sum()),
        "roc_auc": round(roc_auc(scores, labels), 4) if 0 < positive.sum() < len(labels) else None,
        "recall": round(float(flagged[positive].mean()), 4) if positive.any() else None,
        "false_positive_rate": (
            round(float(flagged[~positive].mean()), 4) if (~positive).any() else None
        ),
    }


def _split_metrics(
    scores: np.ndarray, data: QueryTexts, split: str, threshold: float
) -> dict[str, Any]:
    out = {"all": _metrics(scores[data.mask(split)], data.labels[data.mask(split)], threshold)}
    for kind in ("caption", "reworded", "near miss"):
        mask = data.mask(split, kind)
        out[kind] = _metrics(scores[mask], data.labels[mask], threshold)
    return out


def candidates(seed: int = DEFAULT_SEED) -> list[tuple[str, Callable[[], Any]]]:
    """A logistic regression and two small MLPs, on standardised embeddings."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def mlp(alpha: float) -> Callable[[], Any]:
        return lambda: make_pipeline(
            StandardScaler(),
            MLPClassifier(
                (256,), alpha=alpha, early_stopping=True, max_iter=200, random_state=seed
            ),
        )

    return [
        (
            "logistic regression C=0.1",
            lambda: make_pipeline(
                StandardScaler(), LogisticRegression(C=0.1, max_iter=3000, random_state=seed)
            ),
        ),
        ("MLP 256 ReLU alpha=0.1", mlp(0.1)),
        ("MLP 256 ReLU alpha=1", mlp(1.0)),
    ]


def train_query_classifier(
    data: QueryTexts,
    embeddings: np.ndarray,
    *,
    target_fpr: float = DEFAULT_FPR,
    seed: int = DEFAULT_SEED,
    log: Log = print,
) -> tuple[str, Any, list[dict[str, Any]]]:
    """Fit each candidate on train; keep the best validation recall at its own threshold."""
    from pixsearch.exporter.child_train import roc_auc

    train, val = np.flatnonzero(data.mask("train")), data.mask("validation")
    near = np.flatnonzero(data.mask("train", "near miss"))
    rows = np.concatenate([train, np.repeat(near, NEAR_MISS_REPEATS - 1)])
    y = data.labels
    results = []
    best: tuple[float, str, Any] | None = None
    for name, make in candidates(seed):
        start = time.perf_counter()
        model = make().fit(embeddings[rows], y[rows])
        scores = np.zeros(len(y))
        scores[val] = model.predict_proba(embeddings[val])[:, 1]
        auc = roc_auc(scores[val], y[val])
        threshold = choose_threshold(scores, data, target_fpr)
        recall = float((scores[val & (y == 1)] >= threshold).mean())
        results.append(
            {
                "model": name,
                "validation_roc_auc": round(auc, 4),
                "validation_threshold": round(threshold, 4),
                "validation_recall": round(recall, 4),
            }
        )
        log(
            f"  {name}: validation ROC-AUC {auc:.4f}, recall {recall:.3f} at threshold "
            f"{threshold:.4f} ({time.perf_counter() - start:.1f} s)"
        )
        if best is None or recall > best[0]:
            best = (recall, name, model)
    assert best is not None
    return best[1], best[2], results


def run_train_queries(
    data_dir: str | Path,
    *,
    bundle_dir: str | Path | None = None,
    out_dir: str | Path = "policy-report",
    target_fpr: float = DEFAULT_FPR,
    seed: int = DEFAULT_SEED,
    cache_dir: str | Path | None = None,
    write_bundle: bool = True,
    log: Log = print,
) -> QueryClassifierReport:
    """Train the query classifier, export it, measure it and (by default) add it to the bundle."""
    from pixsearch.exporter.child_export import check_parity, layers_to_onnx, onnx_scores
    from pixsearch.exporter.child_train import pipeline_layers
    from pixsearch.exporter.features import text_features
    from pixsearch.indexer.models import ModelBundle

    bundle = ModelBundle.load(bundle_dir)
    english = _english_only(bundle)
    data = load_query_texts(data_dir, seed)
    counts = {
        f"{split}/{kind}": int(data.mask(split, kind).sum())
        for split in ("train", "validation", "test")
        for kind in ("caption", "reworded", "near miss")
    }
    log(f"texts: {len(data.texts)} ({int(data.labels.sum())} about children); embedding...")
    embeddings = text_features(data.texts, english, cache_dir)
    name, model, tried = train_query_classifier(
        data, embeddings, target_fpr=target_fpr, seed=seed, log=log
    )
    layers = pipeline_layers(model)
    onnx_bytes = layers_to_onnx(layers, feature_dim=embeddings.shape[1])
    scores = np.asarray(onnx_scores(onnx_bytes, embeddings), np.float64)
    parity = check_parity(model.predict_proba(embeddings)[:, 1], scores)
    # the threshold is read off the ONNX scores search will compute
    threshold = choose_threshold(scores, data, target_fpr)
    metrics = {
        split: _split_metrics(scores, data, split, threshold) for split in ("validation", "test")
    }
    report = QueryClassifierReport(
        name=name,
        threshold=threshold,
        target_fpr=target_fpr,
        seed=seed,
        onnx_bytes=onnx_bytes,
        feature_source=bundle.files[bundle.manifest["models"]["text_encoder"]["file"]],
        metrics=metrics,
        candidates=tried,
        parity=parity,
        counts=counts,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    card = out / "query_classifier.json"
    card.write_text(json.dumps(_summary(report), indent=2) + "\n", encoding="utf-8")
    report.card_path = str(card)
    if write_bundle:
        report.bundle_dir = str(bundle.path)
        report.bundle_id = write_to_bundle(report, bundle.path)
    return report


def _english_only(bundle: Any) -> Any:
    """``bundle`` with every text going through its English text encoder (the one the
    manifest's ``text_encoder`` names and the cache is keyed by), also texts with Cyrillic
    letters, which search routes to a multilingual encoder (and leaves to the lexicon)."""
    encoder = copy.copy(bundle.text_encoder)
    encoder.multilingual = None
    view = copy.copy(bundle)
    view.text_encoder = encoder
    return view


def _summary(report: QueryClassifierReport) -> dict[str, Any]:
    return {
        "model": report.name,
        "threshold": report.threshold,
        "target_fpr": report.target_fpr,
        "seed": report.seed,
        "feature_source": report.feature_source,
        "metrics": report.metrics,
        "candidates": report.candidates,
        "parity": report.parity,
        "texts": report.counts,
    }


def write_to_bundle(report: QueryClassifierReport, bundle_dir: Path) -> str:
    """Add the ONNX file and ``policy.query_classifier`` to the bundle; the new id."""
    from pixsearch.exporter.bundle_update import add_policy_model

    section = {
        "file": ONNX_FILE,
        "threshold": report.threshold,
        "model": report.name + " on standardised text embeddings (scaler folded in)",
        "rule": "blocked = lexicon finds a child term OR scores >= threshold",
        "inputs": {"features": "float32 [N,384] the query's text_encoder embedding (L2)"},
        "outputs": {"scores": "float32 [N] in [0,1]; about children = scores >= threshold"},
        "feature_source": report.feature_source,
        "labels": LABELS_TEXT,
        "threshold_rule": (
            f"the lowest threshold flagging at most {report.target_fpr:g} of each kind of "
            "validation texts not about children (captions split by photo, reworded "
            "captions, near misses)"
        ),
        "metrics": report.metrics,
        "parity": report.parity,
        "seed": report.seed,
        "command": COMMAND
        + (f" --seed {report.seed}" if report.seed != DEFAULT_SEED else "")
        + (f" --query-fpr {report.target_fpr:g}" if report.target_fpr != DEFAULT_FPR else ""),
    }

    return add_policy_model("query_classifier", ONNX_FILE, report.onnx_bytes, section, bundle_dir)
