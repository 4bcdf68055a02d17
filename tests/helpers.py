"""Test helpers: real photos (scikit-image's samples) and generated image files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def copy_demo_photos(target: Path) -> Path:
    """Copy the demo collection (scikit-image's sample photos) into ``target``."""
    skimage = pytest.importorskip("skimage", reason="the demo photos come with scikit-image")
    from pixsearch.search.demo import DEMO_PHOTOS

    source = Path(skimage.__file__).parent / "data"
    target.mkdir(parents=True, exist_ok=True)
    for name in DEMO_PHOTOS:
        shutil.copyfile(source / name, target / name)
    return target


def noise_image(path: Path, seed: int, size: tuple[int, int] = (64, 48)) -> Path:
    """Write a seeded random-noise RGB image (format from the suffix)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path
