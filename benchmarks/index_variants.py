"""Vector index variants at 100k rows: first-query memory, cold CLI peak, latency, recall.

    python benchmarks/index_variants.py [--rows 100000] [--variants shipped,hnsw_pq80_rf10]
                                        [--queries 100] [--recall-queries 40] [--cli-runs 2]

Each variant is a hard-link copy (``cp -al``: no data written twice) of the cached table of
``benchmarks/query.py`` with its vector index rebuilt the way ``PhotoStore.optimize`` builds
one (``create_index(replace=True)`` then LanceDB's ``table.optimize()``, which may merge the
index's partitions). Copies are cached in ``$PIXSEARCH_BENCH_CACHE/index_variants``.

For each variant it prints: the index on disk (type, partitions, MB); the first query of a
fresh process that has done what a ``pixsearch search`` does before its vector search (the
engine's modules imported without pandas, glibc's prompt thresholds, the table opened and
its filter counted), as the peak (``VmHWM``) and resident (``VmRSS``) growth over the query;
the peak RSS of the real ``pixsearch search`` command on the copy (``/usr/bin/time``, the
refine factor set before the CLI runs); and, in this process, ``PhotoStore.search`` p50 over
``--queries`` warm queries and recall@10 against exact search over the first
``--recall-queries``, under the 5 filters of ``benchmarks/query.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import cache_dir, emit
from cold_start import timed
from query import FILTERS, build, exact_ids, measure, queries

INDEXES: dict[str, tuple[str, dict[str, Any]]] = {
    # name: (LanceDB index config, its arguments besides cosine and one partition per 8192 rows)
    "shipped": ("IvfHnswSq", {}),
    "hnsw_sq_m10": ("IvfHnswSq", {"m": 10}),
    "hnsw_pq80": ("IvfHnswPq", {"num_sub_vectors": 80}),
    "ivf_pq80": ("IvfPq", {"num_sub_vectors": 80}),
    "ivf_pq160": ("IvfPq", {"num_sub_vectors": 160}),
}
VARIANTS: dict[str, tuple[str, int | None, int]] = {
    # name: (index, refine factor, nprobes)
    "shipped": ("shipped", None, 10),
    "hnsw_sq_m10": ("hnsw_sq_m10", None, 10),
    "hnsw_pq80": ("hnsw_pq80", None, 10),
    "hnsw_pq80_rf5": ("hnsw_pq80", 5, 10),
    "hnsw_pq80_rf10": ("hnsw_pq80", 10, 10),
    "ivf_pq80_rf10": ("ivf_pq80", 10, 10),
    "ivf_pq160_rf5": ("ivf_pq160", 5, 10),
    "ivf_pq160_rf10": ("ivf_pq160", 10, 10),
}

PROBE = r"""
import json, sys
from pixsearch.db.memory import return_memory_promptly
return_memory_promptly()
from pixsearch.db.imports import import_without_pandas
store_module = import_without_pandas("pixsearch.db.store")
import_without_pandas("pixsearch.search.engine")
import numpy as np

def status():
    out = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            key, value = line.split(":", 1)
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    return out

db, where = sys.argv[1], sys.argv[2] or None
refine, nprobes = json.loads(sys.argv[3]), int(sys.argv[4])
store_module.SEARCH_REFINE_FACTOR = refine
store_module.SEARCH_NPROBES = nprobes
store = store_module.PhotoStore(db)
dataset = store._reader.dataset()
store._refresh_plan_facts(dataset)
if where:
    store._matching_rows(dataset, where)
vector = np.load(sys.argv[5])
before = status()
started = __import__("time").perf_counter()
store.search(vector, k=10, where=where)
first_ms = 1000 * (__import__("time").perf_counter() - started)
after = status()
print(json.dumps({"peak_mb": after["VmHWM"] - before["VmRSS"],
                  "kept_mb": after["VmRSS"] - before["VmRSS"],
                  "rss_before_mb": before["VmRSS"], "rss_after_mb": after["VmRSS"],
                  "first_query_ms": first_ms}))
"""

CLI = (
    "import sys; from pixsearch.db.memory import return_memory_promptly; "
    "return_memory_promptly(); from pixsearch.db.imports import import_without_pandas; "
    "s = import_without_pandas('pixsearch.db.store'); s.SEARCH_REFINE_FACTOR = {refine}; "
    "s.SEARCH_NPROBES = {nprobes}; from pixsearch.search.cli import main; "
    "sys.argv = ['pixsearch', *sys.argv[1:]]; main()"
)


def variant_db(rows: int, name: str) -> Path:
    """The hard-link copy of the ``rows``-row table with index ``name`` (cached)."""
    import lancedb
    from lancedb import index as configs

    from pixsearch.db.store import KEEP_OLD_VERSIONS_FOR

    base = build(rows, None)
    folder = cache_dir() / "index_variants" / f"{base.name}" / name
    if (folder / "DONE").exists():
        return folder / "db"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    subprocess.run(["cp", "-al", str(base / "db"), str(folder / "db")], check=True)
    config, kwargs = INDEXES[name]
    table = lancedb.connect(folder / "db").open_table("photos")
    started = time.perf_counter()
    if name != "shipped":
        partitions = min(1024, max(1, rows // 8192))
        table.create_index(
            "vector",
            config=getattr(configs, config)(
                distance_type="cosine", num_partitions=partitions, **kwargs
            ),
            replace=True,
        )
    table.optimize(cleanup_older_than=KEEP_OLD_VERSIONS_FOR)
    print(f"{name}: index built in {time.perf_counter() - started:.1f} s", flush=True)
    (folder / "DONE").write_text("ok")
    return folder / "db"


def index_facts(db: Path) -> dict[str, Any]:
    """The vector index's type, IVF partitions, HNSW ``m`` and size on disk."""
    import lance

    os.environ.setdefault("LANCE_INCLUDE_VECTOR_CENTROIDS", "false")
    dataset = lance.dataset(str(db / "photos.lance"))
    for index in dataset.describe_indices():
        if list(index.field_names) == ["vector"]:
            segment = dataset.stats.index_stats(index.name)["indices"][0]
            params = (segment.get("sub_index") or {}).get("params") or {}
            return {
                "index_type": segment.get("index_type"),
                "partitions": segment.get("num_partitions"),
                "m": params.get("m"),
                "index_mb": round(index.total_size_bytes / 2**20, 1),
            }
    return {"index_type": "none"}


def probe(
    db: Path, refine: int | None, nprobes: int, vector_file: Path, where: str
) -> dict[str, float]:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            PROBE,
            str(db),
            where,
            json.dumps(refine),
            str(nprobes),
            str(vector_file),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return {k: round(v, 1) for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def cli_peak(db: Path, refine: int | None, nprobes: int, runs: int) -> list[float]:
    code = CLI.format(refine=refine, nprobes=nprobes)
    command = [sys.executable, "-c", code, "search", "a dog catches a frisbee", "--db", str(db)]
    subprocess.run(command, stdout=subprocess.DEVNULL, check=True)  # file cache warm
    return [round(timed(command)[1], 1) for _ in range(runs)]


def exact(rows: int, db: Path, qs: Any, count: int) -> dict[str, list[list[str]]]:
    """Exact top 10 of the first ``count`` queries under each filter (cached: same data)."""
    path = cache_dir() / "index_variants" / f"exact_{rows}_{count}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return json.loads(path.read_text())
    import lancedb

    table = lancedb.connect(db).open_table("photos")
    out = {
        name: [exact_ids(table, v, where, 10) for v in qs[:count]]
        for name, where in FILTERS.items()
    }
    path.write_text(json.dumps(out))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--recall-queries", type=int, default=40)
    parser.add_argument("--cli-runs", type=int, default=2)
    parser.add_argument("--skip", default="", help="comma list of: memory,cli,latency")
    parser.add_argument(
        "--probe-filter",
        default="restricted=false",
        choices=list(FILTERS),
        help="the filter of the first-query probe (the default policy's by default)",
    )
    args = parser.parse_args()
    import numpy as np

    from pixsearch.db import store as store_module

    skip = set(args.skip.split(","))
    base = build(args.rows, None) / "db"
    dim = store_module.PhotoStore(base).table_info().vector_dim
    qs = queries(dim, args.queries)
    truth = exact(args.rows, base, qs, args.recall_queries)
    vector_file = cache_dir() / "index_variants" / "probe_query.npy"  # made by exact()
    np.save(vector_file, qs[0])
    for name in args.variants.split(","):
        index, refine, nprobes = VARIANTS[name]
        db = variant_db(args.rows, index)
        record: dict[str, Any] = {"bench": "index_variant", "rows": args.rows, "variant": name}
        record.update(index_facts(db))
        record["refine_factor"], record["nprobes"] = refine, nprobes
        record["load_1min"] = round(os.getloadavg()[0], 2)
        if "memory" not in skip:
            where = FILTERS[args.probe_filter] or ""
            record["first_query"] = probe(db, refine, nprobes, vector_file, where)
            record["probe_filter"] = args.probe_filter
        if "cli" not in skip:
            record["cli_peak_mb"] = cli_peak(db, refine, nprobes, args.cli_runs)
        if "latency" not in skip:
            store_module.SEARCH_REFINE_FACTOR, store_module.SEARCH_NPROBES = refine, nprobes
            store = store_module.PhotoStore(db)
            for filter_name, where in FILTERS.items():
                hits = measure(store, qs[: args.recall_queries], where, 10, truth[filter_name])
                timing = measure(store, qs, where, 10, None)
                record[filter_name] = {"p50_ms": timing["p50_ms"], "recall": hits["recall_at_10"]}
        print(json.dumps(record), flush=True)
        emit(record)


if __name__ == "__main__":
    main()
