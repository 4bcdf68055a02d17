"""Regenerate tests/golden/child_classifier_golden.npz from the committed child classifier.

    python tests/golden/regenerate_child_classifier.py

Only run it after an intended retraining (``pixsearch train-policy``): the golden scores pin
what the committed ``child_classifier.onnx`` computes. The inputs are stored in the file too,
so no RNG or numpy version can move them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "child_classifier_golden.npz"


def golden_features() -> np.ndarray:
    """16 seeded feature rows, ReLU6-like (gamma, clipped to [0, 6]) at several scales, so that
    the scores fall on both sides of the threshold."""
    rng = np.random.default_rng(20240604)
    base = rng.gamma(0.6, 0.6, size=(16, 1280))
    scales = np.linspace(0.25, 2.5, 16)[:, None]
    return np.clip(base * scales, 0.0, 6.0).astype(np.float32)


def main() -> None:
    from pixsearch.indexer.models import ModelBundle

    bundle = ModelBundle.load()
    if bundle.child_classifier is None:
        raise SystemExit("the bundle has no child classifier: run pixsearch train-policy first")
    features = golden_features()
    scores = bundle.child_classifier.scores(features)
    np.savez_compressed(
        GOLDEN,
        sha256=np.array(bundle.files["child_classifier.onnx"]),
        features=features,
        scores=scores,
    )
    summary = {
        "sha256": bundle.files["child_classifier.onnx"],
        "threshold": bundle.child_classifier.threshold,
        "scores": [round(float(s), 4) for s in scores],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
