"""Warm end-to-end search: what one ``ImageSearch.search("...")`` costs in a running app.

    python benchmarks/search_e2e.py [--rows 100000] [--queries 60]

On the cached synthetic table of ``benchmarks/query.py`` with the default (strict) policy:
p50/p95 of ``ImageSearch.search(text, k=10)`` (query policy check, text encoder, text head,
filtered vector search, score calibration), and p50 of the text encoder alone on the same
queries, so the share of encoding a query is visible. Queries are Flickr-style captions
(5-16 words), each used once after 5 warm-up searches.
"""

from __future__ import annotations

import argparse

from _common import emit, percentile, timings

TEXT = (
    "a dog runs across the grass with a red ball in its mouth . two people ride bicycles down "
    "a busy city street at night near the river . an old man sits on a bench reading the "
    "newspaper while pigeons gather at his feet in the park"
)
WORDS = TEXT.split(" ")


def captions(count: int) -> list[str]:
    """``count`` distinct word windows of 5-16 words from ``WORDS``."""
    out = []
    for i in range(count):
        length = 5 + i % 12
        start = (7 * i) % (len(WORDS) - length)
        out.append(" ".join(WORDS[start : start + length]) + f" {i}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=60)
    args = parser.parse_args()
    from query import build

    from pixsearch.search import ImageSearch

    search = ImageSearch(build(args.rows, None) / "db")
    texts = captions(args.queries)
    whole = timings(lambda text: search.search(text, k=10), texts)
    encode = timings(search.bundle.text_encoder.encode, texts)
    record = {
        "bench": "search_e2e",
        "rows": args.rows,
        "p50_ms": round(percentile(whole, 50), 2),
        "p95_ms": round(percentile(whole, 95), 2),
        "text_encoder_p50_ms": round(percentile(encode, 50), 2),
    }
    print(record, flush=True)
    emit(record)


if __name__ == "__main__":
    main()
