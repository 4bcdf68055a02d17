"""Indexing throughput end to end through ``ImageSearch.index`` (scan, read, hash, decode,
resize, encode, write, optimize), in this process, into a fresh database.

    python benchmarks/indexing.py --set practicum [--limit N] [--engine onnx|torch]
    python benchmarks/indexing.py --set large [--limit N]

``--set practicum``: ``$PIXSEARCH_DATA/practicum/train_images`` (1000 Flickr-size photos,
224x224; skipped with a message when absent). ``--set large``: 4000x3000 JPEGs as phones take
them (generated once into the benchmark cache from the practicum photos, upscaled with sensor
noise added so that they decode like real photos, quality 90, some with an EXIF rotation).
``--engine torch`` swaps only the image encoder for the same EfficientNet-Lite0 in PyTorch
eager (the baseline); everything else is the same pipeline. Prints images/s (wall), CPU
seconds per image (user+sys of every thread: steadier than wall time on a shared machine),
and peak RSS.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import PRACTICUM, cache_dir, emit, peak_rss_mb

LARGE_SIZE = (4000, 3000)


def practicum_folder(limit: int | None) -> Path | None:
    if not PRACTICUM.is_dir():
        return None
    files = sorted(PRACTICUM.glob("*.jpg"))
    if limit is None or limit >= len(files):
        return PRACTICUM
    folder = cache_dir() / f"practicum_first_{limit}"
    if not folder.is_dir() or len(list(folder.iterdir())) != limit:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for file in files[:limit]:
            shutil.copy2(file, folder / file.name)
    return folder


def large_folder(count: int) -> Path | None:
    """``count`` 12-megapixel JPEGs in the cache (generated on first use)."""
    from PIL import Image

    folder = cache_dir() / "large_jpegs"
    folder.mkdir(parents=True, exist_ok=True)
    existing = sorted(folder.glob("*.jpg"))
    if len(existing) >= count:
        return _subset(folder, existing, count)
    sources = sorted(PRACTICUM.glob("*.jpg")) if PRACTICUM.is_dir() else []
    rng = np.random.default_rng(12)
    print(f"generating {count - len(existing)} 4000x3000 JPEGs in {folder} (once)", flush=True)
    for i in range(len(existing), count):
        if sources:
            base = Image.open(sources[i % len(sources)]).convert("RGB")
        else:
            base = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))
        big = np.asarray(base.resize(LARGE_SIZE, Image.Resampling.BILINEAR), dtype=np.int16)
        noisy = big + rng.normal(0, 6, big.shape).astype(np.int16)
        image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
        exif = Image.Exif()
        exif[0x0112] = 6 if i % 4 == 0 else 1  # every 4th is a portrait shot stored sideways
        image.save(folder / f"large_{i:03d}.jpg", quality=90, exif=exif)
    return _subset(folder, sorted(folder.glob("*.jpg")), count)


def _subset(folder: Path, files: list[Path], count: int) -> Path:
    if len(files) == count:
        return folder
    subset = folder.with_name(f"large_jpegs_first_{count}")
    if not subset.is_dir() or len(list(subset.iterdir())) != count:
        shutil.rmtree(subset, ignore_errors=True)
        subset.mkdir()
        for file in files[:count]:
            os.link(file, subset / file.name)
    return subset


class TorchImageEncoder:
    """The bundle's image encoder interface backed by PyTorch eager (the baseline)."""

    def __init__(self) -> None:
        import torch

        from pixsearch.exporter._sources import load_image_model, pixel_encoder

        self.torch = torch
        self.model = pixel_encoder(load_image_model())

    def encode(self, pixels: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
        features, logits = [], []
        with self.torch.inference_mode():
            for start in range(0, len(pixels), batch_size):
                batch = self.torch.from_numpy(
                    np.ascontiguousarray(pixels[start : start + batch_size])
                )
                f, g = self.model(batch)
                features.append(f.numpy())
                logits.append(g.numpy())
        return np.concatenate(features), np.concatenate(logits)


class SwappedBundle:
    """The real bundle with its image encoder replaced."""

    def __init__(self, bundle: Any, image_encoder: Any) -> None:
        self._bundle = bundle
        self.image_encoder = image_encoder

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bundle, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=["practicum", "large"], default="practicum")
    parser.add_argument("--limit", type=int, default=None, help="first N photos only")
    parser.add_argument("--engine", choices=["onnx", "torch"], default="onnx")
    args = parser.parse_args()
    if args.set == "practicum":
        folder = practicum_folder(args.limit)
    else:
        folder = large_folder(args.limit or 60)
    if folder is None:
        print(f"skipped: {PRACTICUM} is absent (set PIXSEARCH_DATA)", file=sys.stderr)
        emit({"bench": "index", "set": args.set, "engine": args.engine, "skipped": True})
        return

    import lancedb  # noqa: F401  imported by the first write; a per-process cost (cold_start.py)

    from pixsearch.indexer.models import ModelBundle
    from pixsearch.search import ImageSearch

    bundle: Any = ModelBundle.load()
    if args.engine == "torch":
        bundle = SwappedBundle(bundle, TorchImageEncoder())
    workdir = Path(tempfile.mkdtemp(prefix="index-", dir=cache_dir()))
    try:
        engine = ImageSearch(db=workdir / "db", bundle=bundle)
        cpu_before = os.times()
        started = time.perf_counter()
        report = engine.index(folder)
        wall = time.perf_counter() - started
        cpu_after = os.times()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    count = report.encoded
    result = {
        "bench": "index",
        "set": args.set,
        "engine": args.engine,
        "photos": count,
        "failed": len(report.failed),
        "seconds": round(wall, 2),
        "images_per_s": round(count / wall, 1),
        "cpu_ms_per_image": round(1000 * cpu / max(count, 1), 1),
        "peak_rss_mb": round(peak_rss_mb()),
        "load_1min": round(os.getloadavg()[0], 1),
    }
    print(
        f"index {args.set} ({args.engine}): {count} photos in {wall:.1f} s = "
        f"{result['images_per_s']} images/s, {result['cpu_ms_per_image']} CPU ms/image, "
        f"peak RSS {result['peak_rss_mb']} MB",
        flush=True,
    )
    emit(result)


if __name__ == "__main__":
    main()
