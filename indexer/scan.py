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

import contextlib
import heapq
import json
import os
import stat
import tempfile
from collections import deque
from collections.abc import Iterator
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
    root: str = ""
    """The tree these photos lie in (a piece of a walk: see ``walk_photos``)."""
    single: bool = False
    """The tree is one photo file (``root`` is its path), not a folder."""


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


PIECE_FILES = 1000
"""Photos per listing piece at most (a bigger folder comes in several pieces)."""
FOLDER_SORT_BOUND = 100_000
"""Entries of one folder sorted in memory at most (``scandir`` gives them unsorted; a walk is in
path order). A bigger folder is read in runs of this many, each sorted and spilled to a
temporary file (about 100 bytes per entry), then the runs are merged as the walk goes: one
folder of millions of photos is never held whole."""


def scan_photos(root: str | Path, *, include_hidden: bool = False) -> Listing:
    """Every supported photo under ``root`` (a folder or a single file), as one listing: the
    pieces of :func:`walk_photos` put together (a small folder's listing; a batch job walks)."""
    result = Listing()
    for piece in walk_photos(root, include_hidden=include_hidden):
        result.files += piece.files
        result.skipped += piece.skipped
        result.incomplete += piece.incomplete
        result.folders += piece.folders
    return result


def walk_photos(
    root: str | Path, *, include_hidden: bool = False, piece: int = PIECE_FILES
) -> Iterator[Listing]:
    """The supported photo files under ``root`` (a folder or a single file), in pieces of at
    most ``piece`` photos, each in path order and after the one before, per *tree*.

    Folders are named canonically (``realpath``): a photo has one path however it is reached,
    file names are kept as named. A folder reached through a symbolic link is walked once, as a
    tree of its own after the root's (its photos' paths sort apart from the root's), unless it
    lies in a tree walked anyway (a loop, or a link to a folder of the root), which is skipped.
    Every piece names its tree (``Listing.root``): a tree's pieces cover it in order, so a
    caller can compare them with stored rows by path range, one piece at a time. Broken links
    are reported in ``skipped``; folders that cannot be read in ``skipped`` and ``incomplete``.
    """
    root_path = Path(os.path.abspath(root))
    if root_path.is_file():
        path = Path(os.path.realpath(root_path.parent)) / root_path.name
        result = Listing(root=str(path), single=True)
        _consider(path, result, None)
        yield result
        return
    walker = _Walker(include_hidden, piece)
    trees = deque([os.path.realpath(root_path)])
    walker.trees.add(trees[0])
    while trees:
        tree = trees.popleft()
        walker.current = Listing(root=tree)
        yield from walker.folder(tree, tree)
        yield walker.current
        trees.extend(walker.found)
        walker.found.clear()


class _Walker:
    """Walks one tree in path order (see :func:`walk_photos`), noting linked trees found."""

    def __init__(self, include_hidden: bool, piece: int) -> None:
        self.include_hidden, self.piece = include_hidden, piece
        self.trees: set[str] = set()
        """Every tree walked or to walk (canonical)."""
        self.found: list[str] = []
        """Trees reached through links from the tree being walked, to walk after it."""
        self.current = Listing()

    def folder(self, folder: str, tree: str) -> Iterator[Listing]:
        """The photos under ``folder`` (canonical, in ``tree``), in path order."""
        with contextlib.ExitStack() as spill:  # a big folder's sorted runs, removed after
            try:
                items, names = _sorted_entries(folder, self.include_hidden, spill)
            except OSError as error:
                reason = f"cannot read folder: {error.strerror or error}"
                self.current.skipped.append((folder, reason))
                self.current.incomplete.append(folder)
                return
            self.current.folders.append(folder)
            yield from self._items(folder, tree, items, names)

    def _items(
        self,
        folder: str,
        tree: str,
        items: Iterator[tuple[str, str, bool]],
        names: set[str] | None,
    ) -> Iterator[Listing]:
        """The photos of a folder's sorted entries, and those under its sub-folders."""
        for _, name, is_folder in items:
            path = os.path.join(folder, name)
            if not is_folder:
                _consider(Path(path), self.current, names)
                if len(self.current.files) >= self.piece:
                    yield self.current
                    self.current = Listing(root=tree)
                continue
            if not os.path.islink(path):
                if path not in self.trees:  # a tree of its own already (reached by a link)
                    yield from self.folder(path, tree)
                continue
            target = os.path.realpath(path)
            if target in self.trees or any(
                within_tree(target, t, self.include_hidden) for t in self.trees
            ):
                self.current.skipped.append(
                    (path, "folder already scanned (symlink loop or duplicate)")
                )
            else:
                self.trees.add(target)
                self.found.append(target)


def _sorted_entries(
    folder: str, include_hidden: bool, spill: contextlib.ExitStack, bound: int | None = None
) -> tuple[Iterator[tuple[str, str, bool]], set[str] | None]:
    """The entries of ``folder`` in path order as (sort key, name, is a folder), a folder
    sorting as ``name/`` as its photos do, hidden ones skipped unless ``include_hidden``; and
    the folder's names. A folder of more than ``bound`` entries is sorted in runs spilled to a
    temporary folder (removed with ``spill``), and its names are not kept (None): see
    ``FOLDER_SORT_BOUND``. Raises ``OSError`` when the folder cannot be read."""
    bound = FOLDER_SORT_BOUND if bound is None else bound
    run: list[tuple[str, str, bool]] = []
    runs: list[str] = []
    where = ""
    names: set[str] | None = set()
    with os.scandir(folder) as found:
        for entry in found:
            if names is not None:
                names.add(entry.name)
            if entry.name.startswith(".") and not include_hidden:
                continue
            try:
                is_folder = entry.is_dir()  # follows links
            except OSError:
                is_folder = False
            run.append((entry.name + os.sep if is_folder else entry.name, entry.name, is_folder))
            if len(run) >= bound:
                if not where:
                    where = spill.enter_context(tempfile.TemporaryDirectory(prefix="pixsearch-"))
                runs.append(_spill(run, where, len(runs)))
                run, names = [], None
    if not runs:
        run.sort()
        return iter(run), names
    runs.append(_spill(run, where, len(runs)))  # sorts it
    return heapq.merge(*(_read_run(path) for path in runs)), None


def _spill(run: list[tuple[str, str, bool]], spill: str, number: int) -> str:
    """Write ``run`` sorted to a file of ``spill`` (one JSON line per entry: any name)."""
    run.sort()
    path = os.path.join(spill, f"run-{number:06d}.jsonl")
    with open(path, "w", encoding="ascii") as handle:
        handle.writelines(json.dumps(item) + "\n" for item in run)
    return path


def _read_run(path: str) -> Iterator[tuple[str, str, bool]]:
    """The entries of a spilled run, in order."""
    with open(path, encoding="ascii") as handle:
        for line in handle:
            key, name, is_folder = json.loads(line)
            yield key, name, is_folder


def within_tree(path: str, tree: str, include_hidden: bool) -> bool:
    """True when walking ``tree`` reaches ``path`` (under it, through no hidden folder).

    >>> [within_tree(p, "/r", False) for p in ("/r/a/b", "/r/.h/b", "/rb")]
    [True, False, False]
    """
    if path == tree:
        return True
    if not path.startswith(tree.rstrip(os.sep) + os.sep):
        return False
    parts = os.path.relpath(path, tree).split(os.sep)
    return include_hidden or not any(part.startswith(".") for part in parts)


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
