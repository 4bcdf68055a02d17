"""Throughput of ``pixsearch reindex --engine local`` vs ``--engine ray`` on this machine.

Generates small JPEG photos in a temporary folder, reindexes them into fresh databases with
each engine, and prints photos/s and the fixed costs (Ray start, actor start-up). On one small
machine Ray cannot win (it runs the same ONNX model on the same cores); what this shows is that
its overhead is a bounded start-up cost, not a per-photo one.

    python benchmarks/reindex_engines.py --photos 300 --size 320x240
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pixsearch.db.store import PhotoStore
from pixsearch.indexer.batch import BatchReport, JobStatus, run_reindex
from pixsearch.indexer.models import ModelBundle


def make_photos(folder: Path, count: int, size: tuple[int, int]) -> Path:
    """``count`` seeded JPEGs of ``size`` (smooth gradients plus noise, like small photos)."""
    folder.mkdir(parents=True, exist_ok=True)
    width, height = size
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    for i in range(count):
        rng = np.random.default_rng(i)
        base = ramp * rng.uniform(0.2, 1.0, (1, 1, 3)) + rng.uniform(0, 80, (1, 1, 3))
        pixels = np.clip(base + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"photo-{i:05d}.jpg", quality=85)
    return folder


def timed_job(
    engine: str, photos: Path, db: Path, bundle: ModelBundle
) -> tuple[BatchReport, float]:
    """Run one job; returns its report and the seconds until its first shard was done."""
    started = time.perf_counter()
    first: list[float] = []

    def status(state: JobStatus) -> None:
        if not first and state.done > 0:
            first.append(time.perf_counter() - started)

    report = run_reindex(PhotoStore(db), bundle, str(photos), engine=engine, status=status)
    return report, first[0] if first else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--size", default="320x240", help="photo size WIDTHxHEIGHT")
    parser.add_argument("--engines", default="local,ray")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    bundle = ModelBundle.load()
    with tempfile.TemporaryDirectory() as tmp:
        photos = make_photos(Path(tmp) / "photos", args.photos, size)  # type: ignore[arg-type]
        print(f"{args.photos} JPEGs of {args.size}, {os.cpu_count()} CPUs, bundle {bundle.id}")
        # warm the model (file hash check, session creation) so both engines start equal
        bundle.image_encoder.encode(np.zeros((1, 224, 224, 3), np.uint8))
        header = f"{'engine':<8}{'total s':>9}{'photos/s':>10}{'1st shard s':>13}"
        lines = [header + f"{'commits':>9}{'start-up s':>12}"]
        for engine in args.engines.split(","):
            startup = 0.0
            if engine == "ray":
                import ray

                began = time.perf_counter()
                ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
                startup = time.perf_counter() - began
            report, first = timed_job(engine, photos, Path(tmp) / f"db-{engine}", bundle)
            lines.append(
                f"{engine:<8}{report.seconds:>9.1f}{report.encoded / report.seconds:>10.1f}"
                f"{first:>13.1f}{report.commits:>9}{startup:>12.1f}"
            )
            if report.failed:
                lines.append(f"  {len(report.failed)} failed, e.g. {report.failed[0]}")
        print("\n".join(lines))
        print(
            "total s: the job (listing, encoding, commits, optimize); start-up s: ray.init "
            "(not in total); 1st shard s: until the first shard was written (for ray: actor "
            "start and model load)."
        )


if __name__ == "__main__":
    main()
