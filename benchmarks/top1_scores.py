"""What score does a correct top result get? The figure behind the README's `--min-score` text.

    python benchmarks/top1_scores.py [--captions 1000] [--seed 0]

Indexes the joint space's held-out Flickr8k validation photos (listed in
``docs/joint_space_model_card.md``; those present under ``../shared/data/flickr8k/images``)
into a temporary database, searches a seeded sample of their captions that are not about
children (policy ``none``, k=1) and prints the score of the top result when it is the
caption's own photo ("correct") and when it is another photo, and what each ``--min-score``
would keep. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import csv
import random
import re
import statistics
import tempfile
from pathlib import Path

from _common import REPO

DATA = REPO.parent / "shared" / "data" / "flickr8k"


def validation_photos() -> list[str]:
    card = (REPO / "docs" / "joint_space_model_card.md").read_text("utf-8")
    block = card[card.index("<summary>the 900 photos</summary>") :].split("</details>")[0]
    return re.findall(r"[\w]+\.jpg", block)


def describe(scores: list[float]) -> str:
    ordered = sorted(scores)
    n = len(ordered)
    return (
        f"n={n}, p10 {ordered[n // 10]:.3f}, median {statistics.median(ordered):.3f}, "
        f"p90 {ordered[9 * n // 10]:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from pixsearch.indexer.policy.text import is_about_children
    from pixsearch.search import ImageSearch

    names = [n for n in validation_photos() if (DATA / "images" / n).exists()]
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        for name in names:
            (photos / name).symlink_to(DATA / "images" / name)
        engine = ImageSearch(Path(tmp) / "db", policy="none")
        print(f"indexed {len(names)} held-out photos: {engine.index(photos).summary()}")
        present = set(names)
        with open(DATA / "captions.tsv", encoding="utf-8") as handle:
            captions = [
                row
                for row in csv.DictReader(handle, delimiter="\t")
                if row["image"] in present and not is_about_children(row["caption"])
            ]
        sample = random.Random(args.seed).sample(captions, min(args.captions, len(captions)))
        right, wrong = [], []
        for row in sample:
            top = engine.search(row["caption"], k=1).results[0]
            (right if Path(top.path).name == row["image"] else wrong).append(top.score)
    print(f"{len(sample)} of {len(captions)} captions (seed {args.seed}), k=1")
    print(f"top result is the caption's photo:  {describe(right)}")
    print(f"top result is another photo:        {describe(wrong)}")
    for cut in (0.2, 0.3, 0.4, 0.5, 0.6):
        kept_right = sum(s >= cut for s in right) / len(right)
        kept_wrong = sum(s >= cut for s in wrong) / max(1, len(wrong))
        print(f"--min-score {cut}: keeps {kept_right:.0%} of correct, {kept_wrong:.0%} of others")


if __name__ == "__main__":
    main()
