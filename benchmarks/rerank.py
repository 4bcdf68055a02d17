"""Cost of reranking: the vector search fetching the top N with their features, plus the MLP.

    python benchmarks/rerank.py [--rows 100000] [--top-n N]

On the cached synthetic table of ``benchmarks/query.py`` (filter ``restricted = false``):
p50 of ``PhotoStore.search(k=10)`` vs ``PhotoStore.search(k=N, extra_columns=["features"])``
and of ``bundle.reranker.score`` on N rows (when the bundle has a reranker; its ``top_n`` is
the default N, else 50). The difference is what reranking adds to every query.
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import emit, percentile, timings


def p50(fn, queries: np.ndarray) -> float:
    return percentile(timings(fn, queries), 50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--top-n", type=int, default=None)
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    from query import build, queries

    from pixsearch.db.store import PhotoStore
    from pixsearch.indexer.models import ModelBundle

    bundle = ModelBundle.load()
    reranker = getattr(bundle, "reranker", None)
    top_n = args.top_n or (reranker.top_n if reranker is not None else 50)
    store = PhotoStore(build(args.rows, None) / "db")
    store.optimize()
    qs = queries(store.table_info().vector_dim, args.queries)
    where = "(restricted = false)"
    plain = p50(lambda q: store.search(q, k=10, where=where), qs)
    fetch = p50(lambda q: store.search(q, k=top_n, where=where, extra_columns=["features"]), qs)
    record = {
        "bench": "rerank",
        "rows": args.rows,
        "top_n": top_n,
        "search_k10_ms": round(plain, 2),
        "search_topn_features_ms": round(fetch, 2),
    }
    if reranker is not None:
        features = np.zeros((top_n, bundle.feature_dim), np.float32)
        sims = np.zeros(top_n, np.float32)
        text = np.zeros(bundle.text_dim, np.float32)
        mlp = p50(lambda q: reranker.score(text, features, sims), qs)
        record["mlp_ms"] = round(mlp, 2)
        record["p50_ms"] = round(fetch - plain + mlp, 2)
    else:
        record["skipped"] = True
        record["p50_ms"] = round(fetch - plain, 2)
    print(record, flush=True)
    emit(record)


if __name__ == "__main__":
    main()
