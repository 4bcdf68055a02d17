"""Where photos come from: a local folder (or file) or an object-store prefix (``s3://``).

A :class:`PhotoSource` lists the photos under its root with size, mtime and (where the store
gives it) ETag, and reads one photo's bytes. Object stores go through ``pyarrow.fs``, already a
dependency: credentials, region and endpoint come from ``storage_options`` (LanceDB's keys,
e.g. ``aws_endpoint``, ``aws_access_key_id``, ``allow_http``) or else from the usual
``AWS_*`` environment variables (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...).
Sources are picklable, so that batch workers on other machines can read with them.

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp()).resolve()
>>> _ = (root / "cat.jpg").write_bytes(b"not really a jpeg")
>>> source = open_source(str(root))
>>> [pathlib.Path(e.path).name for e in source.list().files]
['cat.jpg']
>>> source.read(source.list().files[0].path).data
b'not really a jpeg'
>>> is_remote("s3://bucket/photos/"), is_remote("/home/me/photos")
(True, False)
"""

from __future__ import annotations

import io
import itertools
import os
import posixpath
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO

from pixsearch.db.errors import InvalidInputError
from pixsearch.db.objectstore import s3_filesystem
from pixsearch.indexer.preprocess import SUPPORTED_SUFFIXES
from pixsearch.indexer.scan import (
    KNOWN_UNSUPPORTED_SUFFIXES,
    PIECE_FILES,
    Listing,
    PhotoEntry,
    caption_candidates,
    walk_photos,
)

LIST_THREADS = 16
"""Sub-prefixes of an object-store source listed at a time."""
SIDECAR_MAX_BYTES = 10_000
"""Only the first 10 kB of a sidecar caption are read."""


def is_remote(uri: str | os.PathLike[str]) -> bool:
    """True for an object-store URI (``s3://``, ``gs://``, ...), False for a local path."""
    text = os.fspath(uri)
    return "://" in text and not text.startswith("file://")


@dataclass(frozen=True)
class PhotoBytes:
    """A photo's bytes and the entry as read (size/mtime/etag of the bytes actually read)."""

    data: bytes
    entry: PhotoEntry


class PhotoSource:
    """Photos under ``uri``: a local folder or file, or an object-store prefix.

    ``read`` also reads any other path of the same kind (a local file, or an object of the
    same store), which is what re-encoding the rows already in a database needs.
    """

    def __init__(
        self,
        uri: str | os.PathLike[str],
        *,
        storage_options: dict[str, str] | None = None,
        include_hidden: bool = False,
    ) -> None:
        text = os.fspath(uri)
        self.remote = is_remote(text)
        self.roots: tuple[str, ...]
        """The root, and (local) the path as given when a symbolic link led to it: rows stored
        under either lie in this source."""
        if self.remote:
            self.uri = text
            self.roots = (text.rstrip("/"),)
        else:  # canonical: a root reached through a symbolic link is the same root
            named = os.path.abspath(os.path.expanduser(text.removeprefix("file://")))
            self.uri = os.path.realpath(named)
            self.roots = tuple(dict.fromkeys(p.rstrip(os.sep) for p in (self.uri, named)))
        self.storage_options = dict(storage_options or {})
        self.include_hidden = include_hidden
        self._fs: Any = None

    def __repr__(self) -> str:
        return f"PhotoSource({self.uri!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_fs"] = None  # a filesystem handle is re-created on the other side
        return state

    # -- listing ----------------------------------------------------------------------------
    def list(self) -> Listing:
        """Every supported photo under the root, sorted by path; hidden entries skipped (the
        pieces of :meth:`walk` put together: a small source's listing)."""
        listing = Listing()
        for piece in self.walk():
            listing.files += piece.files
            listing.skipped += piece.skipped
            listing.incomplete += piece.incomplete
            listing.folders += piece.folders
        return listing

    def walk(self, piece: int = PIECE_FILES) -> Iterator[Listing]:
        """The photos under the root in pieces of at most ``piece``, in path order per tree
        (``Listing.root``; a local folder reached through a symbolic link is a tree of its
        own): never the whole listing at once (see :func:`walk_photos`)."""
        if not self.remote:
            if not os.path.exists(self.uri):
                raise InvalidInputError(f"{self.uri} does not exist: give a folder or photo file")
            yield from walk_photos(self.uri, include_hidden=self.include_hidden, piece=piece)
            return
        yield from self._walk_remote(piece)

    def _walk_remote(self, piece: int) -> Iterator[Listing]:
        """The prefix's top level, then each sub-prefix listed recursively, ``LIST_THREADS``
        at a time ahead of the consumer (one listing request returns 1000 keys, so a big
        bucket is listed many prefixes at a time), in path order. A sub-prefix that cannot be
        listed is reported and marked incomplete (its rows are kept); the others are listed
        all the same. Memory: the sub-prefixes listed ahead (one sub-prefix at most whole)."""
        import pyarrow.fs as pafs

        fs, root = self._filesystem_and_path(self.uri)
        tree = f"{self.scheme}://{root}"
        current = Listing(root=tree)
        try:
            info = fs.get_file_info(root)
            if info.type == pafs.FileType.File:
                current.single = True
                self._add_files(current, [info], root)
                yield current
                return
            if info.type != pafs.FileType.Directory:
                raise InvalidInputError(f"{self.uri} does not exist: give a prefix or object URI")
            top = fs.get_file_info(pafs.FileSelector(root, recursive=False))
        except OSError as error:  # the store did not answer: nothing under it is known gone
            current.skipped.append((self.uri, f"cannot list: {error}"))
            current.incomplete.append(self.uri)
            yield current
            return
        files = [i for i in top if i.type == pafs.FileType.File]
        sizes = {i.path: (i.size, i.mtime_ns) for i in files}
        prefixes = [i.path for i in top if i.type == pafs.FileType.Directory]
        if not self.include_hidden:
            prefixes = [p for p in prefixes if not posixpath.basename(p).startswith(".")]
        # a prefix sorts as "name/", as the keys under it do
        items = sorted(
            [(posixpath.basename(i.path), i) for i in files]
            + [(posixpath.basename(p) + "/", p) for p in prefixes],
            key=lambda item: item[0],
        )
        with ThreadPoolExecutor(LIST_THREADS, thread_name_prefix="pixsearch-list") as pool:
            ahead: deque[Future[list[Any] | OSError]] = deque()
            upcoming = iter(p for _, p in items if isinstance(p, str))
            for prefix in itertools.islice(upcoming, LIST_THREADS):
                ahead.append(pool.submit(self._list_prefix, prefix))
            for _, item in items:
                if not isinstance(item, str):  # an object at the top
                    self._add_files(current, [item], root, sizes)
                else:
                    found = ahead.popleft().result()
                    following = next(upcoming, None)
                    if following is not None:
                        ahead.append(pool.submit(self._list_prefix, following))
                    if isinstance(found, OSError):
                        uri = f"{self.scheme}://{item}"
                        current.skipped.append((uri, f"cannot list: {found}"))
                        current.incomplete.append(uri)
                        continue
                    part = Listing()
                    self._add_files(part, found, root)
                    part.files.sort(key=lambda e: e.path)
                    current.skipped += part.skipped
                    for start in range(0, len(part.files), piece):
                        current.files += part.files[start : start + piece]
                        if len(current.files) >= piece:
                            yield current
                            current = Listing(root=tree)
                if len(current.files) >= piece:
                    yield current
                    current = Listing(root=tree)
        yield current

    @property
    def scheme(self) -> str:
        """``s3``, ``gs``, ... (remote sources only)."""
        return self.uri.split("://", 1)[0]

    def _list_prefix(self, prefix: str) -> list[Any] | OSError:
        """Every object under ``prefix`` (recursive), or the error that stopped the listing."""
        import pyarrow.fs as pafs

        fs, _ = self._filesystem_and_path(self.uri)
        try:
            infos = fs.get_file_info(pafs.FileSelector(prefix, recursive=True))
        except OSError as error:
            return error
        return [i for i in infos if i.type == pafs.FileType.File]

    def _add_files(
        self,
        listing: Listing,
        infos: list[Any],
        root: str,
        sizes: dict[str, tuple[int, int]] | None = None,
    ) -> None:
        """The supported photos among one prefix's objects (``infos``: files only), with the
        fingerprint of their caption objects (which lie in the same prefix: ``sizes``, by
        default ``infos``'s own)."""
        if sizes is None:
            sizes = {i.path: (i.size, i.mtime_ns) for i in infos}
        for item in infos:
            relative = item.path[len(root) :].lstrip("/")
            if not self.include_hidden and any(p.startswith(".") for p in relative.split("/")):
                continue
            uri = f"{self.scheme}://{item.path}"
            suffix = posixpath.splitext(item.path)[1].lower()
            if suffix in KNOWN_UNSUPPORTED_SUFFIXES:
                listing.skipped.append((uri, f"unsupported format {suffix}"))
                continue
            if suffix not in SUPPORTED_SUFFIXES:
                continue
            found = [c for c in caption_candidates(item.path) if c in sizes]
            key = ";".join(
                f"{c[len(posixpath.splitext(item.path)[0]) :]}:{sizes[c][0]}:{sizes[c][1] or 0}"
                for c in found
            )
            listing.files.append(
                PhotoEntry(
                    uri,
                    int(item.size or 0),
                    int(item.mtime_ns or 0),
                    sidecar=f"{self.scheme}://{found[0]}" if found else None,
                    caption_key=key,
                )
            )

    def contains(self, path: str) -> bool:
        """True when ``path`` lies under this source's root (it would be listed if present).

        >>> PhotoSource("s3://b/photos").contains("s3://b/photos/a.jpg")
        True
        >>> PhotoSource("s3://b/photos").contains("s3://b/photos2/a.jpg")
        False
        """
        if self.remote != is_remote(path):
            return False
        separator = "/" if self.remote else os.sep
        return any(path == base or path.startswith(base + separator) for base in self.roots)

    def exists(self, path: str) -> bool:
        """True when the photo at ``path`` (of this source's kind) exists now."""
        if not is_remote(path):
            return os.path.exists(path)
        import pyarrow.fs as pafs

        fs, key = self._filesystem_and_path(path)
        try:
            return bool(fs.get_file_info(key).type == pafs.FileType.File)
        except OSError:
            return True  # unknown: not taken as gone

    # -- reading ----------------------------------------------------------------------------
    def read(self, path: str) -> PhotoBytes:
        """Read one photo's bytes; raises ``OSError`` when it cannot be read."""
        if not is_remote(path):
            with open(path, "rb") as handle:
                info = os.fstat(handle.fileno())
                data = handle.read()
            return PhotoBytes(data, PhotoEntry(path, info.st_size, info.st_mtime_ns))
        fs, key = self._filesystem_and_path(path)
        with fs.open_input_stream(key) as stream:
            data = stream.read()
            meta = _metadata(stream)
        etag = meta.get("ETag", "").strip('"') or None
        mtime_ns = _http_date_ns(meta.get("Last-Modified", ""))
        return PhotoBytes(data, PhotoEntry(path, len(data), mtime_ns, etag=etag))

    def open(self, path: str) -> tuple[BinaryIO, PhotoEntry]:
        """An open binary handle on a photo (a local file is not read into memory) and the
        entry as opened (its size and mtime now); raises ``OSError``."""
        if not is_remote(path):
            handle = open(path, "rb")  # noqa: SIM115  (the caller closes it)
            info = os.fstat(handle.fileno())
            return handle, PhotoEntry(path, info.st_size, info.st_mtime_ns)
        got = self.read(path)
        return io.BytesIO(got.data), got.entry

    def sidecar_caption(self, entry: PhotoEntry) -> str | None:
        """The caption a user wrote next to a photo: the first non-blank of ``NAME.EXT.txt``
        and ``NAME.txt`` (its first 10 kB). Captions count for the content policy (a caption
        about children restricts the photo) and are stored in the ``caption`` column."""
        if not is_remote(entry.path):
            candidates: tuple[str, ...] = caption_candidates(entry.path)
        else:
            candidates = (entry.sidecar,) if entry.sidecar else ()
        for candidate in candidates:
            try:
                raw = self._read_head(candidate, SIDECAR_MAX_BYTES)
            except OSError:
                continue
            text = raw.decode("utf-8", "replace").strip()
            if text:
                return text
        return None

    def _read_head(self, path: str, limit: int) -> bytes:
        if not is_remote(path):
            with open(path, "rb") as handle:
                return handle.read(limit)
        fs, key = self._filesystem_and_path(path)
        with fs.open_input_stream(key) as stream:
            return stream.read(limit)

    def _filesystem_and_path(self, uri: str) -> tuple[Any, str]:
        """The ``pyarrow.fs`` filesystem for ``uri``'s scheme (made once) and the path in it."""
        import pyarrow.fs as pafs

        scheme, rest = uri.split("://", 1)
        if self._fs is None or self._fs[0] != scheme:
            if scheme in ("s3", "s3a"):
                fs: Any = s3_filesystem(self.storage_options)
            else:
                fs = pafs.FileSystem.from_uri(uri)[0]
            self._fs = (scheme, fs)
        return self._fs[1], rest.rstrip("/")


def open_source(
    uri: str | os.PathLike[str],
    *,
    storage_options: dict[str, str] | None = None,
    include_hidden: bool = False,
) -> PhotoSource:
    """A :class:`PhotoSource` for a local path or an object-store URI."""
    return PhotoSource(uri, storage_options=storage_options, include_hidden=include_hidden)


def _metadata(stream: Any) -> dict[str, str]:
    try:
        raw = stream.metadata() or {}
    except (AttributeError, OSError):
        return {}
    return {
        (k.decode() if isinstance(k, bytes) else str(k)): (
            v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
        )
        for k, v in raw.items()
    }


def _http_date_ns(text: str) -> int:
    """``Last-Modified`` as nanoseconds since the epoch (0 when absent or unparsable).

    >>> _http_date_ns("2026-01-02T03:04:05Z")
    1767323045000000000
    """
    from datetime import datetime
    from email.utils import parsedate_to_datetime

    if not text:
        return 0
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return 0
    return int(moment.timestamp()) * 1_000_000_000
