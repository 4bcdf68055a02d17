"""Regenerate tests/golden/bundle_golden.npz from the committed bundle (after `pixsearch export`).

    python tests/golden/regenerate.py

Only run it when the bundle changed on purpose: the golden outputs pin what the bundle computes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "bundle_golden.npz"
PINNED_FILES = ("image_encoder.onnx", "text_encoder.onnx", "tokenizer.json", "image_head.onnx")
"""The files whose outputs are pinned (their sha256 is stored with the outputs): files that
training adds to the bundle change its id but not these outputs."""
TEXTS = [
    "a dog running on the beach",
    "Two children in red jackets play football in a park .",
    "",
    " ".join(["a crowded street market with many people"] * 60),
]


def golden_pixels() -> np.ndarray:
    """Two fixed images: seeded hash noise (no RNG, so no numpy-version drift) and a gradient."""
    index = np.arange(224 * 224 * 3, dtype=np.uint64)
    noise = ((index * np.uint64(2654435761) + np.uint64(12345)) >> np.uint64(11)) % np.uint64(256)
    yy, xx = np.mgrid[0:224, 0:224]
    gradient = np.stack([xx, yy, (xx + yy) // 2], axis=-1)
    return np.stack([noise.reshape(224, 224, 3), gradient]).astype(np.uint8)


def main() -> None:
    from pixsearch.indexer.models import ModelBundle

    bundle = ModelBundle.load()
    features, logits = bundle.image_encoder.encode(golden_pixels())
    text = bundle.text_encoder.encode(TEXTS)
    pinned = {name: bundle.files[name] for name in PINNED_FILES}
    np.savez_compressed(
        GOLDEN,
        files=np.array(json.dumps(pinned, sort_keys=True)),
        features=features,
        logits=logits,
        text=text,
        image_vectors=bundle.space.image_vectors(features),
    )
    print(json.dumps({"pinned": pinned, "written": str(GOLDEN)}, indent=1))


if __name__ == "__main__":
    main()
