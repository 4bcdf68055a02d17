"""Russian and English queries on the validation photos: the figures of issue #15.

The Russian test set (``tests/data/ru_queries.tsv``: ``image``, ``en``, ``ru``) holds 239
captions drawn (seeded) from the validation photos of the joint space's split, one per photo,
translated into Russian by hand. Each query's own photo is ranked among the 900 validation
photos in the bundle's space.

>>> rows = read_queries(DEFAULT_QUERIES)
>>> len(rows) >= 200, sorted(rows[0])
(True, ['en', 'image', 'ru'])
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pixsearch.exporter.space_eval import recall_table, retrieval_ranks, val_queries

DEFAULT_QUERIES = Path(__file__).resolve().parents[1] / "tests" / "data" / "ru_queries.tsv"

Encode = Callable[[list[str]], np.ndarray]


def read_queries(path: Path = DEFAULT_QUERIES) -> list[dict[str, str]]:
    """Rows ``{"image", "en", "ru"}`` of a TAB-separated file with that header."""
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def figures(
    space: Any,
    corpus: Any,
    val_photos: np.ndarray,
    queries: list[dict[str, str]],
    encoders: dict[str, Encode],
) -> dict[str, dict[str, dict[str, float]]]:
    """R@1/5/10 and median rank per encoder: ``validation`` (every English caption of the
    validation photos), ``en`` and ``ru`` (the test set), among the validation photos."""
    position = {name: i for i, name in enumerate(corpus.images)}
    in_val = {int(p): i for i, p in enumerate(np.asarray(val_photos).tolist())}
    missing = [q["image"] for q in queries if position.get(q["image"]) not in in_val]
    if missing:
        raise ValueError(f"{len(missing)} test photos are not validation photos: {missing[:3]}")
    owners = np.array([in_val[position[q["image"]]] for q in queries])
    images = space.image_vectors(corpus.features[val_photos])
    rows, val_owners = val_queries(corpus, val_photos)
    captions = [corpus.captions[r] for r in rows]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, encode in encoders.items():

        def table(texts: list[str], own: np.ndarray, encode: Encode = encode) -> dict[str, float]:
            vectors = space.text_vectors(encode(texts))
            return recall_table(retrieval_ranks(images, vectors, own))

        out[name] = {
            "validation": table(captions, val_owners),
            "en": table([q["en"] for q in queries], owners),
            "ru": table([q["ru"] for q in queries], owners),
        }
    return out


def format_figures(result: dict[str, dict[str, dict[str, float]]]) -> str:
    """A markdown table of :func:`figures`."""
    lines = [
        "| encoder | validation R@1/5/10 | test set en R@1/5/10 | test set ru R@1/5/10 |",
        "|---|---|---|---|",
    ]
    for name, parts in result.items():
        cells = [
            "/".join(f"{parts[k][m]:.1f}" for m in ("R@1", "R@5", "R@10"))
            for k in ("validation", "en", "ru")
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
