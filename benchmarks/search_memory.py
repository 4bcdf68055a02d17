"""Where a cold search's memory goes: resident size after each step of one search.

    python benchmarks/search_memory.py [--rows 100000] [--keep-models]

Runs, in a fresh Python process, the steps a ``pixsearch search`` makes, in its order, on the
cached synthetic table of ``benchmarks/query.py`` (built first if missing; default policy, so
the ``restricted = false`` filter applies), and prints after each step the resident size
(``VmRSS``), its change, the peak so far (``VmHWM``) and the split into anonymous memory
(heaps, caches, model weights) and file-backed pages (the shared libraries' code and data
that were touched). Without ``--keep-models`` the text models are dropped before the vector
search and glibc hands big freed blocks back at once, as the CLI does
(``ImageSearch(keep_models=False)``, ``return_memory_promptly()``). The CLI's own peak
(``/usr/bin/time``) is in ``benchmarks/cold_start.py``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from _common import emit

STEPS = r"""
import json, sys
keep_models = sys.argv[2] == "keep"

def status():
    fields = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            key, value = line.split(":", 1)
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                fields[key] = int(value.split()[0]) / 1024
    return fields

rows = []
def step(name):
    rows.append({"step": name, **status()})

step("python")
import numpy
step("import numpy")
import pyarrow
step("import pyarrow")
import pixsearch.search.cli
step("import the CLI (typer)")
from pixsearch.db.memory import return_memory_promptly
if not keep_models:
    return_memory_promptly()  # what the CLI's search does first
from pixsearch.db.imports import import_without_pandas
import_without_pandas("pixsearch.search.engine")
step("import the engine (lance, pyarrow.dataset; no pandas)")
import onnxruntime
step("import onnxruntime")
from pixsearch.search.engine import ImageSearch
engine = ImageSearch(sys.argv[1], keep_models=keep_models)
policy = engine.default_policy
step("default policy (first Lance read: settings table)")
bundle = engine.bundle
bundle.text_encoder.token_count("a dog catches a frisbee")
step("tokenizer")
engine.store.table_info()
step("photos table schema")
embedding = bundle.text_encoder.encode(["a dog catches a frisbee"])
step("text encoder session + query")
vector = bundle.space.text_vectors(embedding)[0]
step("text head session + query")
if not keep_models:
    bundle.release()
    step("models dropped, memory returned")
from pixsearch.indexer.policy import get_profile, restriction_filters
from pixsearch.db.filters import combine
where = combine(restriction_filters(get_profile(policy)))
store = engine.store
dataset = store._reader.dataset()
store._refresh_plan_facts(dataset)
step("row count, index list")
store._matching_rows(dataset, where)
step("filtered count (bitmap index)")
found = store.search(vector, k=max(10, bundle.reranker.top_n if bundle.reranker else 10),
                     where=where, extra_columns=["features"] if bundle.reranker else [])
step("vector search (IVF_HNSW_SQ index loaded)")
if bundle.reranker is not None:
    bundle.reranker.model.session
    step("reranker session")
print(json.dumps(rows))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--keep-models", action="store_true")
    args = parser.parse_args()
    from query import build

    db = build(args.rows, None) / "db"
    from pixsearch.db.store import PhotoStore

    PhotoStore(db).optimize()  # the vector index an index run would have built
    mode = "keep" if args.keep_models else "drop"
    done = subprocess.run(
        [sys.executable, "-c", STEPS, str(db), mode], capture_output=True, text=True, check=True
    )
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{'step':56s} {'RSS':>7s} {'change':>7s} {'peak':>7s} {'anon':>7s} {'file':>7s}")
    last = 0.0
    for row in rows:
        print(
            f"{row['step']:56s} {row['VmRSS']:7.1f} {row['VmRSS'] - last:+7.1f} "
            f"{row['VmHWM']:7.1f} {row['RssAnon']:7.1f} {row['RssFile']:7.1f}"
        )
        last = row["VmRSS"]
    emit({"bench": "search_memory", "rows": args.rows, "models": mode, "steps": rows})


if __name__ == "__main__":
    main()
