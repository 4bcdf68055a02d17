"""Hostile files keep indexing's memory bounded (issue 19): deep, huge or fake photos.

Memory is measured in a child process (its peak RSS), never timed.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pixsearch.indexer.preprocess import load_photo

_PEAK = """
import resource, sys
from pixsearch.indexer.rows import read_photo
from pixsearch.indexer.scan import PhotoEntry
from pixsearch.indexer.sources import open_source
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
read = read_photo(open_source(sys.argv[1]), PhotoEntry(sys.argv[1], 0, 0), set())
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) // 1024, read.error, read.photo is not None)
"""


def _read_in_child(path: Path) -> tuple[int, str, bool]:
    """Index-read one file in a fresh process: (peak RSS growth in MB, error, decoded)."""
    out = subprocess.run(
        [sys.executable, "-c", _PEAK, str(path)], capture_output=True, text=True, check=True
    ).stdout.split(maxsplit=1)
    error, decoded = out[1].rsplit(maxsplit=1)
    return int(out[0]), error, decoded == "True"


def test_a_deep_png_decodes_without_full_size_float_copies(tmp_path: Path) -> None:
    """6000x6000 16-bit grey is 72 MB decoded; the old float64 path peaked ~900 MB higher."""
    pixels = np.zeros((6000, 6000), dtype=np.uint16)
    pixels[::50] = 60_000
    path = tmp_path / "deep.png"
    Image.fromarray(pixels).save(path, compress_level=1)
    del pixels
    growth, error, decoded = _read_in_child(path)
    assert (error, decoded) == ("None", True)
    assert growth < 250, f"reading a 72 MB image grew the process by {growth} MB"


def test_a_huge_file_that_is_no_image_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.jpg"
    with open(path, "wb") as handle:
        handle.truncate(1 << 30)  # sparse: 1 GB of zeros, nothing on disk
    growth, error, decoded = _read_in_child(path)
    assert (error, decoded) == ("not a readable image (unknown or damaged format)", False)
    assert growth < 100, f"refusing a 1 GB non-image grew the process by {growth} MB"


def test_deep_grey_keeps_its_levels(tmp_path: Path) -> None:
    """A 16-bit photo and its 8-bit copy give the same pixels, reduced or not."""
    rng = np.random.default_rng(0)
    for side in (300, 2400):
        grey8 = np.kron(rng.integers(0, 256, (side // 100, side // 100)), np.ones((100, 100)))
        Image.fromarray(grey8.astype(np.uint16) * 257).save(tmp_path / "deep.png")
        Image.fromarray(grey8.astype(np.uint8)).save(tmp_path / "flat.png")
        deep = load_photo(tmp_path / "deep.png").pixels.astype(int)
        flat = load_photo(tmp_path / "flat.png").pixels.astype(int)
        assert np.abs(deep - flat).max() <= 1, side


def test_an_image_over_the_decode_budget_is_refused_by_its_header(tmp_path: Path) -> None:
    import pixsearch.indexer.preprocess as preprocess
    from pixsearch.indexer.preprocess import DecodeBudget, read_photo

    path = tmp_path / "wide.png"
    Image.new("RGB", (2000, 1000), "red").save(path)
    budget = preprocess.DECODE_BUDGET
    preprocess.DECODE_BUDGET = DecodeBudget(4_000_000)  # RGB takes 4 bytes a pixel: 8 MB
    try:
        with open(path, "rb") as handle:
            found = read_photo(handle)
    finally:
        preprocess.DECODE_BUDGET = budget
    assert found.photo is None
    assert "needs 8 MB to decode, over the 4 MB limit" in str(found.error)


def test_the_decode_budget_is_shared_by_concurrent_readers() -> None:
    from pixsearch.indexer.preprocess import DecodeBudget

    budget = DecodeBudget(100)
    holding: list[int] = []
    seen: list[list[int]] = []
    lock = threading.Lock()

    def decode(cost: int) -> None:
        with budget.reserve(cost):
            with lock:
                holding.append(cost)
                seen.append(sorted(holding))
            time.sleep(0.02)
            with lock:
                holding.remove(cost)

    threads = [threading.Thread(target=decode, args=(cost,)) for cost in (60, 60, 30, 500, 10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 5
    for together in seen:  # a cost over the whole budget takes all of it: it runs alone
        assert together == [500] or sum(together) <= 100, together
    assert budget.available == 100


def test_a_file_changed_while_read_fails_instead_of_mixing_versions(tmp_path: Path) -> None:
    from pixsearch.indexer.preprocess import read_photo

    path = tmp_path / "photo.png"
    Image.new("RGB", (64, 64), "green").save(path)

    class Growing:
        """A file whose size changes after its first read (someone appends)."""

        def __init__(self) -> None:
            self.handle = open(path, "rb")  # noqa: SIM115
            self.reads = 0

        def __getattr__(self, name: str):
            return getattr(self.handle, name)

        def read(self, *args):
            self.reads += 1
            if self.reads == 3:
                with open(path, "ab") as more:
                    more.write(b"x" * 10)
            return self.handle.read(*args)

    growing = Growing()
    try:
        found = read_photo(growing)  # type: ignore[arg-type]
    finally:
        growing.handle.close()
    assert found.error == "the file changed while being read; index again"
