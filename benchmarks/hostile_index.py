"""Peak memory of ``pixsearch index`` on a folder of hostile files plus normal photos.

Builds (once, cached) a folder holding two 16-bit 13000x13000 PNGs (~330 KB each, 338 MB of
pixels each when decoded), a 3 GB sparse file named ``huge.jpg`` (``truncate -s 3G``), a JPEG
header followed by 1 GB of nothing, and 200 practicum photos; then runs
``/usr/bin/time -v pixsearch index`` on it into a fresh database and prints the peak RSS.

    python benchmarks/hostile_index.py            # prints RESULT {"peak_rss_mb": ..., ...}
    python benchmarks/hostile_index.py --photos 50

Issue 19's target: a peak RSS of at most 1 GB.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PRACTICUM, cache_dir, emit, machine

DEEP_SIDE = 13_000


def build_folder(folder: Path, photos: int) -> None:
    """Write the hostile files and copy ``photos`` practicum photos into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        target = folder / f"deep16-{i}.png"
        if not target.exists():
            pixels = np.zeros((DEEP_SIDE, DEEP_SIDE), dtype=np.uint16)
            pixels[:: 97 + i, :] = 40_000  # stripes, so the two files differ and are not blank
            Image.fromarray(pixels).save(target, compress_level=9)
            del pixels
    huge = folder / "huge.jpg"
    if not huge.exists():
        with open(huge, "wb") as handle:
            handle.truncate(3 * 2**30)
    padded = folder / "padded.jpg"
    if not padded.exists():
        source = sorted(PRACTICUM.glob("*.jpg"))[0]
        padded.write_bytes(source.read_bytes())
        with open(padded, "r+b") as handle:
            handle.truncate(2**30)
    normal = folder / "normal"
    normal.mkdir(exist_ok=True)
    for path in sorted(PRACTICUM.glob("*.jpg"))[:photos]:
        if not (normal / path.name).exists():
            shutil.copyfile(path, normal / path.name)


def peak_rss(folder: Path) -> tuple[float, float, str]:
    """Run ``pixsearch index`` under ``/usr/bin/time -v``: (peak RSS MB, seconds, its output)."""
    db = tempfile.mkdtemp(prefix="pixsearch-hostile-db-")
    pixsearch = shutil.which("pixsearch") or "pixsearch"
    started = time.perf_counter()
    process = subprocess.run(
        ["/usr/bin/time", "-v", pixsearch, "index", str(folder), "--db", db, "-q"],
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    shutil.rmtree(db, ignore_errors=True)
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", process.stderr)
    rss = int(found.group(1)) / 1024 if found else float("nan")
    lines = [line for line in process.stderr.splitlines() if not line.startswith("\t")]
    return rss, seconds, "\n".join([process.stdout.strip(), *lines])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=200, help="normal photos added")
    parser.add_argument("--folder", type=Path, default=None, help="where to build the folder")
    args = parser.parse_args()
    if not PRACTICUM.is_dir():
        sys.exit(f"needs the practicum photos at {PRACTICUM}")
    folder = args.folder or cache_dir() / f"hostile-{args.photos}"
    build_folder(folder, args.photos)
    rss, seconds, output = peak_rss(folder)
    print(output)
    emit(
        {
            "benchmark": "hostile_index",
            "photos": args.photos,
            "peak_rss_mb": round(rss, 1),
            "seconds": round(seconds, 1),
            **machine(),
        }
    )


if __name__ == "__main__":
    main()
