"""What a listing of photos is, and the local one: recursive, hidden entries skipped, symlink
loops safe, caption files noticed.

One :class:`PhotoEntry` / :class:`Listing` pair serves local folders (here) and object stores
(:mod:`pixsearch.indexer.sources`). A folder that could not be read is named in
``Listing.incomplete``: its photos are unknown, so an index run must keep their rows.

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> (root / "a").mkdir(); (root / "a" / "cat.JPG").write_bytes(b"x")
1
>>> (root / "a" / "cat.JPG.txt").write_text("my cat")
6
>>> (root / ".hidden").mkdir(); (root / ".hidden" / "dog.jpg").write_bytes(b"x")
1
>>> (root / "notes.txt").write_text("not a photo")
11
>>> listing = scan_photos(root)
>>> [pathlib.Path(e.path).relative_to(root).as_posix() for e in listing.files]
['a/cat.JPG']
>>> listing.files[0].caption_key.startswith(".JPG.txt:6:"), listing.incomplete
(True, [])
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from pixsearch.indexer.preprocess import SUPPORTED_SUFFIXES

KNOWN_UNSUPPORTED_SUFFIXES = frozenset(
    {
        ".heic",
        ".heif",
        ".avif",
        ".svg",
        ".svgz",
        ".raw",
        ".cr2",
        ".cr3",
        ".nef",
        ".arw",
        ".dng",
        ".orf",
        ".rw2",
        ".psd",
        ".jxl",
    }
)
"""Photo-like files we see but cannot decode: reported as skipped with a reason."""


@dataclass(frozen=True)
class PhotoEntry:
    """One listed photo: its path (absolute local path, links kept as named, or full URI),
    size and mtime.

    ``sidecar`` is the caption file next to it (``NAME.EXT.txt``, else ``NAME.txt``) when one
    exists, and ``caption_key`` the fingerprint of the caption files (which, size, mtime; ``""``
    without any): a row remembers it, so an edited caption re-evaluates the row. ``etag`` is the
    object store's entity tag when known (a read gives it; a listing does not).
    """

    path: str
    size: int
    mtime_ns: int
    etag: str | None = None
    sidecar: str | None = None
    caption_key: str = ""


@dataclass
class Listing:
    """The photos found, what was passed over (with the reason), and the folders or prefixes
    that could not be listed completely (nothing under them may be taken as gone)."""

    files: list[PhotoEntry] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)
    """Local folders listed completely (canonical paths; a photo there that is not listed is
    gone, also in a folder reached through a symbolic link from outside the root)."""


def caption_candidates(photo_path: str) -> tuple[str, str]:
    """The caption files a photo may have, in the order they count.

    >>> caption_candidates("/p/cat.jpg")
    ('/p/cat.jpg.txt', '/p/cat.txt')
    """
    return photo_path + ".txt", os.path.splitext(photo_path)[0] + ".txt"


def caption_key(photo_path: str, names: set[str] | None = None) -> tuple[str | None, str]:
    """(first caption file present, fingerprint of those present) for a local photo.

    ``names`` (the folder's file names, from its listing) spares a ``stat`` per photo without
    a caption file.
    """
    first, parts = None, []
    for candidate in caption_candidates(photo_path):
        if names is not None and os.path.basename(candidate) not in names:
            continue
        try:
            info = os.stat(candidate)
        except OSError:
            continue
        first = first or candidate
        suffix = candidate[len(os.path.splitext(photo_path)[0]) :]
        parts.append(f"{suffix}:{info.st_size}:{info.st_mtime_ns}")
    return first, ";".join(parts)


def scan_photos(root: str | Path, *, include_hidden: bool = False) -> Listing:
    """Walk ``root`` (a folder or a single file) and list the supported photo files.

    Folders are named canonically (``realpath``): a photo has one path however it is reached
    (through the root or a symbolic link to a folder, which is followed); file names are kept
    as named. A directory reached twice (a loop, or two links to one place) is walked once.
    Broken links are reported in ``skipped``; folders that cannot be read in ``skipped`` and
    ``incomplete``.
    """
    result = Listing()
    root_path = Path(os.path.abspath(root))
    if root_path.is_file():
        _consider(Path(os.path.realpath(root_path.parent)) / root_path.name, result, None)
        return result
    seen_dirs: set[tuple[int, int]] = set()

    def unreadable(folder: str, error: OSError) -> None:
        result.skipped.append((folder, f"cannot read folder: {error.strerror or error}"))
        result.incomplete.append(os.path.realpath(folder))

    def on_error(error: OSError) -> None:
        unreadable(str(error.filename), error)

    for dirpath, dirnames, filenames in os.walk(root_path, followlinks=True, onerror=on_error):
        try:
            info = os.stat(dirpath)
        except OSError as error:
            unreadable(dirpath, error)
            dirnames[:] = []
            continue
        key = (info.st_dev, info.st_ino)
        if key in seen_dirs:
            result.skipped.append((dirpath, "folder already scanned (symlink loop or duplicate)"))
            dirnames[:] = []
            continue
        seen_dirs.add(key)
        if not include_hidden:
            dirnames[:] = [name for name in dirnames if not name.startswith(".")]
        dirnames.sort()
        folder = os.path.realpath(dirpath)
        result.folders.append(folder)
        names = set(filenames)
        for name in sorted(filenames):
            if include_hidden or not name.startswith("."):
                _consider(Path(folder) / name, result, names)
    return result


def _consider(path: Path, result: Listing, names: set[str] | None) -> None:
    suffix = path.suffix.lower()
    if suffix in KNOWN_UNSUPPORTED_SUFFIXES:
        result.skipped.append((str(path), f"unsupported format {suffix}"))
        return
    if suffix not in SUPPORTED_SUFFIXES:
        return
    try:
        info = path.stat()
    except OSError as error:
        reason = "broken symbolic link" if path.is_symlink() else f"cannot stat: {error.strerror}"
        result.skipped.append((str(path), reason))
        return
    if not stat.S_ISREG(info.st_mode):
        result.skipped.append((str(path), "not a regular file"))
        return
    sidecar, key = caption_key(str(path), names)
    result.files.append(PhotoEntry(str(path), info.st_size, info.st_mtime_ns, None, sidecar, key))
