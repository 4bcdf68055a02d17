"""Find the photos under a folder: recursive, hidden entries skipped, symlink loops safe.

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> (root / "a").mkdir(); (root / "a" / "cat.JPG").write_bytes(b"x")
1
>>> (root / ".hidden").mkdir(); (root / ".hidden" / "dog.jpg").write_bytes(b"x")
1
>>> (root / "notes.txt").write_text("not a photo")
11
>>> [p.relative_to(root).as_posix() for p in (Path(e.path) for e in scan_photos(root).files)]
['a/cat.JPG']
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
class FileEntry:
    """A candidate photo file: its absolute path (links kept as named), size and mtime."""

    path: str
    size: int
    mtime_ns: int


@dataclass
class ScanResult:
    """The photo files found, and what was passed over with the reason."""

    files: list[FileEntry] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def scan_photos(root: str | Path, *, include_hidden: bool = False) -> ScanResult:
    """Walk ``root`` (a folder or a single file) and list the supported photo files.

    Symbolic links are followed; a directory reached twice (a loop, or two links to one
    place) is walked once. Broken links and unreadable folders are reported in ``skipped``.
    """
    result = ScanResult()
    root_path = Path(os.path.abspath(root))
    if root_path.is_file():
        _consider(root_path, result)
        return result
    seen_dirs: set[tuple[int, int]] = set()

    def on_error(error: OSError) -> None:
        result.skipped.append((str(error.filename), f"cannot read folder: {error.strerror}"))

    for dirpath, dirnames, filenames in os.walk(root_path, followlinks=True, onerror=on_error):
        try:
            info = os.stat(dirpath)
        except OSError as error:
            result.skipped.append((dirpath, f"cannot read folder: {error.strerror}"))
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
        for name in sorted(filenames):
            if include_hidden or not name.startswith("."):
                _consider(Path(dirpath) / name, result)
    return result


def _consider(path: Path, result: ScanResult) -> None:
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
    result.files.append(FileEntry(str(path), info.st_size, info.st_mtime_ns))
