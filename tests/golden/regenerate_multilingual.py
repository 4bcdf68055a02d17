"""Regenerate tests/golden/multilingual_golden.npz from the committed bundle's multilingual
text encoder (after `pixsearch train-multilingual`).

    python tests/golden/regenerate_multilingual.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "multilingual_golden.npz"
PINNED_FILES = ("text_encoder_multilingual.onnx", "tokenizer_multilingual.json")
TEXTS = [
    "кошка",
    "чашка кофе",
    "Две собаки играют в воде на пляже",
    "a dog running on the beach",
    "",
    " ".join(["многолюдный рынок на улице"] * 80),
]


def main() -> None:
    from pixsearch.indexer.models import ModelBundle

    bundle = ModelBundle.load()
    encoder = bundle.text_encoder.multilingual
    pinned = {name: bundle.files[name] for name in PINNED_FILES}
    np.savez_compressed(
        GOLDEN,
        files=np.array(json.dumps(pinned, sort_keys=True)),
        text=encoder.encode(TEXTS),
    )
    print(json.dumps({"pinned": pinned, "written": str(GOLDEN)}, indent=1))


if __name__ == "__main__":
    main()
