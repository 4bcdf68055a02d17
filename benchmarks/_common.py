"""Shared helpers of the benchmark scripts: cache folder, machine facts, timing, RSS.

Benchmarks print figures; nothing here asserts on a time. Generated data (large JPEGs, query
tables) is cached outside the repository, in ``$PIXSEARCH_BENCH_CACHE`` (default
``~/.cache/pixsearch-bench``), so reruns skip generation.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

os.environ.setdefault("LANCEDB_LOG", "error")

REPO = Path(__file__).resolve().parents[1]
PRACTICUM = (
    Path(os.environ.get("PIXSEARCH_DATA", str(REPO.parent / "shared" / "data")))
    / "practicum"
    / "train_images"
)


def cache_dir() -> Path:
    """``$PIXSEARCH_BENCH_CACHE`` or ``~/.cache/pixsearch-bench`` (created)."""
    path = Path(os.environ.get("PIXSEARCH_BENCH_CACHE", Path.home() / ".cache" / "pixsearch-bench"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def versions() -> dict[str, str]:
    """Versions of the packages whose speed the figures depend on."""
    out = {"python": platform.python_version()}
    for name in ("pixsearch", "onnxruntime", "lancedb", "pyarrow", "pillow", "numpy", "torch"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "-"
    return out


def machine() -> dict[str, Any]:
    """CPU model, logical cores, memory and the 1-minute load average when measured."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory_gb = round(pages / 2**30, 1)
    except (ValueError, OSError):
        memory_gb = None
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "load_1min": round(os.getloadavg()[0], 2),
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def timings(fn: Any, items: Any, warmup: int = 5) -> list[float]:
    """Milliseconds of ``fn(item)`` for each of ``items``, after ``fn`` ran on the first
    ``warmup`` items (sessions, caches and index pages loaded)."""
    for item in items[:warmup]:
        fn(item)
    times = []
    for item in items:
        started = time.perf_counter()
        fn(item)
        times.append(1000 * (time.perf_counter() - started))
    return times


def emit(result: dict[str, Any]) -> None:
    """Print one result as a JSON line prefixed ``RESULT`` (``run_all.py`` collects them)."""
    print("RESULT " + json.dumps(result, ensure_ascii=False), flush=True)


def run_child(args: list[str], timeout: float | None = None) -> list[dict[str, Any]]:
    """Run a benchmark script in a fresh process; returns its RESULT lines (stderr passes)."""
    process = subprocess.run(
        [sys.executable, *args], stdout=subprocess.PIPE, text=True, timeout=timeout, cwd=REPO
    )
    results = []
    for line in process.stdout.splitlines():
        if line.startswith("RESULT "):
            results.append(json.loads(line[len("RESULT ") :]))
        else:
            print(line, flush=True)
    if process.returncode != 0:
        print(f"warning: {' '.join(args)} exited with {process.returncode}", file=sys.stderr)
    return results
