"""What the "pixels are the indexed ones" check costs (``indexer.fingerprint.open_indexed``).

    python benchmarks/fingerprint_check.py [--photos DIR] [--limit 1000]
    python benchmarks/fingerprint_check.py --camera 20   # 12-MP JPEGs (~camera size), generated

For each photo (default: the customer's ``practicum/train_images``): the first check in a
process (SHA-256 of the whole file), a repeated check (the verified identity is remembered:
one ``open`` + ``fstat``), and, for scale, one 256-pixel thumbnail (``make_thumbnail``), which
every gallery card already paid before the check existed. Files are in the OS page cache (the
fingerprints are computed first, untimed). Prints one JSON line (ms per photo).
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

from _common import PRACTICUM, cache_dir, emit, median, percentile

from pixsearch.indexer.fingerprint import Fingerprint, open_indexed
from pixsearch.search.thumbnails import make_thumbnail


def camera_photos(count: int) -> Path:
    """``count`` 4000x3000 JPEGs (gradient + noise, quality 92), cached between runs."""
    import numpy as np
    from PIL import Image

    folder = cache_dir() / "camera_jpegs"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, 4000, dtype=np.float32)[None, :, None]
    for i in range(count):
        path = folder / f"IMG_{i:04d}.jpg"
        if not path.exists():
            noise = rng.normal(0, 12, (3000, 4000, 3)).astype(np.float32)
            pixels = np.clip(ramp + noise + 20 * (i % 3), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(path, "JPEG", quality=92)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=PRACTICUM)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--camera", type=int, default=0, help="generate N 4000x3000 JPEGs")
    args = parser.parse_args()
    if args.camera:
        args.photos = camera_photos(args.camera)
    files = sorted(p for p in args.photos.iterdir() if p.suffix.lower() == ".jpg")[: args.limit]
    indexed = {}
    for path in files:  # what the index stores (not timed)
        data = path.read_bytes()
        indexed[path] = Fingerprint(hashlib.sha256(data).hexdigest(), len(data))

    def check(path: Path) -> float:
        started = time.perf_counter()
        with open_indexed(path, indexed[path]):
            pass
        return 1000 * (time.perf_counter() - started)

    first = [check(path) for path in files]
    again = [check(path) for path in files]
    thumbs = []
    for path in files[:50]:
        started = time.perf_counter()
        make_thumbnail(path, 256)
        thumbs.append(1000 * (time.perf_counter() - started))
    sizes = [indexed[path].size for path in files]
    emit(
        {
            "benchmark": "fingerprint_check",
            "photos": len(files),
            "median_file_kb": round(median(sizes) / 1024, 1),
            "first_check_ms_p50": round(median(first), 3),
            "first_check_ms_p95": round(percentile(first, 95), 3),
            "repeat_check_ms_p50": round(median(again), 3),
            "thumbnail_ms_p50": round(median(thumbs), 2),
        }
    )


if __name__ == "__main__":
    main()
