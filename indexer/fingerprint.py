"""Is a photo file still the one that was indexed? Every output that shows pixels asks here.

A row stores the SHA-256 of the bytes the indexer read (``content_hash``) and the file's size.
Before a thumbnail, a gallery card or the photo itself is shown, :func:`open_indexed` opens the
file and proves it still has those bytes; a file overwritten since (a camera reusing a name)
raises :class:`~pixsearch.indexer.errors.PhotoChangedError`, so what the policy judged at
indexing time is what people see.

Cost: a different size is refused at once. Otherwise the file is hashed, once: the verified
file's identity (device, inode, size, mtime and ctime) is remembered in this process, and the
next check of an identical identity skips the hash. Size and mtime alone are not enough (``touch
-r`` restores an mtime after an overwrite of the same size), but the ctime is set by the kernel
on every write and cannot be set back by a user, so an identity match means no write happened
since the hash. Only POSIX systems use the shortcut (on Windows ``st_ctime`` is the creation
time); elsewhere every check hashes.

>>> import hashlib, tempfile, pathlib
>>> photo = pathlib.Path(tempfile.mkdtemp()) / "a.jpg"
>>> _ = photo.write_bytes(b"mountain")
>>> indexed = Fingerprint(hashlib.sha256(b"mountain").hexdigest(), 8)
>>> with open_indexed(photo, indexed) as handle:
...     handle.read()
b'mountain'
>>> _ = photo.write_bytes(b"child!!!")  # same size, other bytes
>>> is_unchanged(photo, indexed)
False
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from pixsearch.indexer.errors import PhotoChangedError

CHANGED = "the photo changed since it was indexed: run pixsearch index"
GONE = "the photo file is gone: run pixsearch index"
MEMO_SIZE = 4096
"""How many verified file identities are remembered (per process)."""
_USE_MEMO = os.name == "posix"
HASH_CHUNK = 1 << 20
"""Bytes hashed per read (as the indexer reads)."""


@dataclass(frozen=True)
class Fingerprint:
    """What a row says about its file's bytes: their SHA-256 and their count."""

    content_hash: str
    size: int


@dataclass(frozen=True)
class _Identity:
    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int


_verified: OrderedDict[str, tuple[_Identity, str]] = OrderedDict()
_memo_lock = threading.Lock()


@contextlib.contextmanager
def open_indexed(path: str | os.PathLike[str], fingerprint: Fingerprint) -> Iterator[BinaryIO]:
    """The file at ``path`` opened for reading, proven to hold the indexed bytes.

    Raises :class:`PhotoChangedError` when the file is gone, not a regular file, or holds other
    bytes than ``fingerprint`` says, and also on leaving the block when the file was written
    while it was open (so a caller stores what it made from the file only after the block).
    A row without a content hash is never shown.
    """
    name = os.fspath(path)
    try:
        handle = open(name, "rb")  # noqa: SIM115 (closed below, after the identity check)
    except OSError as error:
        raise PhotoChangedError(GONE) from error
    with handle:
        before = _identity(handle)
        if (
            before is None
            or not fingerprint.content_hash
            or before.size != fingerprint.size
            or not _matches(name, handle, before, fingerprint.content_hash)
        ):
            raise PhotoChangedError(CHANGED)
        handle.seek(0)
        yield handle
        if _identity(handle) != before:
            _forget(name)
            raise PhotoChangedError(CHANGED)


def is_unchanged(path: str | os.PathLike[str], fingerprint: Fingerprint) -> bool:
    """True when the file at ``path`` still holds the indexed bytes (see :func:`open_indexed`)."""
    try:
        with open_indexed(path, fingerprint):
            return True
    except PhotoChangedError:
        return False


def _matches(name: str, handle: BinaryIO, identity: _Identity, content_hash: str) -> bool:
    if _USE_MEMO:
        with _memo_lock:
            known = _verified.get(name)
            if known == (identity, content_hash):
                _verified.move_to_end(name)
                return True
    digest = hashlib.sha256()
    while chunk := handle.read(HASH_CHUNK):
        digest.update(chunk)
    if digest.hexdigest() != content_hash or _identity(handle) != identity:
        return False
    if _USE_MEMO:
        with _memo_lock:
            _verified[name] = (identity, content_hash)
            _verified.move_to_end(name)
            while len(_verified) > MEMO_SIZE:
                _verified.popitem(last=False)
    return True


def _forget(name: str) -> None:
    with _memo_lock:
        _verified.pop(name, None)


def _identity(handle: BinaryIO) -> _Identity | None:
    """The open file's identity; None when it is not a regular file."""
    info = os.fstat(handle.fileno())
    if not stat.S_ISREG(info.st_mode):
        return None
    return _Identity(info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


__all__ = ["CHANGED", "GONE", "Fingerprint", "is_unchanged", "open_indexed"]
