"""Regenerate tests/golden/joint_heads_golden.npz from the committed bundle's joint space and
reranker (after ``pixsearch train-space``).

    python tests/golden/regenerate_joint.py

Only run it when the heads changed on purpose: the golden outputs pin what they compute.
Inputs are seeded (features are non-negative like pooled ReLU6 features; text embeddings unit
length like MiniLM's).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "joint_heads_golden.npz"


def golden_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(20240601)
    features = np.abs(rng.normal(0.0, 1.0, size=(6, 1280))).astype(np.float32)
    text = rng.normal(size=(6, 384)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    similarities = rng.uniform(-0.2, 0.8, size=6).astype(np.float32)
    return features, text, similarities


def main() -> None:
    from pixsearch.indexer.models import ModelBundle

    bundle = ModelBundle.load()
    features, text, similarities = golden_inputs()
    values = {
        "features": features,
        "text_embeddings": text,
        "similarities": similarities,
        "image_vectors": bundle.space.image_vectors(features),
        "text_vectors": bundle.space.text_vectors(text),
        "image_head_sha256": np.array(bundle.files["image_head.onnx"]),
    }
    if bundle.reranker is not None:
        values["reranker_scores"] = bundle.reranker.score(text[0], features, similarities)
        values["reranker_sha256"] = np.array(bundle.files[bundle.manifest["reranker"]["file"]])
    np.savez(GOLDEN, **values)
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main()
