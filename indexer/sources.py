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
from pixsearch.db.objectstore import s3_client, s3_filesystem
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
LIST_PAGE = 1000
"""Keys per listing request (S3's most)."""
LIST_AHEAD_KEYS = 10_000
"""Keys of each sub-prefix listed ahead by the listing threads (and items of the top level
read ahead); the rest of a bigger sub-prefix is listed page by page as the walk reaches it."""
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
        self._s3: Any = None

    def __repr__(self) -> str:
        return f"PhotoSource({self.uri!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_fs"] = state["_s3"] = None  # handles are re-created on the other side
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
        """The prefix's objects in path order (see :meth:`_objects`: sub-prefixes listed
        ``LIST_THREADS`` at a time ahead, each streamed page by page past its first
        ``LIST_AHEAD_KEYS``), with their caption objects (:meth:`_photos`). A sub-prefix that
        cannot be listed is reported and marked incomplete (its rows are kept); the others are
        listed all the same. Memory: the pages listed ahead, never one prefix whole (with
        boto3; without it, ``pyarrow.fs`` lists each sub-prefix whole)."""
        import pyarrow.fs as pafs

        fs, root = self._filesystem_and_path(self.uri)
        tree = f"{self.scheme}://{root}"
        current = Listing(root=tree)
        try:
            info = fs.get_file_info(root)
            if info.type == pafs.FileType.File:
                current.single = True
                objects: Iterator[_Object | _Event] = iter([_Object.of(info)])
            elif info.type != pafs.FileType.Directory:
                raise InvalidInputError(f"{self.uri} does not exist: give a prefix or object URI")
            else:
                objects = self._objects(root)
        except OSError as error:  # the store did not answer: nothing under it is known gone
            current.skipped.append((self.uri, f"cannot list: {error}"))
            current.incomplete.append(self.uri)
            yield current
            return
        for item in self._photos(root, objects):
            if isinstance(item, PhotoEntry):
                current.files.append(item)
            else:
                current.skipped.append((item.uri, item.reason))
                if item.incomplete:
                    current.incomplete.append(item.uri)
            if len(current.files) >= piece:
                yield current
                current = Listing(root=tree, single=current.single)
        yield current

    @property
    def scheme(self) -> str:
        """``s3``, ``gs``, ... (remote sources only)."""
        return self.uri.split("://", 1)[0]

    def _objects(self, root: str) -> Iterator[_Object | _Event]:
        """Every object under ``root`` in path order: the top level's objects and those of its
        sub-prefixes, which are listed ``LIST_THREADS`` at a time ahead of the consumer (one
        request returns 1000 keys, so a big bucket is listed many prefixes at a time). The top
        level is read ahead by at most ``LIST_AHEAD_KEYS`` items."""
        top = self._level(root)
        ahead: deque[tuple[_Object | _Event | str, Future[Any] | None]] = deque()
        with ThreadPoolExecutor(LIST_THREADS, thread_name_prefix="pixsearch-list") as pool:
            listing = 0

            def fill() -> None:
                nonlocal listing
                while listing < LIST_THREADS and len(ahead) < LIST_AHEAD_KEYS:
                    item = next(top, None)
                    if item is None:
                        return
                    if not isinstance(item, str):
                        ahead.append((item, None))
                    elif self.include_hidden or not posixpath.basename(item).startswith("."):
                        ahead.append((item, pool.submit(self._list_prefix, item)))
                        listing += 1

            fill()
            while ahead:
                item, future = ahead.popleft()
                if future is None:
                    yield item  # type: ignore[misc]
                    fill()
                    continue
                found = future.result()
                listing -= 1
                fill()  # the next prefixes are listed while this one is consumed
                if isinstance(found, OSError):
                    yield _Event(f"{self.scheme}://{item}", f"cannot list: {found}", True)
                else:
                    yield from found

    def _level(self, root: str) -> Iterator[_Object | _Event | str]:
        """The objects and sub-prefixes (``bucket/key`` without a slash) at the top of
        ``root``, in path order, page by page; a failure ends it as an incomplete event."""
        try:
            for page in self._pages(root, recursive=False):
                yield from page
        except OSError as error:
            yield _Event(self.uri, f"cannot list: {error}", True)

    def _list_prefix(self, prefix: str) -> Iterator[_Object | _Event] | OSError:
        """The objects under ``prefix`` (recursive) in path order: its first
        ``LIST_AHEAD_KEYS`` listed now (in a listing thread), the rest page by page as they
        are consumed; or the error that stopped its first listing request."""
        pages = self._pages(prefix, recursive=True)
        first: list[_Object] = []
        try:
            for page in pages:
                first += page  # type: ignore[arg-type]
                if len(first) >= LIST_AHEAD_KEYS:
                    break
            else:
                return iter(first)
        except OSError as error:
            return error
        return itertools.chain(first, self._rest(prefix, pages))

    def _rest(self, prefix: str, pages: Iterator[list[Any]]) -> Iterator[_Object | _Event]:
        try:
            for page in pages:
                yield from page
        except OSError as error:  # what was listed stands; the rest of the prefix is kept
            yield _Event(f"{self.scheme}://{prefix}", f"cannot list: {error}", True)

    def _pages(self, path: str, *, recursive: bool) -> Iterator[list[_Object | str]]:
        """The objects under ``path`` (``bucket/key``), and without ``recursive`` its
        sub-prefixes, one sorted page per listing request (``LIST_PAGE`` keys: S3's
        ``ListObjectsV2`` gives keys in UTF-8 byte order, i.e. path order). Without boto3
        (or on another store) one page: ``pyarrow.fs``'s listing, whole. Raises ``OSError``."""
        client = self._client()
        if client is None:
            yield self._pyarrow_page(path, recursive=recursive)
            return
        bucket, _, key = path.partition("/")
        request: dict[str, Any] = {"Bucket": bucket, "Prefix": f"{key}/" if key else ""}
        if not recursive:
            request["Delimiter"] = "/"
        paginator = client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(**request, PaginationConfig={"PageSize": LIST_PAGE}):
                items: list[_Object | str] = [
                    _Object(f"{bucket}/{o['Key']}", int(o["Size"]), _ns(o["LastModified"]))
                    for o in page.get("Contents", [])
                    if not o["Key"].endswith("/")  # a folder marker
                ]
                items += [
                    f"{bucket}/{p['Prefix'].rstrip('/')}" for p in page.get("CommonPrefixes", [])
                ]
                yield sorted(items, key=_path_order)
        except Exception as error:  # botocore's errors are not OSErrors
            if isinstance(error, OSError):
                raise
            raise OSError(f"{type(error).__name__}: {error}") from error

    def _pyarrow_page(self, path: str, *, recursive: bool) -> list[_Object | str]:
        import pyarrow.fs as pafs

        fs, _ = self._filesystem_and_path(self.uri)
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=recursive))
        items: list[_Object | str] = [_Object.of(i) for i in infos if i.type == pafs.FileType.File]
        if not recursive:
            items += [i.path for i in infos if i.type == pafs.FileType.Directory]
        return sorted(items, key=_path_order)

    def _client(self) -> Any | None:
        """A boto3 client for an ``s3://`` source (made once), None without boto3."""
        if self.scheme not in ("s3", "s3a"):
            return None
        if self._s3 is None:
            try:
                self._s3 = s3_client(self.storage_options)
            except ImportError:
                self._s3 = False
        return self._s3 or None

    def _photos(
        self, root: str, objects: Iterator[_Object | _Event]
    ) -> Iterator[PhotoEntry | _Event]:
        """The supported photos among ``objects`` (in path order), each with the fingerprint
        of its caption objects (``NAME.EXT.txt``, ``NAME.txt``), in path order; unsupported
        formats as skipped events. A photo's caption objects share its prefix ``NAME.``, and
        the keys with one prefix are contiguous in path order: a photo waits until the walk
        has passed that prefix (a few keys), caption objects are kept while a photo to come
        may still be theirs."""
        pending: deque[_Object] = deque()
        captions: dict[str, tuple[int, int]] = {}
        for item in objects:
            if isinstance(item, _Event):
                yield item
                continue
            relative = item.path[len(root) :].lstrip("/")
            if not self.include_hidden and any(p.startswith(".") for p in relative.split("/")):
                continue
            while pending and not item.path.startswith(_block(pending[0].path)):
                yield self._entry(pending.popleft(), captions)
            while captions and not _may_caption(next(iter(captions)), item.path):
                del captions[next(iter(captions))]
            suffix = posixpath.splitext(item.path)[1].lower()
            if suffix == ".txt":
                captions[item.path] = (item.size, item.mtime_ns)
            elif suffix in KNOWN_UNSUPPORTED_SUFFIXES:
                uri = f"{self.scheme}://{item.path}"
                yield _Event(uri, f"unsupported format {suffix}", False)
            elif suffix in SUPPORTED_SUFFIXES:
                pending.append(item)
        while pending:
            yield self._entry(pending.popleft(), captions)

    def _entry(self, photo: _Object, captions: dict[str, tuple[int, int]]) -> PhotoEntry:
        """The entry of a photo object, with the fingerprint of its caption objects."""
        found = [c for c in caption_candidates(photo.path) if c in captions]
        stem = posixpath.splitext(photo.path)[0]
        key = ";".join(f"{c[len(stem) :]}:{captions[c][0]}:{captions[c][1] or 0}" for c in found)
        return PhotoEntry(
            f"{self.scheme}://{photo.path}",
            photo.size,
            photo.mtime_ns,
            sidecar=f"{self.scheme}://{found[0]}" if found else None,
            caption_key=key,
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


@dataclass(frozen=True)
class _Object:
    """One listed object: its ``bucket/key`` path, size and mtime."""

    path: str
    size: int
    mtime_ns: int

    @staticmethod
    def of(info: Any) -> _Object:
        """From a ``pyarrow.fs.FileInfo``."""
        return _Object(info.path, int(info.size or 0), int(info.mtime_ns or 0))


@dataclass(frozen=True)
class _Event:
    """Something a listing passed over (``uri``, ``reason``); ``incomplete``: a prefix that
    could not be listed (wholly or from some key on: nothing under it is known gone)."""

    uri: str
    reason: str
    incomplete: bool


def _path_order(item: _Object | str) -> str:
    """The key an object or a sub-prefix sorts by: a prefix as ``name/``, as its keys do."""
    return item.path if isinstance(item, _Object) else item + "/"


def _block(path: str) -> str:
    """The prefix every caption object of the photo at ``path`` shares with it (``NAME.``).

    >>> _block("b/p/cat.jpg"), caption_candidates("b/p/cat.jpg")
    ('b/p/cat.', ('b/p/cat.jpg.txt', 'b/p/cat.txt'))
    """
    return posixpath.splitext(path)[0] + "."


def _may_caption(caption: str, following: str) -> bool:
    """True when a photo at or after ``following`` (in path order) may have ``caption`` as a
    caption object: they share the caption's prefix up to the first dot of its name.

    >>> _may_caption("p/cat.txt", "p/cat.webp"), _may_caption("p/cat.txt", "p/dog.jpg")
    (True, False)
    """
    name_start = caption.rfind("/") + 1
    dot = caption.find(".", name_start)
    return dot >= 0 and following.startswith(caption[: dot + 1])


def _ns(moment: Any) -> int:
    """A listing's ``LastModified`` (an aware datetime) in nanoseconds, to the millisecond as
    ``pyarrow.fs`` gives it (rows stored from either listing compare equal)."""
    import calendar

    seconds = calendar.timegm(moment.utctimetuple())
    return seconds * 1_000_000_000 + (moment.microsecond // 1000) * 1_000_000


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
