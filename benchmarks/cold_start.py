"""Cold start: a fresh ``pixsearch search`` process, wall time and peak RSS.

    python benchmarks/cold_start.py [--rows 100000] [--runs 3]

Searches the cached synthetic table of ``benchmarks/query.py`` (built first if missing) with
the default policy (so the ``restricted = false`` prefilter applies). Each run is a new Python
process started the way a user starts it (the ``pixsearch`` console script); wall time and peak
RSS come from ``/usr/bin/time`` when present, else ``resource.getrusage(RUSAGE_CHILDREN)`` of a
fresh helper per run. Also prints ``python -c "import lancedb"`` alone (what a search cost before
its reads moved to ``lance``), ``import lance`` and ``import onnxruntime``.
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

from _common import emit, median

HELPER = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True)
wall = time.perf_counter() - started
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"wall_s": wall, "rss_mb": rss}))
"""


def timed(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one fresh process."""
    time_bin = shutil.which("time") or "/usr/bin/time"
    if os.path.exists(time_bin):
        started = time.perf_counter()
        done = subprocess.run(
            [time_bin, "-f", "PEAK_KB %M", *command],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=True,
        )
        wall = time.perf_counter() - started
        peak = [line for line in done.stderr.splitlines() if line.startswith("PEAK_KB")][-1]
        return wall, int(peak.split()[1]) / 1024
    out = subprocess.run(
        [sys.executable, "-c", HELPER, *command], capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout)
    return result["wall_s"], result["rss_mb"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from query import build

    db = build(args.rows, None) / "db"
    from pixsearch.db.store import PhotoStore

    PhotoStore(db).optimize()  # the vector index an index run would have built
    pixsearch = shutil.which("pixsearch") or str(Path(sys.executable).with_name("pixsearch"))
    commands = {
        f"pixsearch search ({args.rows} rows)": [
            pixsearch,
            "search",
            "a dog catches a frisbee",
            "--db",
            str(db),
            "-k",
            "10",
        ],
        'python -c "import lancedb"': [sys.executable, "-c", "import lancedb"],
        'python -c "import lance"': [sys.executable, "-c", "import lance"],
        'python -c "import onnxruntime"': [sys.executable, "-c", "import onnxruntime"],
    }
    subprocess.run(commands[next(iter(commands))], stdout=subprocess.DEVNULL, check=True)  # warm
    for name, command in commands.items():
        walls, peaks = [], []
        for _ in range(args.runs):
            wall, peak = timed(command)
            walls.append(wall)
            peaks.append(peak)
        record = {
            "bench": "cold",
            "command": name,
            "wall_s": round(median(walls), 2),
            "best_s": round(min(walls), 2),
            "wall_runs": [round(w, 2) for w in walls],
            "peak_rss_mb": round(max(peaks)),
        }
        print(record, flush=True)
        emit(record)


if __name__ == "__main__":
    main()
