"""Query latency (warm, in-process) and ANN recall at 10k / 100k / 1M rows.

    python benchmarks/query.py [--rows 10000,100000,1000000] [--queries 200]
                               [--index none|auto|ivf_hnsw_sq|ivf_pq|...]
    python benchmarks/query.py --rows 100000 --compare   # lance vs LanceDB read path, A/B

Tables have the real schema (``schema_for_bundle`` of the installed bundle) and are written
through ``PhotoStore.add`` + ``PhotoStore.optimize`` (scalar indexes, and the vector index once
the table is large enough). Vectors are synthetic but clustered like real embeddings (1000
random unit centres, each row a centre plus Gaussian noise, cosine ~0.7 to its centre); queries
are drawn the same way. ``features`` are zeros. Filter columns: 10% of rows ``restricted``,
formats JPEG 85% / PNG 10% / WEBP 5%, widths from phone and web sizes. Tables are cached in
``$PIXSEARCH_BENCH_CACHE/query_tables`` (a 1M-row table is ~4 GB and takes minutes to write).

Latency is ``PhotoStore.search`` (k=10, the 12 result columns, the same call a search makes)
after 10 warm-up queries; recall@10 compares its ids with exact search (``bypass_vector_index``)
under the same filter.
"""

from __future__ import annotations

import argparse
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from _common import cache_dir, emit, percentile

DIM_CENTRES = 1000
CHUNK = 50_000
FILTERS = {
    "none": None,
    "restricted=false": "(restricted = false)",
    "+format=JPEG": "(format = 'JPEG') AND (restricted = false)",
    "+width>=3000": "(width >= 3000) AND (restricted = false)",
    "+format=WEBP (5%)": "(format = 'WEBP') AND (restricted = false)",
}


def schema() -> pa.Schema:
    from pixsearch.indexer.models import ModelBundle
    from pixsearch.indexer.rows import schema_for_bundle

    return schema_for_bundle(ModelBundle.load())


def vectors(rng: np.random.Generator, centres: np.ndarray, count: int) -> np.ndarray:
    dim = centres.shape[1]
    picks = centres[rng.integers(0, len(centres), count)]
    v = picks + rng.normal(0, 1.0 / np.sqrt(dim), (count, dim)).astype(np.float32)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def centres(dim: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    c = rng.normal(0, 1, (DIM_CENTRES, dim)).astype(np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def chunk_table(
    s: pa.Schema, start: int, count: int, rng: np.random.Generator, c: np.ndarray
) -> pa.Table:
    dim = s.field("vector").type.list_size
    fdim = s.field("features").type.list_size
    ids = np.arange(start, start + count)
    widths = rng.choice([4000, 3024, 1920, 1024, 640], count, p=[0.3, 0.2, 0.2, 0.2, 0.1])
    formats = rng.choice(["JPEG", "PNG", "WEBP"], count, p=[0.85, 0.10, 0.05])
    child = rng.random(count).astype(np.float32)
    vec = vectors(rng, c, count)
    now = datetime.now(UTC)
    columns = {
        "id": pa.array([f"{i:016x}" for i in ids]),
        "path": pa.array([f"/photos/{2000 + i % 25}/img_{i:07d}.jpg" for i in ids]),
        "content_hash": pa.array([f"{i:064x}" for i in ids]),
        "size": pa.array(rng.integers(50_000, 6_000_000, count), pa.int64()),
        "mtime_ns": pa.array(rng.integers(1.5e18, 1.7e18, count), pa.int64()),
        "width": pa.array(widths, pa.int32()),
        "height": pa.array((widths * 3) // 4, pa.int32()),
        "format": pa.array(formats),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vec.ravel()), dim),
        "features": pa.FixedSizeListArray.from_arrays(
            pa.array(np.zeros(count * fdim, np.float16)), fdim
        ),
        "caption": pa.nulls(count, pa.string()),
        "caption_source": pa.array([""] * count),
        "child_score": pa.array(child),
        "restricted": pa.array(child >= 0.9),
        "indexed_at": pa.array([now] * count, pa.timestamp("us", tz="UTC")),
    }
    return pa.table(columns, schema=s)


def build(rows: int, vector_index_min_rows: int | None) -> Path:
    """The cached database folder with ``rows`` rows (written once)."""
    from pixsearch.db.store import PhotoStore

    s = schema()
    bundle_id = s.metadata[b"pixsearch.bundle_id"].decode()
    # One table per bundle: a new space (another dim) needs its own vectors.
    folder = cache_dir() / "query_tables" / f"rows_{rows}_{bundle_id}"
    done = folder / "DONE"
    if done.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    store = PhotoStore(folder / "db")
    store.ensure_table(s)
    rng = np.random.default_rng(rows)
    c = centres(s.field("vector").type.list_size)
    started = time.perf_counter()
    for start in range(0, rows, CHUNK):
        store.add(chunk_table(s, start, min(CHUNK, rows - start), rng, c))
    written = time.perf_counter() - started
    kwargs = (
        {} if vector_index_min_rows is None else {"vector_index_min_rows": vector_index_min_rows}
    )
    started = time.perf_counter()
    store.optimize(**kwargs)
    print(
        f"built {rows} rows in {written:.0f} s + optimize {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    done.write_text("ok")
    return folder


def queries(dim: int, count: int) -> np.ndarray:
    return vectors(np.random.default_rng(99), centres(dim), count)


def exact_ids(table: Any, vector: np.ndarray, where: str | None, k: int) -> list[str]:
    q = table.search(vector, vector_column_name="vector").distance_type("cosine")
    q = q.bypass_vector_index().select(["id"]).limit(k)
    if where:
        q = q.where(where, prefilter=True)
    return [r["id"] for r in q.to_list()]


def measure(
    store: Any, qs: np.ndarray, where: str | None, k: int, exact: list[list[str]] | None
) -> dict[str, float]:
    for v in qs[:10]:
        store.search(v, k=k, where=where)
    times, hits = [], 0
    for i, v in enumerate(qs):
        started = time.perf_counter()
        rows = store.search(v, k=k, where=where)
        times.append(1000 * (time.perf_counter() - started))
        if exact is not None:
            hits += len({r["id"] for r in rows} & set(exact[i]))
    out = {"p50_ms": round(percentile(times, 50), 2), "p95_ms": round(percentile(times, 95), 2)}
    if exact is not None:
        out["recall_at_10"] = round(hits / (k * len(qs)), 4)
    return out


def lancedb_search(store: Any, vector: np.ndarray, k: int, where: str | None) -> list[dict]:
    """What ``PhotoStore.search`` did before its reads moved to ``lance`` (up to 080964c): the
    same plan, the same rows, through LanceDB's query builder."""
    import math

    from pixsearch.db import store as s
    from pixsearch.db.schema import RESULT_COLUMNS

    table = store.table
    store._refresh_plan_facts(store._reader.dataset())
    plan = store._plan(store._reader.dataset(), where)
    large = plan != "flat" and store._facts_cache[None] >= s.LARGE_TABLE_ROWS
    ef = s.SEARCH_EF_LARGE if large else s.SEARCH_EF

    def query(limit: int, mode: str) -> Any:
        q = table.search(vector, vector_column_name="vector").distance_type("cosine")
        q = q.select([*RESULT_COLUMNS, "_distance"]).limit(limit)
        if mode == "exact":
            return q.bypass_vector_index()
        return q.nprobes(s.SEARCH_NPROBES).ef(max(ef, limit)) if mode == "index" else q

    found = None
    if plan == "postfilter":
        share = store._matching_rows(store._reader.dataset(), where) / store._facts_cache[None]
        limit = math.ceil(k / share * s.POSTFILTER_OVERFETCH)
        candidates = query(limit, "index").where(where, prefilter=False).to_arrow()
        if candidates.num_rows >= k:
            found = candidates.slice(0, k)
    if found is None:
        q = query(k, "index" if plan == "postfilter" else plan)
        found = (q.where(where, prefilter=True) if where else q).to_arrow()
    rows = found.to_pylist()
    for row in rows:
        row["score"] = 1.0 - float(row.pop("_distance"))
    return rows


def compare(store: Any, qs: np.ndarray, where: str | None, k: int) -> dict[str, float]:
    """p50 of ``PhotoStore.search`` (lance) and of the LanceDB path, query by query
    alternating in this process (the same load for both); and how often their ids agree."""
    for v in qs[:10]:
        store.search(v, k=k, where=where)
        lancedb_search(store, v, k, where)
    ours, theirs, same = [], [], 0
    for v in qs:
        started = time.perf_counter()
        a = store.search(v, k=k, where=where)
        ours.append(1000 * (time.perf_counter() - started))
        started = time.perf_counter()
        b = lancedb_search(store, v, k, where)
        theirs.append(1000 * (time.perf_counter() - started))
        same += [r["id"] for r in a] == [r["id"] for r in b]
    return {
        "lance_p50_ms": round(percentile(ours, 50), 2),
        "lancedb_p50_ms": round(percentile(theirs, 50), 2),
        "lance_p95_ms": round(percentile(ours, 95), 2),
        "lancedb_p95_ms": round(percentile(theirs, 95), 2),
        "same_ids": round(same / len(qs), 3),
    }


def vector_index(store: Any) -> str:
    for index in store.table.list_indices():
        if tuple(index.columns) == ("vector",):
            return str(index.index_type)
    return "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--recall-queries", type=int, default=50)
    parser.add_argument("--filters", default=",".join(FILTERS))
    parser.add_argument("--no-recall", action="store_true")
    parser.add_argument("--bypass", action="store_true", help="also time exact search (no index)")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="time the lance read path against the LanceDB one, alternating in this process",
    )
    args = parser.parse_args()
    from pixsearch.db.store import PhotoStore

    for rows in (int(r) for r in args.rows.split(",")):
        folder = build(rows, None)
        store = PhotoStore(folder / "db")
        started = time.perf_counter()
        store.optimize()  # what an index run does last: builds the vector index when due
        print(f"optimize: {time.perf_counter() - started:.1f} s", flush=True)
        dim = store.table_info().vector_dim
        qs = queries(dim, args.queries)
        kind = vector_index(store)
        for name in args.filters.split(","):
            where = FILTERS[name]
            if args.compare:
                record = {"bench": "query_compare", "rows": rows, "filter": name}
                record.update(compare(store, qs, where, 10))
                print(record, flush=True)
                emit(record)
                continue
            exact = None
            if not args.no_recall and kind != "none":
                exact = [exact_ids(store.table, v, where, 10) for v in qs[: args.recall_queries]]
            result = measure(
                store, qs if exact is None else qs[: args.recall_queries], where, 10, exact
            )
            if exact is not None:  # latency over all queries, recall over the first ones
                result.update({k: v for k, v in measure(store, qs, where, 10, None).items()})
            record = {"bench": "query", "rows": rows, "index": kind, "filter": name, **result}
            print(record, flush=True)
            emit(record)
            if args.bypass and kind != "none":
                times = []
                for v in qs[:50]:
                    started = time.perf_counter()
                    exact_ids(store.table, v, where, 10)
                    times.append(1000 * (time.perf_counter() - started))
                record = {
                    "bench": "query",
                    "rows": rows,
                    "index": "exact (bypass)",
                    "filter": name,
                    "p50_ms": round(percentile(times, 50), 2),
                    "p95_ms": round(percentile(times, 95), 2),
                }
                print(record, flush=True)
                emit(record)


if __name__ == "__main__":
    main()
