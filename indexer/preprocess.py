"""Photo preprocessing, written once and shared by indexing, training and evaluation.

The resize rule is **stretch to 224x224** (aspect ratio not kept, no crop). The customer's and
Flickr8k training photos were delivered as 224x224 stretched copies, so the trained heads have
only ever seen stretched photos; stretching at index time puts a user's photo into the same
distribution (a centre crop would cut off the people at the edges that captions talk about).

Pixel normalisation, ``(x - 127) / 128`` as EfficientNet-Lite expects, lives inside the ONNX
image encoder, which takes ``uint8`` NHWC pixels: nothing outside the graph can drift from it.

>>> from PIL import Image
>>> pixels = to_pixels(Image.new("RGB", (640, 480), "red"))
>>> pixels.shape, pixels.dtype.name, pixels[0, 0].tolist()
((224, 224, 3), 'uint8', [255, 0, 0])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pixsearch.indexer.errors import ImageDecodeError

IMAGE_SIZE = 224
PIXEL_MEAN = 127.0
PIXEL_STD = 128.0
RESIZE_RULE = "stretch"
SUPPORTED_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
MAX_PIXELS = 180_000_000
"""Largest declared image we decode (a decompression-bomb guard; 180 MP covers any camera)."""

_ROTATING_ORIENTATIONS = {5, 6, 7, 8}


@dataclass(frozen=True)
class DecodedPhoto:
    """A photo ready for the image encoder, with the facts we store about it."""

    pixels: np.ndarray
    """``uint8`` array of shape (224, 224, 3), upright, RGB."""
    width: int
    """Upright width of the original photo (after EXIF rotation)."""
    height: int
    format: str
    description: str | None = None
    """The photo's own caption (EXIF ImageDescription), if its camera or owner wrote one."""


def open_rgb(
    path: str | Path | BinaryIO, *, draft_size: int = IMAGE_SIZE, name: str | None = None
) -> tuple[Image.Image, int, int, str]:
    """Open a photo upright in RGB; returns it, its original upright width, height and format.

    Large JPEGs are decoded with DCT scaling (draft mode): libjpeg reconstructs them at 1/2, 1/4
    or 1/8 scale, the smallest that keeps both sides at least ``draft_size`` pixels. A 4000x3000
    photo comes out 500x375: decoding and resizing it took 39 ms instead of 53 ms at
    ``draft_size`` 448 (1000x750), and its features kept cosine 0.999 to those of a full decode
    (``benchmarks/indexing.py --set large``). Transparent pixels are composited on white;
    animated files give their first frame.
    Error messages start with ``name`` (default: the path); pass ``name=""`` for the bare reason.
    """
    where = f"{path if name is None else name}: " if name != "" else ""
    try:
        image = Image.open(path)
        image_format = image.format or "unknown"
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise ImageDecodeError(
                f"{where}declared size {width}x{height} is over {MAX_PIXELS:,} pixels "
                "(decompression-bomb guard); skipped"
            )
        orientation = image.getexif().get(0x0112, 1)
        if orientation in _ROTATING_ORIENTATIONS:
            width, height = height, width
        if image.format == "JPEG" and image.mode in ("RGB", "L", "CMYK", "YCbCr"):
            image.draft("RGB", (draft_size, draft_size))
        image.seek(0)
        description = _exif_description(image)
        image = ImageOps.exif_transpose(image)
        rgb = _as_rgb(image)
        rgb.info["pixsearch_description"] = description
        return rgb, width, height, image_format
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageDecodeError(
            f"{where}declared size is too large (decompression-bomb guard: {error}); skipped"
        ) from error
    except UnidentifiedImageError as error:
        raise ImageDecodeError(f"{where}not a readable image ({error})") from error
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise ImageDecodeError(f"{where}cannot decode ({type(error).__name__}: {error})") from error


def _exif_description(image: Image.Image) -> str | None:
    """EXIF ImageDescription (tag 0x010E), stripped; None when absent or blank."""
    try:
        value = image.getexif().get(0x010E)
    except (OSError, ValueError, SyntaxError):
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).strip("\x00 \t\r\n") if value else ""
    return text or None


def _as_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        image.load()
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = max(float(array.max()), 1.0)
        scale = 255.0 / (65535.0 if peak > 255 else 255.0)
        return Image.fromarray(np.clip(array * scale, 0, 255).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def to_pixels(image: Image.Image, size: int = IMAGE_SIZE) -> np.ndarray:
    """Stretch an RGB image to ``size`` x ``size`` and return ``uint8`` HWC pixels."""
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)
    return np.asarray(image, dtype=np.uint8)


def load_photo(path: str | Path | BinaryIO, *, name: str | None = None) -> DecodedPhoto:
    """Read one photo file into encoder-ready pixels; raises ``ImageDecodeError``.

    >>> import tempfile, os
    >>> from PIL import Image
    >>> folder = tempfile.mkdtemp()
    >>> Image.new("L", (30, 20), 128).save(os.path.join(folder, "grey.png"))
    >>> photo = load_photo(os.path.join(folder, "grey.png"))
    >>> photo.pixels.shape, photo.width, photo.height, photo.format
    ((224, 224, 3), 30, 20, 'PNG')
    """
    image, width, height, image_format = open_rgb(path, name=name)
    try:
        description = image.info.get("pixsearch_description")
        return DecodedPhoto(to_pixels(image), width, height, image_format, description)
    except (OSError, ValueError) as error:
        where = f"{path if name is None else name}: " if name != "" else ""
        raise ImageDecodeError(f"{where}cannot decode ({error})") from error
