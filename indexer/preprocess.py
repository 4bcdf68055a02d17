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

import contextlib
import hashlib
import os
import threading
from collections.abc import Container, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from pixsearch.indexer.errors import ImageDecodeError

IMAGE_SIZE = 224
PIXEL_MEAN = 127.0
PIXEL_STD = 128.0
RESIZE_RULE = "stretch"
SUPPORTED_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
MAX_PIXELS = 180_000_000
"""Largest declared image we decode (a decompression-bomb guard; 180 MP covers any camera)."""
DECODE_BUDGET_BYTES = 384 * 2**20
"""Memory that decoded pixels of all concurrent decodes may hold together. A photo needing
more than this is refused; one needing part of it waits while others hold the rest. JPEGs are
decoded at reduced scale (a 180 MP JPEG needs ~12 MB); a PNG/TIFF/WebP is decoded whole, so
this admits up to ~100 MP of RGB or ~200 MP of 16-bit grey (a 13000x13000 16-bit PNG: 338 MB).
Indexing 200 photos peaks at ~580 MB without it, so whatever the folder holds it stays under
1 GB (``benchmarks/hostile_index.py``: 969 MB with two such PNGs and a 3 GB fake JPEG)."""
HASH_CHUNK = 1 << 20
"""Bytes read at a time while hashing a photo file (files are never read whole into memory)."""

_ROTATING_ORIENTATIONS = {5, 6, 7, 8}
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
"""EXIF orientation -> the transpose that makes a photo upright (``ImageOps.exif_transpose``)."""


class DecodeBudget:
    """Bytes of decoded pixels that concurrent decodes may hold at once (a counting semaphore).

    >>> budget = DecodeBudget(100)
    >>> with budget.reserve(60):
    ...     budget.available
    40
    >>> budget.available
    100
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.available = limit
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        """Hold ``nbytes`` (at most the whole budget) for the block; waits until they are free."""
        cost = max(0, min(int(nbytes), self.limit))
        with self._changed:
            self._changed.wait_for(lambda: self.available >= cost)
            self.available -= cost
        try:
            yield
        finally:
            with self._changed:
                self.available += cost
                self._changed.notify_all()


DECODE_BUDGET = DecodeBudget(DECODE_BUDGET_BYTES)
"""The budget every decode in this process shares (indexing readers, batch shards, training)."""


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
    (``benchmarks/indexing.py --set large``). Other formats are decoded whole, then reduced
    by whole factors to at least ``3 * draft_size`` a side (as the final resize would) before
    any conversion, so a deep or huge image is never copied at full size. The header is checked
    first: the memory a decode needs is reserved from :data:`DECODE_BUDGET`, and a photo
    needing more than all of it is refused. Transparent pixels are composited on white;
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
        cost = decode_cost(image)
        if cost > DECODE_BUDGET.limit:
            raise ImageDecodeError(
                f"{where}{width}x{height} {image.mode} needs {cost / 2**20:,.0f} MB to decode, "
                f"over the {DECODE_BUDGET.limit / 2**20:,.0f} MB limit; skipped"
            )
        description = _exif_description(image)
        with DECODE_BUDGET.reserve(cost):
            image.load()
            deep = image.mode.startswith("I") and _peak(image) > 255
            image = _reduced(image, 3 * draft_size)
        if orientation in _TRANSPOSE:
            image = image.transpose(_TRANSPOSE[orientation])
        rgb = _as_rgb(image, deep=deep)
        rgb.info["pixsearch_description"] = description
        return rgb, width, height, image_format
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageDecodeError(
            f"{where}declared size is too large (decompression-bomb guard: {error}); skipped"
        ) from error
    except UnidentifiedImageError as error:
        raise ImageDecodeError(
            f"{where}not a readable image (unknown or damaged format)"
        ) from error
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise ImageDecodeError(f"{where}cannot decode ({type(error).__name__}: {error})") from error


_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
"""Bytes per pixel of Pillow's in-memory modes (every other mode takes 4)."""
_UNREDUCIBLE = frozenset({"1", "P"})
"""Modes converted (to 4-byte RGB/RGBA) before they are reduced."""


def decode_cost(image: Image.Image) -> int:
    """Bytes a lazily opened image takes once decoded (at its draft size) and converted.

    >>> decode_cost(Image.new("I;16", (1000, 1000))) // 2**20
    1
    >>> decode_cost(Image.new("RGB", (1000, 1000))) // 2**20
    3
    """
    pixels = image.size[0] * image.size[1]
    extra = 4 if image.mode in _UNREDUCIBLE else 0
    return pixels * (_BYTES_PER_PIXEL.get(image.mode, 4) + extra)


def _reduced(image: Image.Image, min_side: int) -> Image.Image:
    """Shrink a decoded image by whole factors to at least ``min_side`` a side (box filter).

    The factors are those Pillow's ``resize(..., reducing_gap=3.0)`` uses itself, so a photo
    that ends up 224x224 gets the same pixels as without this step; it only happens sooner,
    before any full-size conversion.

    >>> _reduced(Image.new("I;16", (13000, 6500)), 672).size
    (684, 722)
    """
    factor_x = max(1, image.size[0] // min_side)
    factor_y = max(1, image.size[1] // min_side)
    if factor_x == 1 and factor_y == 1:
        return image
    if image.mode in _UNREDUCIBLE:
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode.startswith("I;16"):
        size = (image.size[0] // factor_x, image.size[1] // factor_y)
        return image.resize(size, Image.Resampling.BOX)
    return image.reduce((factor_x, factor_y))


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


def _peak(image: Image.Image) -> float:
    """The largest value of a one-band image, read without copying it."""
    extrema = image.getextrema()
    return float(extrema[1]) if isinstance(extrema[1], int | float) else 0.0


def _as_rgb(image: Image.Image, *, deep: bool = False) -> Image.Image:
    """RGB of a (reduced) image; ``deep``: its integer values span 0-65535, not 0-255."""
    if image.mode == "RGB":
        image.load()
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode.startswith("I"):  # I;16*, I: grey of 0-65535 (0-255 when no value is larger)
        array = np.asarray(image)
        if deep:
            array = array.astype(np.int64) * 255 // 65535
        return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8)).convert("RGB")
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


@dataclass(frozen=True)
class PhotoFile:
    """One photo file as read by an indexer: the hash of its bytes, and its pixels or why not."""

    content_hash: str
    photo: DecodedPhoto | None = None
    """None when the file failed (``error``) or its hash was among those to reuse."""
    error: str | None = None


def read_photo(handle: BinaryIO, reuse: Container[str] = ()) -> PhotoFile:
    """Hash an open photo file and decode it, unless its hash is in ``reuse``; never holds the
    file's bytes in memory: the header is checked first (a file that is no image is refused
    without reading further), the bytes are hashed in chunks, and the decoder reads from the
    file within :data:`DECODE_BUDGET`. A file changed while being read fails (read it again).
    Raises ``OSError`` when the file cannot be read.

    >>> import io
    >>> from PIL import Image
    >>> buffer = io.BytesIO()
    >>> Image.new("RGB", (64, 48), "blue").save(buffer, "PNG")
    >>> found = read_photo(buffer)
    >>> found.photo.width, found.error, len(found.content_hash)
    (64, None, 64)
    >>> read_photo(buffer, reuse={found.content_hash}).photo is None
    True
    >>> read_photo(io.BytesIO(bytes(10_000))).error
    'not a readable image (unknown or damaged format)'
    """
    before = _identity(handle)
    try:
        handle.seek(0)
        Image.open(handle)  # reads the header only
    except UnidentifiedImageError:
        handle.seek(0)
        head = hashlib.sha256(handle.read(HASH_CHUNK)).hexdigest()
        return PhotoFile(head, error="not a readable image (unknown or damaged format)")
    except (Image.DecompressionBombError, OSError, ValueError, SyntaxError, EOFError):
        pass  # decoding it below names the fault
    handle.seek(0)
    digest = hashlib.sha256()
    while chunk := handle.read(HASH_CHUNK):
        digest.update(chunk)
    content_hash = digest.hexdigest()
    if content_hash in reuse:
        return PhotoFile(content_hash)
    handle.seek(0)
    try:
        photo = load_photo(handle, name="")
    except ImageDecodeError as error:
        return PhotoFile(content_hash, error=str(error))
    if _identity(handle) != before:
        return PhotoFile(content_hash, error="the file changed while being read; index again")
    return PhotoFile(content_hash, photo)


def _identity(handle: BinaryIO) -> tuple[int, int] | None:
    """Size and mtime of an open file (None for an in-memory stream)."""
    try:
        info = os.fstat(handle.fileno())
    except (OSError, ValueError, AttributeError):
        return None
    return info.st_size, info.st_mtime_ns
