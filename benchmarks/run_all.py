"""Run every benchmark and print one Markdown table (machine, date, versions first).

    python benchmarks/run_all.py [--quick] [--skip index,query,search,cold,rerank]

Each benchmark runs in its own fresh process (so peak RSS is its own); figures on a shared
machine move between runs, so the PyTorch baseline runs in the same invocation and ratios are
printed next to the rates. ``--quick``: fewer photos, no 1M-row table (minutes instead of an
hour on 2 cores). Generated photos and tables are cached (``$PIXSEARCH_BENCH_CACHE``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, run_child, versions

HERE = Path(__file__).resolve().parent


def script(name: str) -> str:
    return str(HERE / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--skip", default="", help="comma-separated: index,query,search,cold,rerank"
    )
    parser.add_argument("--rows", default=None, help="query table sizes, e.g. 10000,100000")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    facts = machine()
    results: list[dict[str, Any]] = []
    if "index" not in skip:
        photos, torch_photos = (200, 100) if args.quick else (None, 200)
        large, torch_large = (20, 10) if args.quick else (60, 30)
        torch = ["--engine", "torch"]
        limit = [] if photos is None else ["--limit", str(photos)]
        results += run_child([script("indexing.py"), "--set", "practicum", *limit])
        results += run_child(
            [script("indexing.py"), "--set", "practicum", "--limit", str(torch_photos), *torch]
        )
        results += run_child([script("indexing.py"), "--set", "large", "--limit", str(large)])
        results += run_child(
            [script("indexing.py"), "--set", "large", "--limit", str(torch_large), *torch]
        )
    if "query" not in skip:
        rows = args.rows or ("10000,100000" if args.quick else "10000,100000,1000000")
        results += run_child([script("query.py"), "--rows", rows, "--bypass"])
    if "search" not in skip:
        results += run_child([script("search_e2e.py"), "--rows", "100000"])
    if "cold" not in skip:
        results += run_child([script("cold_start.py"), "--rows", "100000"])
    if "rerank" not in skip:
        results += run_child([script("rerank.py")])
    print_table(facts, results, args.quick)


def print_table(facts: dict[str, Any], results: list[dict[str, Any]], quick: bool) -> None:
    v = versions()
    print()
    print(f"pixsearch benchmarks{' (--quick)' if quick else ''}: {facts['date']}")
    print(
        f"machine: {facts['cpu']}, {facts['cores']} logical cores, {facts['memory_gb']} GB; "
        f"load average at start {facts['load_1min']}"
    )
    print("versions: " + ", ".join(f"{k} {val}" for k, val in v.items()))
    print()
    print("| benchmark | figure | peak RSS |")
    print("|---|---|---|")
    rates: dict[tuple[str, str], float] = {}
    for r in results:
        if r["bench"] == "index" and not r.get("skipped"):
            rates[(r["set"], r["engine"])] = r["images_per_s"]
    for r in results:
        kind = r["bench"]
        if kind == "index":
            if r.get("skipped"):
                print(f"| index {r['set']} ({r['engine']}) | skipped: photos absent | |")
                continue
            ratio = ""
            baseline = rates.get((r["set"], "torch"))
            if r["engine"] == "onnx" and baseline:
                ratio = f", {r['images_per_s'] / baseline:.1f}x PyTorch eager"
            print(
                f"| index {r['set']} ({r['engine']}, {r['photos']} photos) | "
                f"**{r['images_per_s']} images/s**{ratio}; {r['cpu_ms_per_image']} CPU ms/photo "
                f"(load {r['load_1min']}) | {r['peak_rss_mb']} MB |"
            )
        elif kind == "query":
            recall = f", recall@10 {r['recall_at_10']}" if "recall_at_10" in r else ""
            print(
                f"| query {r['rows']:,} rows, {r['index']}, filter {r['filter']} | "
                f"p50 **{r['p50_ms']} ms**, p95 {r['p95_ms']} ms{recall} | |"
            )
        elif kind == "search_e2e":
            print(
                f"| search, warm, {r['rows']:,} rows (`ImageSearch.search`) | "
                f"p50 **{r['p50_ms']} ms**, p95 {r['p95_ms']} ms; text encoder alone "
                f"{r['text_encoder_p50_ms']} ms | |"
            )
        elif kind == "cold":
            print(
                f"| cold `{r['command']}` | **{r['wall_s']} s** wall "
                f"(runs {r['wall_runs']}) | {r['peak_rss_mb']} MB |"
            )
        elif kind == "rerank":
            if r.get("skipped"):
                print("| rerank | skipped: the bundle has no reranker | |")
            else:
                print(
                    f"| rerank top {r['top_n']} (fetch features + MLP) | "
                    f"p50 **{r['p50_ms']} ms** extra per query | |"
                )
    os.sys.stdout.flush()


if __name__ == "__main__":
    main()
