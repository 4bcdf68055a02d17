"""Small JPEG thumbnails of indexed photos, cached in memory (LRU) and optionally on disk.

The cache key is the photo's indexed ``content_hash``, and every :meth:`ThumbnailCache.get`
first proves that the file still holds those bytes (``open_indexed`` in
:mod:`pixsearch.indexer.fingerprint`): a photo overwritten since it was indexed raises
``PhotoChangedError`` instead of showing its new pixels or an old cached thumbnail.
``pixsearch index`` makes it showable again.

>>> import hashlib, tempfile, pathlib
>>> from PIL import Image
>>> from pixsearch.indexer.fingerprint import Fingerprint
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> Image.new("RGB", (640, 480), "red").save(folder / "red.png")
>>> data = (folder / "red.png").read_bytes()
>>> cache = ThumbnailCache(size=128)
>>> indexed = Fingerprint(hashlib.sha256(data).hexdigest(), len(data))
>>> jpeg = cache.get(str(folder / "red.png"), indexed)
>>> jpeg[:3] == b"\\xff\\xd8\\xff", Image.open(io.BytesIO(jpeg)).size
(True, (128, 96))
>>> data_uri(jpeg).startswith("data:image/jpeg;base64,")
True
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageOps, UnidentifiedImageError

from pixsearch.indexer.fingerprint import Fingerprint, open_indexed

DEFAULT_SIZE = 256
"""Longest side of a thumbnail, in pixels."""
CACHE_FOLDER = ".pixsearch-thumbnails"
"""Folder inside a local database that holds the on-disk thumbnail cache."""


def make_thumbnail(path: str | os.PathLike[str] | BinaryIO, size: int = DEFAULT_SIZE) -> bytes:
    """A JPEG of the photo at ``path`` (or in an open file), its longest side at most ``size``.

    EXIF orientation is applied; transparency is flattened onto white. Raises ``OSError`` (or
    PIL's ``UnidentifiedImageError``, a subclass) when the file is missing or not an image.
    """
    with Image.open(path) as image:
        image.draft("RGB", (size, size))  # JPEG: decode at reduced scale, much faster
        image = ImageOps.exif_transpose(image)
        image.thumbnail((size, size), Image.Resampling.LANCZOS)
        if image.mode in ("RGBA", "LA", "P"):
            image = image.convert("RGBA")
            background = Image.new("RGB", image.size, "white")
            background.paste(image, mask=image.getchannel("A"))
            image = background
        elif image.mode != "RGB":
            image = image.convert("RGB")
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=82, optimize=True)
        return buffer.getvalue()


def data_uri(jpeg: bytes) -> str:
    """``data:image/jpeg;base64,...`` for embedding a thumbnail in a self-contained page.

    >>> data_uri(b"\\xff\\xd8")
    'data:image/jpeg;base64,/9g='
    """
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


class ThumbnailCache:
    """Thumbnails by content hash: an in-memory LRU of ``max_items``, backed by ``folder``.

    ``folder`` (optional) keeps thumbnails across runs, e.g. ``<db>/.pixsearch-thumbnails``;
    its file names are hashes computed here, never names taken from a request or a row.
    Thread-safe: a web server may call :meth:`get` from several worker threads.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str] | None = None,
        *,
        size: int = DEFAULT_SIZE,
        max_items: int = 512,
    ):
        self.folder = Path(folder) if folder is not None else None
        self.size = size
        self.max_items = max_items
        self._memory: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def for_database(cls, uri: str, **options: int) -> ThumbnailCache:
        """A cache on disk inside a local database folder (memory only for remote URIs)."""
        local = "://" not in uri or uri.startswith("file://")
        folder = Path(uri.removeprefix("file://")) / CACHE_FOLDER if local else None
        return cls(folder, **options)

    def _key(self, content_hash: str) -> str:
        # "v2": keys of the indexed content hash only (older caches also keyed by id + mtime).
        return hashlib.sha256(f"v2:{content_hash}:{self.size}".encode()).hexdigest()[:32]

    def get(self, path: str, fingerprint: Fingerprint) -> bytes | None:
        """The thumbnail of the indexed photo at ``path``; None when it cannot be decoded.

        Raises ``PhotoChangedError`` when the file is gone or no longer holds the indexed
        bytes (also when a thumbnail of them is cached: a cache hit never skips the check).
        """
        key = self._key(fingerprint.content_hash)
        with open_indexed(path, fingerprint) as handle:
            with self._lock:
                jpeg = self._memory.get(key)
            if jpeg is None:
                jpeg = self._read_disk(key)
            if jpeg is None:
                try:
                    jpeg = make_thumbnail(handle, self.size)
                except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
                    return None
                fresh = True
            else:
                fresh = False
        if fresh:
            self._write_disk(key, jpeg)  # only after open_indexed saw no write meanwhile
        with self._lock:
            self._memory[key] = jpeg
            self._memory.move_to_end(key)
            while len(self._memory) > self.max_items:
                self._memory.popitem(last=False)
        return jpeg

    def __len__(self) -> int:
        return len(self._memory)

    def _read_disk(self, key: str) -> bytes | None:
        if self.folder is None:
            return None
        try:
            return (self.folder / f"{key}.jpg").read_bytes()
        except OSError:
            return None

    def _write_disk(self, key: str, jpeg: bytes) -> None:
        if self.folder is None:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            temporary = self.folder / f"{key}.{threading.get_ident()}.tmp"
            temporary.write_bytes(jpeg)
            os.replace(temporary, self.folder / f"{key}.jpg")
        except OSError:
            pass  # a read-only database folder still serves thumbnails from memory
