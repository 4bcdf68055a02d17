"""Parity of an exported model with its reference: the one :class:`ParityError` of the exporter.

Every export (the encoders, the joint heads, the reranker, the child classifier) compares the
ONNX output with the model it came from before writing a file, and raises this error on drift.

>>> import numpy as np
>>> parity(np.ones((2, 3)), np.ones((2, 3)), "head")
{'max_abs_diff': 0.0, 'min_cosine': 1.0}
>>> try:
...     parity(np.ones((2, 3)), np.zeros((2, 3)), "head")
... except ModelBundleError as error:
...     print(type(error).__name__, str(error)[:46])
ParityError head: ONNX output drifts from PyTorch (max abs
"""

from __future__ import annotations

import numpy as np

from pixsearch.indexer.errors import ModelBundleError


class ParityError(ModelBundleError):
    """An exported ONNX model does not reproduce its reference (PyTorch, scikit-learn) within
    tolerance; nothing is written. A :class:`~pixsearch.indexer.errors.ModelBundleError`, so the CLI
    exits with the bundle's code."""


def parity(
    reference: np.ndarray,
    exported: np.ndarray,
    what: str,
    *,
    max_abs: float = 1e-4,
    min_cos: float = 0.9999,
) -> dict[str, float]:
    """``{"max_abs_diff", "min_cosine"}`` of two outputs; raises ``ParityError`` on drift."""
    ref = np.asarray(reference, np.float64).reshape(len(reference), -1)
    out = np.asarray(exported, np.float64).reshape(len(exported), -1)
    diff = float(np.max(np.abs(ref - out))) if ref.size else 0.0
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    cos = float(np.min(np.sum(ref * out, axis=1) / np.maximum(norms, 1e-12))) if ref.size else 1.0
    if ref.shape[1] == 1:  # scalar outputs: cosine is meaningless, compare values only
        cos = 1.0
    if not (diff <= max_abs and cos >= min_cos):  # also catches NaN
        raise ParityError(
            f"{what}: ONNX output drifts from PyTorch (max abs diff {diff:.3g} > {max_abs:g} or "
            f"min cosine {cos:.6f} < {min_cos}); not writing it"
        )
    return {"max_abs_diff": float(f"{diff:.3g}"), "min_cosine": round(cos, 6)}
