"""The child classifier as ONNX: dense layers -> one graph, its numpy reference, parity, bundle.

Each stage of the rule is a stack of dense layers (ReLU between them) ending in one logit; the
graph outputs ``sigmoid(min_i(z_i - shift_i))`` so ``score >= 0.5`` exactly when every stage
passes. The float64 numpy reference of the same arithmetic is what parity is measured against.

>>> import numpy as np
>>> layers = [(np.array([[1.0], [-1.0]]), np.array([0.0]))]
>>> layers_reference(np.array([[2.0, 2.0], [1.0, 0.0]]), layers).round(4).tolist()
[0.5, 0.7311]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pixsearch.db.errors import InvalidInputError
from pixsearch.exporter._onnx_tools import float_graph_bytes
from pixsearch.exporter.bundle_update import add_policy_model
from pixsearch.exporter.child_data import (
    DEFAULT_PERSON_RECALL,
    DEFAULT_RECALL,
    DEFAULT_SEED,
    LABELS_TEXT,
)
from pixsearch.exporter.parity import ParityError

if TYPE_CHECKING:
    from pixsearch.exporter.child_report import PolicyTrainReport

ONNX_FILE = "child_classifier.onnx"


PARITY_MAX_ABS = 1e-4
"""Largest allowed |ONNX score - scikit-learn probability| on the parity features."""


Layers = list[tuple[np.ndarray, np.ndarray]]
"""Dense layers ``(W [in,out], b [out])``: ReLU between them, a sigmoid after the last one."""


Stage = tuple[Layers, float]
"""One stage of the rule: its dense layers and the logit its threshold sits at."""


def _layers_logit(features: np.ndarray, layers: Layers) -> np.ndarray:
    x = np.asarray(features, np.float64)
    for i, (w, b) in enumerate(layers):
        x = x @ w + b
        if i < len(layers) - 1:
            x = np.maximum(x, 0.0)
    return x[:, 0]


def stages_reference(features: np.ndarray, stages: Sequence[Stage]) -> np.ndarray:
    """``sigmoid(min_i(z_i - shift_i))`` in float64 numpy (the exported graph's reference)."""
    z = np.min([_layers_logit(features, layers) - shift for layers, shift in stages], axis=0)
    return 1.0 / (1.0 + np.exp(-z))


def layers_reference(features: np.ndarray, layers: Layers) -> np.ndarray:
    """The exported network in float64 numpy (the parity reference for hand-made layers)."""
    return stages_reference(features, [(layers, 0.0)])


def stages_to_onnx(stages: Sequence[Stage], feature_dim: int = 1280) -> bytes:
    """Serialised ONNX: ``features float32 [N,feature_dim]`` -> ``scores float32 [N]``, the
    sigmoid of the smallest shifted stage logit (one stage with shift 0: a plain classifier)."""
    from onnx import helper, numpy_helper

    if not stages:
        raise InvalidInputError("at least one stage is needed")
    initializers, nodes, outputs = [], [], []
    for s, (layers, shift) in enumerate(stages):
        if layers[0][0].shape[0] != feature_dim or layers[-1][0].shape[1] != 1:
            raise InvalidInputError("layers must map [N,feature_dim] to one logit")
        prefix = f"s{s}_" if len(stages) > 1 else ""
        current = "features"
        for i, (w, b) in enumerate(layers):
            bias = np.asarray(b, np.float64) - (shift if i == len(layers) - 1 else 0.0)
            initializers += [
                numpy_helper.from_array(np.ascontiguousarray(w, np.float32), f"{prefix}w{i}"),
                numpy_helper.from_array(np.ascontiguousarray(bias, np.float32), f"{prefix}b{i}"),
            ]
            nodes += [
                helper.make_node("MatMul", [current, f"{prefix}w{i}"], [f"{prefix}mm{i}"]),
                helper.make_node("Add", [f"{prefix}mm{i}", f"{prefix}b{i}"], [f"{prefix}z{i}"]),
            ]
            current = f"{prefix}z{i}"
            if i < len(layers) - 1:
                nodes.append(helper.make_node("Relu", [current], [f"{prefix}h{i}"]))
                current = f"{prefix}h{i}"
        outputs.append(current)
    if len(outputs) > 1:
        nodes.append(helper.make_node("Min", outputs, ["logit"]))
        current = "logit"
    initializers.append(numpy_helper.from_array(np.array([-1], np.int64), "flat"))
    nodes += [
        helper.make_node("Sigmoid", [current], ["prob"]),
        helper.make_node("Reshape", ["prob", "flat"], ["scores"]),
    ]
    return float_graph_bytes(
        nodes,
        "child_classifier",
        [("features", ["batch", feature_dim])],
        [("scores", ["batch"])],
        initializers,
    )


def layers_to_onnx(layers: Layers, feature_dim: int = 1280) -> bytes:
    """Serialised ONNX of one classifier: ``features float32 [N,feature_dim]`` -> ``scores``."""
    return stages_to_onnx([(layers, 0.0)], feature_dim)


def onnx_scores(model_bytes: bytes, features: np.ndarray) -> np.ndarray:
    """Run serialised ONNX classifier bytes with onnxruntime on the CPU."""
    import onnxruntime as ort

    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    (scores,) = session.run(["scores"], {"features": np.ascontiguousarray(features, np.float32)})
    return scores


def check_parity(
    reference: np.ndarray, exported: np.ndarray, max_abs: float = PARITY_MAX_ABS
) -> dict[str, float]:
    """Max abs difference of the exported scores; raises :class:`ParityError` past ``max_abs``."""
    reference = np.asarray(reference, np.float64)
    exported = np.asarray(exported, np.float64)
    if reference.shape != exported.shape:
        raise ParityError(f"child classifier: ONNX shape {exported.shape} != {reference.shape}")
    diff = float(np.max(np.abs(reference - exported))) if len(reference) else 0.0
    if not diff <= max_abs:  # also catches NaN
        raise ParityError(
            f"child classifier drifts from scikit-learn: max abs diff {diff:.3g} "
            f"(allowed {max_abs:g}); nothing was written"
        )
    return {"max_abs_diff": float(f"{diff:.2e}"), "rows": len(reference)}


def write_to_bundle(report: PolicyTrainReport, bundle_dir: Path) -> str:
    """Add the ONNX file and ``policy.child_classifier`` to the bundle; the new id."""
    c = report.classifier
    section = {
        "file": ONNX_FILE,
        "threshold": c.threshold,
        "model": c.name + " on standardised features (scalers folded into the first layers)",
        "rule": (
            "restricted = person_present AND child_score >= t: scores = sigmoid(min(z_person - "
            "logit(person_threshold), z_child - logit(child_threshold))), so scores >= 0.5 "
            "exactly when both stages pass (threshold: that boundary on the ONNX scores)"
            if c.person
            else "restricted = child_score >= threshold"
        ),
        "inputs": {"features": "float32 [N,1280] image_encoder features"},
        "outputs": {"scores": "float32 [N] in [0,1]; restricted = scores >= threshold"},
        "feature_source": report.feature_source,
        "labels": LABELS_TEXT,
        "person_gate": (
            {
                k: c.person[k]
                for k in ("model", "labels", "target_recall", "person_threshold", "child_threshold")
            }
            if c.person
            else None
        ),
        "metrics": report.manifest_metrics(),
        "parity": c.parity,
        "command": "pixsearch train-policy DATA"
        + (f" --recall {c.target_recall:g}" if c.target_recall != DEFAULT_RECALL else "")
        + (f" --seed {report.seed}" if report.seed != DEFAULT_SEED else "")
        + (
            ""
            if c.person and c.person["target_recall"] == DEFAULT_PERSON_RECALL
            else f" --person-recall {c.person['target_recall']:g}"
            if c.person
            else " --no-person-gate"
        ),
    }

    return add_policy_model("child_classifier", ONNX_FILE, c.onnx_bytes, section, bundle_dir)
