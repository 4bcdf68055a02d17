"""Training the child classifier: candidates, thresholds at a recall target, the person gate.

Candidates (logistic regressions, small MLPs; scikit-learn, imported inside the functions) fit
on the training photos; validation picks the model and the thresholds; the test part is only
reported. Every figure is measured on the ONNX scores the indexer will compute.

>>> threshold_for_recall(np.array([0.9, 0.8, 0.7, 0.2, 0.1]), np.array([1, 1, 0, 1, 0]), 0.6)
0.8
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pixsearch.db.errors import InvalidInputError
from pixsearch.exporter.child_data import (
    DEFAULT_PERSON_RECALL,
    DEFAULT_RECALL,
    DEFAULT_SEED,
    PERSON_LABELS_TEXT,
)
from pixsearch.exporter.child_export import (
    Layers,
    Stage,
    check_parity,
    onnx_scores,
    stages_to_onnx,
)

Log = Callable[[str], None]


def _log_nothing(_: str) -> None:
    return None


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count one half).

    >>> roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    0.75
    """
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    # average rank (1-based) of each distinct score
    ends = np.cumsum(counts)
    average = ends - (counts - 1) / 2.0
    ranks = average[inverse]
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def threshold_for_recall(scores: np.ndarray, labels: np.ndarray, target: float) -> float:
    """The highest threshold ``t`` with recall of ``scores >= t`` at least ``target``."""
    if not 0 < target <= 1:
        raise InvalidInputError(f"the recall target must be in (0, 1], not {target!r}")
    positives = np.sort(np.asarray(scores)[np.asarray(labels).astype(bool)])[::-1]
    if len(positives) == 0:
        raise InvalidInputError("no positive example to choose a threshold on")
    needed = math.ceil(target * len(positives) - 1e-9)
    return float(positives[needed - 1])


def binary_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    """Counts and rates of ``scores >= threshold`` against ``labels``, plus ROC-AUC."""
    labels = np.asarray(labels).astype(bool)
    flagged = np.asarray(scores) >= threshold
    tp = int((flagged & labels).sum())
    fp = int((flagged & ~labels).sum())
    fn = int((~flagged & labels).sum())
    tn = int((~flagged & ~labels).sum())
    return {
        "photos": len(labels),
        "positives": int(labels.sum()),
        "roc_auc": round(roc_auc(scores, labels), 4),
        "recall": round(tp / max(tp + fn, 1), 4),
        "false_positive_rate": round(fp / max(fp + tn, 1), 4),
        "precision": round(tp / max(tp + fp, 1), 4),
        "flagged_share": round(int(flagged.sum()) / max(len(labels), 1), 4),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


@dataclass
class Candidate:
    """One model configuration to try: ``make()`` returns an unfitted scikit-learn pipeline."""

    name: str
    make: Callable[[], Any]


def default_candidates(seed: int = DEFAULT_SEED) -> list[Candidate]:
    """Logistic regressions over a range of ``C`` and two small MLPs (all on scaled features)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def logreg(c: float) -> Candidate:
        return Candidate(
            f"logistic regression C={c:g}",
            lambda: make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000)),
        )

    def mlp(hidden: int, alpha: float) -> Candidate:
        return Candidate(
            f"MLP {hidden} ReLU alpha={alpha:g}",
            lambda: make_pipeline(
                StandardScaler(),
                MLPClassifier(
                    hidden_layer_sizes=(hidden,),
                    alpha=alpha,
                    early_stopping=True,
                    validation_fraction=0.1,
                    n_iter_no_change=10,
                    max_iter=300,
                    random_state=seed,
                ),
            ),
        )

    return [
        logreg(0.0003),
        logreg(0.001),
        logreg(0.003),
        logreg(0.01),
        mlp(256, 1.0),
        mlp(256, 10.0),
    ]


def pipeline_layers(pipeline: Any) -> Layers:
    """Dense layers of a fitted ``StandardScaler`` + ``LogisticRegression``/``MLPClassifier``
    pipeline, with the scaler folded into the first layer (float64)."""
    steps = [step for _, step in pipeline.steps]
    scaler, model = (steps[0], steps[-1]) if len(steps) == 2 else (None, steps[-1])
    if hasattr(model, "coefs_"):
        if model.activation != "relu" or model.out_activation_ != "logistic":
            raise InvalidInputError("only ReLU MLPs with a logistic output can be exported")
        layers = [
            (np.asarray(w, np.float64), np.asarray(b, np.float64))
            for w, b in zip(model.coefs_, model.intercepts_, strict=True)
        ]
    elif hasattr(model, "coef_"):
        if model.coef_.shape[0] != 1:
            raise InvalidInputError("only binary logistic regression can be exported")
        layers = [(np.asarray(model.coef_.T, np.float64), np.asarray(model.intercept_, np.float64))]
    else:
        raise InvalidInputError(f"cannot export a {type(model).__name__}")
    if scaler is not None:
        mean = np.asarray(scaler.mean_, np.float64)
        scale = np.asarray(scaler.scale_, np.float64)
        w, b = layers[0]
        layers[0] = (w / scale[:, None], b - (mean / scale) @ w)
    return layers


def person_candidates() -> list[Candidate]:
    """Logistic regressions for the person gate (on scaled features)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def logreg(c: float) -> Candidate:
        return Candidate(
            f"person logistic regression C={c:g}",
            lambda: make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000)),
        )

    return [logreg(0.001), logreg(0.003), logreg(0.01)]


def _logit(p: float | np.ndarray) -> Any:
    p = np.clip(np.asarray(p, np.float64), 1e-15, 1 - 1e-15)
    return np.log(p / (1 - p))


def model_logits(model: Any, features: np.ndarray) -> np.ndarray:
    """Float64 logits of a fitted scikit-learn classifier (decision function when it has one)."""
    if hasattr(model, "decision_function"):
        try:
            return np.asarray(model.decision_function(features), np.float64).reshape(-1)
        except AttributeError:  # a pipeline whose last step has no decision function (MLP)
            pass
    return _logit(model.predict_proba(features)[:, 1])


@dataclass
class TrainedClassifier:
    """What :func:`train_child_classifier` chose and measured."""

    name: str
    onnx_bytes: bytes
    threshold: float
    target_recall: float
    validation: dict[str, Any]
    test: dict[str, Any] | None
    train: dict[str, Any]
    candidates: list[dict[str, Any]]
    parity: dict[str, float]
    seconds: float
    split: dict[str, int] = field(default_factory=dict)
    person: dict[str, Any] | None = None
    """The person gate (``None``: one stage): model, recall target, probability thresholds of
    both stages, and its candidates."""
    no_person_flagged: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per split: photos whose captions name no person, and how many of them are flagged."""


def _fit_candidates(
    candidates: Sequence[Candidate],
    features: np.ndarray,
    labels: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    target: float,
    log: Log,
) -> tuple[list[dict[str, Any]], list[tuple[Any, Candidate, dict[str, Any]]]]:
    rows, fitted = [], []
    for candidate in candidates:
        t0 = time.perf_counter()
        model = candidate.make().fit(features[train], labels[train])
        scores = model.predict_proba(features[val])[:, 1]
        metrics = binary_metrics(
            scores, labels[val], threshold_for_recall(scores, labels[val], target)
        )
        row = {
            "model": candidate.name,
            "val_roc_auc": metrics["roc_auc"],
            "val_fpr_at_target": metrics["false_positive_rate"],
            "val_recall": metrics["recall"],
            "seconds": round(time.perf_counter() - t0, 1),
        }
        rows.append(row)
        fitted.append((model, candidate, metrics))
        log(f"{candidate.name}: {row}")
    return rows, fitted


def train_child_classifier(
    features: np.ndarray,
    labels: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    test: np.ndarray | None = None,
    *,
    target_recall: float = DEFAULT_RECALL,
    candidates: Sequence[Candidate] | None = None,
    seed: int = DEFAULT_SEED,
    person_labels: np.ndarray | None = None,
    person_recall: float = DEFAULT_PERSON_RECALL,
    person_models: Sequence[Candidate] | None = None,
    log: Log = _log_nothing,
) -> TrainedClassifier:
    """Fit the candidates on ``train``, choose models and thresholds on ``val``, export to ONNX.

    The child model: lowest validation false-positive rate at the recall target, then highest
    ROC-AUC. With ``person_labels`` a person gate is added (module docstring): each of
    ``person_models`` keeps ``person_recall`` of the validation photos with people, the child
    threshold under it keeps ``target_recall`` of the combined rule, and the lowest combined
    false-positive rate wins. ``test`` (rows never looked at while choosing) is only measured.
    """
    started = time.perf_counter()
    features = np.asarray(features, np.float32)
    labels = np.asarray(labels).astype(np.int64)
    if len(np.unique(labels[train])) < 2 or labels[val].sum() == 0:
        raise InvalidInputError("train needs both classes and validation needs positives")
    candidates = list(candidates) if candidates is not None else default_candidates(seed)
    rows, fitted = _fit_candidates(candidates, features, labels, train, val, target_recall, log)
    model, chosen, _ = min(fitted, key=lambda f: (f[2]["false_positive_rate"], -f[2]["roc_auc"]))
    check_rows = np.concatenate([val, test]) if test is not None else val
    child_layers = pipeline_layers(model)
    name = chosen.name
    person: dict[str, Any] | None = None
    if person_labels is None:
        stages: list[Stage] = [(child_layers, 0.0)]
        reference = model.predict_proba(features[check_rows])[:, 1]
    else:
        person_labels = np.asarray(person_labels).astype(np.int64)
        if len(np.unique(person_labels[train])) < 2 or person_labels[val].sum() == 0:
            raise InvalidInputError("the person gate needs both classes in train and validation")
        if (labels & (1 - person_labels)).any():
            raise InvalidInputError("every photo labelled as showing a child must show a person")
        zc_val = model_logits(model, features[val])
        options = []
        for candidate in person_models if person_models is not None else person_candidates():
            t0 = time.perf_counter()
            gate_model = candidate.make().fit(features[train], person_labels[train])
            zp_val = model_logits(gate_model, features[val])
            person_shift = threshold_for_recall(zp_val, person_labels[val], person_recall)
            gated = np.where(zp_val >= person_shift, zc_val, -np.inf)
            child_shift = threshold_for_recall(gated, labels[val], target_recall)
            if not np.isfinite(child_shift):
                raise InvalidInputError("the person gate drops too many child photos")
            combined = binary_metrics(gated, labels[val], child_shift)
            row = {
                "model": candidate.name,
                "person_val_roc_auc": round(roc_auc(zp_val, person_labels[val]), 4),
                "gate_person_recall": round(
                    float((zp_val[person_labels[val] == 1] >= person_shift).mean()), 4
                ),
                "gate_pass_share": round(float((zp_val >= person_shift).mean()), 4),
                "gate_child_recall": round(
                    float((zp_val[labels[val] == 1] >= person_shift).mean()), 4
                ),
                "val_fpr_at_target": combined["false_positive_rate"],
                "val_recall": combined["recall"],
                "seconds": round(time.perf_counter() - t0, 1),
            }
            log(f"{candidate.name}: {row}")
            options.append((row, gate_model, candidate, person_shift, child_shift))
        row, gate_model, gate, person_shift, child_shift = min(
            options, key=lambda o: (o[0]["val_fpr_at_target"], -o[0]["person_val_roc_auc"])
        )
        stages = [(pipeline_layers(gate_model), person_shift), (child_layers, child_shift)]
        z = np.minimum(
            model_logits(gate_model, features[check_rows]) - person_shift,
            model_logits(model, features[check_rows]) - child_shift,
        )
        reference = 1.0 / (1.0 + np.exp(-z))
        name = f"{gate.name} (recall {person_recall:g}) AND child {chosen.name}"
        person = {
            "model": gate.name,
            "child_model": chosen.name,
            "labels": PERSON_LABELS_TEXT,
            "target_recall": person_recall,
            "person_threshold": float(1.0 / (1.0 + np.exp(-person_shift))),
            "child_threshold": float(1.0 / (1.0 + np.exp(-child_shift))),
            "chosen": row,
            "candidates": [o[0] for o in options],
        }
    onnx_bytes = stages_to_onnx(stages, feature_dim=features.shape[1])
    parity = check_parity(reference, onnx_scores(onnx_bytes, features[check_rows]))
    # The threshold and every reported figure come from the ONNX scores the indexer computes.
    val_scores = onnx_scores(onnx_bytes, features[val])
    threshold = threshold_for_recall(val_scores, labels[val], target_recall)
    result = TrainedClassifier(
        name=name,
        onnx_bytes=onnx_bytes,
        threshold=threshold,
        target_recall=target_recall,
        validation=binary_metrics(val_scores, labels[val], threshold),
        test=(
            binary_metrics(onnx_scores(onnx_bytes, features[test]), labels[test], threshold)
            if test is not None and len(test)
            else None
        ),
        train=binary_metrics(onnx_scores(onnx_bytes, features[train]), labels[train], threshold),
        candidates=rows,
        parity=parity,
        seconds=0.0,
        split={
            "train": len(train),
            "validation": len(val),
            "test": len(test) if test is not None else 0,
        },
        person=person,
    )
    result.seconds = round(time.perf_counter() - started, 1)
    return result
