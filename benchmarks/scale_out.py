"""Driver cost of the indexing job as the photo count grows: wall time and peak RSS for
listing + planning + writing and committing, at 10k, 100k and 1M photos.

Each size runs in a fresh process (its peak RSS is its own). The photos are N symbolic links
(1000 per folder) to one small JPEG, so the real listing (``scandir`` + ``stat``) and the real
reads (open, hash, header) run per photo; encoding is stubbed by reusing stored features: the
database holds that JPEG's row, so every photo's content is found stored and its row is copied
(with its own path, id and caption verdict) instead of decoded and encoded. Every row is then
written as fragments and committed, one commit per ``--write-batch`` rows. ``optimize`` (index
build and compaction, which Lance runs natively) is left out unless ``--optimize`` is given;
after a first run's job (not measured) the lookup indexes (``path``, ``content_hash``) are
brought up to date, as the job's own ``optimize`` does, so that a re-run plans against an
indexed table as it would after a real first run.

    flock /work/heavy.lock python benchmarks/scale_out.py --sizes 10000,100000,1000000

Photos are generated once under ``$PIXSEARCH_BENCH_CACHE/scale_out/N`` (links only, a few
hundred bytes of inodes each); databases are temporary.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _common import cache_dir, emit, machine, run_child
from PIL import Image

PER_FOLDER = 1000


def photo_folder(count: int) -> Path:
    """``count`` links to one JPEG in folders of ``PER_FOLDER`` (made once, then reused)."""
    root = cache_dir() / "scale_out"
    folder = root / str(count)
    done = folder / ".complete"
    if done.exists():
        return folder
    template = root / "template" / "photo.jpg"
    if not template.exists():
        template.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(template, quality=80)
    for i in range(count):
        sub = folder / f"{i // PER_FOLDER:05d}"
        if i % PER_FOLDER == 0:
            sub.mkdir(parents=True, exist_ok=True)
        link = sub / f"photo-{i:07d}.jpg"
        if not link.is_symlink():
            os.symlink(template, link)
    done.touch()
    return folder


class RssSampler:
    """Peak resident memory of this process, sampled every 20 ms from /proc (MB)."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def now() -> float:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> RssSampler:
        self.peak = self.now()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def one_size(count: int, write_batch: int, shard_size: int, optimize: bool, db: str | None) -> None:
    """One job over ``count`` photos into ``db`` (a new temporary one without it); a ``db``
    that already holds them makes it a re-run (every photo unchanged: listing and plan)."""
    import pyarrow as pa

    from pixsearch.db.snapshot import Snapshot
    from pixsearch.db.store import PhotoStore
    from pixsearch.indexer.batch import JobStatus, run_reindex
    from pixsearch.indexer.models import ModelBundle

    photos = photo_folder(count)
    bundle = ModelBundle.load()
    with tempfile.TemporaryDirectory(prefix="pixsearch-scale-") as tmp:
        store = PhotoStore(db or Path(tmp) / "db")
        rerun = store.exists() and store.table_info() is not None
        if not rerun:
            template = cache_dir() / "scale_out" / "template"
            run_reindex(store, bundle, str(template))  # the one real encode: the stored row
        if not optimize:
            store.optimize = lambda **_: None  # type: ignore[method-assign]
        snapshots: list[Snapshot] = []
        take_snapshot = store.snapshot

        def kept_snapshot(**kwargs: int) -> Snapshot:  # the job's snapshots, to read their caches
            snapshots.append(take_snapshot(**kwargs))
            return snapshots[-1]

        store.snapshot = kept_snapshot  # type: ignore[method-assign]
        marks: dict[str, float] = {}
        trace: list[tuple[int, float, float, float]] = []
        started = time.perf_counter()

        def status(state: JobStatus) -> None:
            if state.done >= count // 2 and "half" not in marks:
                marks["half"] = time.perf_counter() - started
                marks["half_rss"] = RssSampler.now()  # held half-way through the job
            if state.done >= (len(trace) + 1) * count // 10:  # every tenth of the job
                lance_mb = sum(s.cache_bytes() for s in snapshots) / 2**20
                arrow_mb = pa.total_allocated_bytes() / 2**20
                trace.append(
                    (state.done, round(RssSampler.now(), 1), round(arrow_mb, 1), round(lance_mb, 1))
                )

        baseline = RssSampler.now()
        with RssSampler() as rss:
            report = run_reindex(
                store,
                bundle,
                str(photos),
                shard_size=shard_size,
                write_batch=write_batch,
                status=status,
            )
        seconds = time.perf_counter() - started
        rows = store.count()
        index_seconds = 0.0
        if not rerun and not optimize:  # what the job's optimize would do for the lookups
            import lance

            began = time.perf_counter()
            lance.dataset(store.dataset_path).optimize.optimize_indices()
            index_seconds = time.perf_counter() - began
    done = report.unchanged if rerun else report.reused
    assert done == count and rows == count + 1, (report.summary(), rows)
    emit(
        {
            "benchmark": "scale_out",
            "run": "re-run" if rerun else "first",
            "photos": count,
            "write_batch": write_batch,
            "shard_size": shard_size,
            "optimize": optimize,
            "seconds": round(seconds, 1),
            "index_seconds": round(index_seconds, 1),
            "commits": report.commits,
            "photos_per_second": round(count / seconds, 1),
            "baseline_rss_mb": round(baseline, 1),
            "half_rss_mb": round(marks["half_rss"], 1),
            "peak_rss_mb": round(rss.peak, 1),
            "peak_above_baseline_mb": round(rss.peak - baseline, 1),
            "bytes_per_photo": round((rss.peak - baseline) * 2**20 / count),
            "trace": trace,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--write-batch", type=int, default=10_000)
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument("--optimize", action="store_true")
    parser.add_argument(
        "--rerun", action="store_true", help="then run each job again (all photos unchanged)"
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one_size(args.one, args.write_batch, args.shard_size, args.optimize, args.db)
        return
    print(f"# machine: {machine()}", file=sys.stderr)
    header = (
        "| run | photos | job s | commits | RSS before MB | RSS half-way MB | peak RSS MB "
        "| peak above before MB | peak bytes/photo |"
    )
    rows, traces = [], []
    for size in (int(s) for s in args.sizes.split(",")):
        child = [__file__, "--one", str(size), "--write-batch", str(args.write_batch)]
        child += ["--shard-size", str(args.shard_size)] + (["--optimize"] if args.optimize else [])
        results = []
        with tempfile.TemporaryDirectory(prefix="pixsearch-scale-db-") as db:
            runs = 2 if args.rerun else 1
            for _ in range(runs):  # each in a fresh process: its peak RSS is its own
                results += run_child([*child, *(["--db", db] if args.rerun else [])])
        for r in results:
            steps = " ".join(f"{d}:{m}/{a}/{c}" for d, m, a, c in r["trace"])
            traces.append(f"{r['run']} {r['photos']}: {steps}")
            rows.append(
                f"| {r['run']} | {r['photos']} | {r['seconds']} | {r['commits']} "
                f"| {r['baseline_rss_mb']} | {r['half_rss_mb']} | {r['peak_rss_mb']} "
                f"| {r['peak_above_baseline_mb']} | {r['bytes_per_photo']} |"
            )
    print(header)
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\nEvery tenth of each job: photos done, RSS MB, Arrow pool MB, Lance caches MB")
    print("\n".join(traces))


if __name__ == "__main__":
    main()
