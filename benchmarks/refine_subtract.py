"""Does ``--sub CONCEPT`` remove a concept? The share of results whose captions name it.

Indexes the customer's 1000 photos (``practicum/train_images``, five Flickr8k captions each in
``flickr8k/captions.tsv``) with the real pipeline, then for each (query, concept, words) runs
the query alone and with ``sub=[concept]`` and prints the share of the top ``k`` photos whose
captions contain one of ``words``, before and after; and what the query keeps (the share whose
captions contain one of the query's own words). Policy ``none``: ranking is measured here.

    flock /work/heavy.lock python benchmarks/refine_subtract.py [--k 20] [--db DIR]
"""

from __future__ import annotations

import argparse
import csv
import re
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from _common import PRACTICUM

from pixsearch.search import ImageSearch

CAPTIONS = PRACTICUM.parents[1] / "flickr8k" / "captions.tsv"
WATER = {"water", "pool", "lake", "river", "ocean", "sea", "beach", "surf", "waves", "stream"}
CASES = (
    # (query, subtracted concept, caption words of the concept, caption words of the query)
    ("a dog", "grass", {"grass", "grassy", "field", "lawn"}, {"dog", "dogs", "puppy"}),
    ("a dog playing", "water", WATER, {"dog", "dogs", "puppy"}),
    ("a dog running", "snow", {"snow", "snowy"}, {"dog", "dogs", "puppy"}),
    ("a man riding", "a bicycle", {"bike", "bicycle", "bicycles", "cyclist", "biker"}, {"man"}),
    ("people outdoors", "water", WATER, {"people", "man", "woman", "men", "women", "person"}),
    ("a person jumping", "snow", {"snow", "snowy", "ski", "skier"}, {"jump", "jumps", "jumping"}),
)
WORD = re.compile(r"[a-z]+")


def captions_by_photo() -> dict[str, set[str]]:
    """Photo file name -> the words of its five captions."""
    words: dict[str, set[str]] = defaultdict(set)
    with open(CAPTIONS, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            words[row["image"]] |= set(WORD.findall(row["caption"].lower()))
    return words


def share(paths: list[str], words: dict[str, set[str]], wanted: set[str]) -> float:
    return sum(bool(words[Path(p).name] & wanted) for p in paths) / max(1, len(paths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--db", help="database folder (kept; default: a temporary one)")
    args = parser.parse_args()
    db = Path(args.db or tempfile.mkdtemp(prefix="pixsearch-refine-")) / "db"
    engine = ImageSearch(db, policy="none")
    report = engine.index(PRACTICUM)
    print(f"indexed {PRACTICUM}: {report.summary()}")
    words = captions_by_photo()
    print(f"\ntop {args.k}; share of photos whose captions name the concept (query kept)")
    print("| query | --sub | in the collection | before | after | query before | query after |")
    print("|---|---|---|---|---|---|---|")
    drops = []
    for query, concept, concept_words, query_words in CASES:
        before = engine.search(query, k=args.k).paths
        after = engine.search(query, k=args.k, sub=[concept]).paths
        b, a = share(before, words, concept_words), share(after, words, concept_words)
        qb, qa = share(before, words, query_words), share(after, words, query_words)
        drops.append(b - a)
        base = share([str(p) for p in PRACTICUM.iterdir()], words, concept_words)
        print(f"| {query} | {concept} | {base:.0%} | {b:.0%} | {a:.0%} | {qb:.0%} | {qa:.0%} |")
    print(f"\nmean drop of the concept's share: {sum(drops) / len(drops):.0%} (points)")
    latencies(engine)


def latencies(engine: ImageSearch, n: int = 30) -> None:
    """Warm query latency, p50 over ``n`` queries of each form (k=10)."""
    photos = sorted(PRACTICUM.iterdir())[:n]
    outside = Path(tempfile.mkdtemp(prefix="pixsearch-like-"))
    for photo in photos:  # copies outside the database: read and encoded on the fly
        shutil.copyfile(photo, outside / photo.name)
    forms = {
        "text": lambda i: engine.search(f"a photo number {i}"),
        "text --add --sub": lambda i: engine.search(f"a dog {i}", add=["grass"], sub=["snow"]),
        "--like indexed photo": lambda i: engine.search_like(photos[i]),
        "--like photo outside the db": lambda i: engine.search_like(outside / photos[i].name),
    }
    print(f"\nwarm latency, p50 of {n} queries, k=10")
    for name, run in forms.items():
        run(0)
        times = []
        for i in range(n):
            start = time.perf_counter()
            run(i)
            times.append(time.perf_counter() - start)
        print(f"{name}: {statistics.median(times) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
