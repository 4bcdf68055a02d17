"""Test helpers: real photos (scikit-image's samples) and generated image files."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

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


UNFLAGGED_DEMO_PHOTO = "page.png"
"""A demo photo the committed child classifier does not flag (a page of text: score 0.22 with
the frozen encoder's classifier, 0.40 with the fine-tuned one's, threshold 0.5). Noise images
are no such photo: the fine-tuned classifier scores them 0.61-0.80."""


def unflagged_photo(path: Path) -> Path:
    """Write a photo the child classifier does not flag (for tests of what a caption does)."""
    copy_demo_photos(path.parent / ".demo")
    shutil.copyfile(path.parent / ".demo" / UNFLAGGED_DEMO_PHOTO, path)
    shutil.rmtree(path.parent / ".demo")
    return path


def noise_image(path: Path, seed: int, size: tuple[int, int] = (64, 48)) -> Path:
    """Write a seeded random-noise RGB image (format from the suffix)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def make_old_bundle_table(engine: Any, *, same_encoder: bool = False) -> int:
    """Pretend ``engine``'s database was built by an older model bundle (as an older pixsearch
    leaves it); returns its row count."""
    from pixsearch.db.schema import photo_schema
    from pixsearch.indexer.rows import feature_source

    old = photo_schema(
        vector_dim=engine.bundle.vector_dim,
        feature_dim=engine.bundle.feature_dim,
        bundle_id="older-bundle",
        space="old",
        feature_source=feature_source(engine.bundle) if same_encoder else "older-encoder",
    )
    engine.store.replace_all(engine.store.table.to_arrow(), old)
    return engine.store.count()
