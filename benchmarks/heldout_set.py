"""Write the joint space's 900 validation photos as a held-out set for ``pixsearch eval``.

The photos (held out by photo, seed 42: the split of ``train-space`` and ``train-tower``) are
linked into ``OUT/test_images/``; their captions that are not about children become
``OUT/test_queries.csv`` in the customer's format, so the installed runtime can be measured on
photos no training step saw:

    python benchmarks/heldout_set.py ../shared/data /tmp/heldout
    pixsearch eval --queries /tmp/heldout/test_queries.csv --images /tmp/heldout/test_images \
        --policy none --json
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--n-val", type=int, default=900)
    args = parser.parse_args()

    from pixsearch.exporter.space_data import read_manifest, split_photos
    from pixsearch.indexer.policy import is_about_children

    photos, duplicate_of, damaged = read_manifest(args.data)
    keep = [(n, p) for n, p in photos if n not in set(damaged) and n not in duplicate_of]
    _, val = split_photos(len(keep), args.n_val, args.seed)
    chosen = {keep[i][0]: keep[i][1] for i in val.tolist()}
    images = args.out / "test_images"
    images.mkdir(parents=True, exist_ok=True)
    for name, path in chosen.items():
        target = images / name
        if not target.exists():
            os.symlink(Path(path).resolve(), target)
    rows = []
    with open(args.data / "flickr8k" / "captions.tsv", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if row["image"] in chosen and not is_about_children(row["caption"]):
                rows.append((f"{row['image']}#{row['caption_idx']}", row["caption"], row["image"]))
    with open(args.out / "test_queries.csv", "w", encoding="utf-8") as handle:
        handle.write("|query_id|query_text|image\n")
        for i, (qid, text, image) in enumerate(rows):
            handle.write(f"{i}|{qid}|{text.replace('|', ' ')}|{image}\n")
    with open(args.out / "test_images.csv", "w", encoding="utf-8") as handle:
        handle.write("image\n" + "".join(f"{name}\n" for name in sorted(chosen)))
    print(f"{len(chosen)} photos, {len(rows)} queries in {args.out}")


if __name__ == "__main__":
    main()
