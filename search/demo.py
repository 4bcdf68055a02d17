"""``pixsearch demo``: index the sample photos that scikit-image ships and run a few queries.

scikit-image comes with the ``[demo]`` extra; it is only a source of real photos, so the demo
works offline right after ``pip install "pixsearch[demo]"``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pixsearch.db.errors import MissingExtraError

DEMO_PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "camera.png",
    "coins.png",
    "moon.png",
    "retina.jpg",
    "brick.png",
    "grass.png",
    "page.png",
    "clock_motion.png",
)
"""Sample files of ``skimage/data`` used as the demo collection."""

DEMO_QUERIES = (
    ("a cat", "chelsea.png"),
    ("a cup of coffee", "coffee.png"),
    ("a motorcycle", "motorcycle_left.png"),
    ("a rocket launch", "rocket.jpg"),
)
"""Each demo query with the photo a person would expect first."""


def skimage_data_dir() -> Path:
    """The folder of sample images inside the installed scikit-image wheel."""
    try:
        import skimage
    except ImportError as error:
        raise MissingExtraError(
            'the demo photos come from scikit-image: pip install "pixsearch[demo]"'
        ) from error
    return Path(skimage.__file__).parent / "data"


def prepare_demo_photos(target: Path) -> Path:
    """Copy the demo photos into ``target`` (once) and return it."""
    source = skimage_data_dir()
    target.mkdir(parents=True, exist_ok=True)
    for name in DEMO_PHOTOS:
        destination = target / name
        if not destination.exists():
            shutil.copyfile(source / name, destination)
    return target
