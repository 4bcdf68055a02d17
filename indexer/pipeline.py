"""Index a folder of photos into the store: incremental, batched, failures logged not fatal.

A run reads each new or changed file once (hash and decode from the same bytes) in a thread
pool with bounded look-ahead, so the encoder only runs forward passes; it commits rows in
batches (one LanceDB version per batch), so a killed run loses at most one batch and the next
run picks up where it stopped.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from pixsearch.db.environment import WRITE_BATCH_ENV as _WRITE_BATCH_ENV
from pixsearch.db.environment import environment
from pixsearch.db.schema import photo_schema
from pixsearch.db.store import PhotoStore
from pixsearch.indexer.errors import ImageDecodeError
from pixsearch.indexer.policy import caption_about_children, photo_is_restricted
from pixsearch.indexer.preprocess import DecodedPhoto, load_photo, read_photo
from pixsearch.indexer.scan import FileEntry, scan_photos

__all__ = ["IndexReport", "Indexer", "caption_about_children", "photo_id", "schema_for_bundle"]

log = logging.getLogger("pixsearch.indexer")

WRITE_BATCH_ENV = _WRITE_BATCH_ENV
"""Rows per commit (default 512); each commit is one LanceDB version."""
COMMIT_EVERY_SECONDS = 10.0
"""A slow run also commits at least this often, so a kill loses little work."""

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)`` while files are processed."""

_REUSED_COLUMNS = [
    "content_hash",
    "vector",
    "features",
    "width",
    "height",
    "format",
    "caption",
    "child_score",
    "restricted",
]


def schema_for_bundle(bundle: Any) -> pa.Schema:
    """The photos-table schema for vectors made by ``bundle`` (its id and dims in metadata)."""
    return photo_schema(
        vector_dim=bundle.vector_dim,
        feature_dim=bundle.feature_dim,
        bundle_id=bundle.id,
        space=bundle.space.name,
        feature_source=feature_source(bundle),
    )


def feature_source(bundle: Any) -> str:
    """Identity of the image encoder that makes the stored ``features`` (its file's sha256)."""
    try:
        return str(bundle.files[bundle.manifest["models"]["image_encoder"]["file"]])
    except (AttributeError, KeyError, TypeError):
        return str(bundle.id)


def photo_id(path: str) -> str:
    """Stable row id of a photo path (16 hex digits).

    >>> photo_id("/photos/cat.jpg")
    '33760b6078e9613f'
    """
    return hashlib.blake2b(path.encode("utf-8"), digest_size=8).hexdigest()


@dataclass
class IndexReport:
    """What an index run did, for the CLI summary and for callers."""

    added: int = 0
    updated: int = 0
    renamed: int = 0
    reused: int = 0
    removed: int = 0
    unchanged: int = 0
    encoded: int = 0
    seconds: float = 0.0
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        """Photos decoded and encoded per second of the whole run."""
        return self.encoded / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """One line for people: counts, time and rate."""
        return (
            f"added {self.added}, updated {self.updated}, renamed {self.renamed}, "
            f"removed {self.removed}, unchanged {self.unchanged}, skipped {len(self.skipped)}, "
            f"failed {len(self.failed)}; encoded {self.encoded} photos in {self.seconds:.1f} s "
            f"({self.images_per_second:.1f} images/s)"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {
            "added": self.added,
            "updated": self.updated,
            "renamed": self.renamed,
            "reused": self.reused,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "encoded": self.encoded,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 2),
            "failed": [{"path": p, "reason": r} for p, r in self.failed],
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
        }


@dataclass
class _Read:
    """One file after the worker read it: its bytes' hash and, when needed, the pixels."""

    entry: FileEntry
    content_hash: str = ""
    photo: DecodedPhoto | None = None
    error: str | None = None
    sidecar: str | None = None
    """Caption from a sidecar text file next to the photo (``cat.jpg.txt`` or ``cat.txt``)."""


class Indexer:
    """Turns photo files into rows of the store with a model bundle."""

    def __init__(
        self,
        store: PhotoStore,
        bundle: Any,
        *,
        batch_size: int = 32,
        write_batch: int | None = None,
        workers: int | None = None,
    ):
        self.store = store
        self.bundle = bundle
        self.batch_size = batch_size
        self.write_batch = write_batch or environment().write_batch or 512
        self.workers = workers or min(8, (os.cpu_count() or 2) + 2)
        self.schema = schema_for_bundle(bundle)

    def index(
        self,
        root: str | os.PathLike[str],
        *,
        remove_missing: bool = True,
        include_hidden: bool = False,
        progress: ProgressCallback | None = None,
        wait_seconds: float = 0.0,
    ) -> IndexReport:
        """Index every photo under ``root``; unchanged files cost a ``stat`` only."""
        started = time.perf_counter()
        report = IndexReport()
        with self.store.writer_lock(wait_seconds=wait_seconds):
            self.store.ensure_table(self.schema)
            scan = scan_photos(root, include_hidden=include_hidden)
            report.skipped.extend(scan.skipped)
            known = self.store.scan(["id", "path", "size", "mtime_ns", "content_hash"])
            by_path = {row["path"]: row for row in known.to_pylist()}
            known_hashes = {row["content_hash"]: row["path"] for row in by_path.values()}
            scanned = {entry.path for entry in scan.files}
            todo: list[FileEntry] = []
            for entry in scan.files:
                old = by_path.get(entry.path)
                if old and old["size"] == entry.size and old["mtime_ns"] == entry.mtime_ns:
                    report.unchanged += 1
                else:
                    todo.append(entry)
            if progress:
                progress(report.unchanged, len(scan.files))
            self._process(
                todo,
                by_path,
                known_hashes,
                scanned,
                report,
                progress,
                done_before=report.unchanged,
                total=len(scan.files),
            )
            if remove_missing:
                gone = [
                    row["id"]
                    for path, row in by_path.items()
                    if path not in scanned and _is_under(path, root)
                ]
                report.removed = self.store.delete_ids(gone)
            if report.added or report.updated or report.renamed or report.removed:
                self.store.optimize()
        report.seconds = time.perf_counter() - started
        for path, reason in report.failed:
            log.warning("failed: %s: %s", path, reason)
        return report

    # -- internals --------------------------------------------------------------------------
    def _process(
        self,
        todo: list[FileEntry],
        by_path: dict[str, dict[str, Any]],
        known_hashes: dict[str, str],
        scanned: set[str],
        report: IndexReport,
        progress: ProgressCallback | None,
        *,
        done_before: int,
        total: int,
    ) -> None:
        pending_rows: list[dict[str, Any]] = []
        to_encode: list[_Read] = []
        to_reuse: list[_Read] = []
        done = done_before

        last_commit = time.monotonic()

        def flush(force: bool = False) -> None:
            nonlocal last_commit
            if to_encode and (force or len(to_encode) >= self.batch_size):
                pending_rows.extend(self._encode(to_encode, report))
                to_encode.clear()
            if to_reuse and (force or len(to_reuse) >= self.write_batch):
                pending_rows.extend(self._reuse(to_reuse, report))
                to_reuse.clear()
            due = time.monotonic() - last_commit >= COMMIT_EVERY_SECONDS
            if pending_rows and (force or due or len(pending_rows) >= self.write_batch):
                self.store.upsert(self.to_arrow(pending_rows))
                pending_rows.clear()
                last_commit = time.monotonic()

        for read in self._read_all(todo, set(known_hashes)):
            done += 1
            if read.error is not None:
                report.failed.append((read.entry.path, read.error))
            else:
                old = by_path.get(read.entry.path)
                if old is not None:
                    report.updated += 1
                elif read.content_hash in known_hashes:
                    if known_hashes[read.content_hash] not in scanned:
                        report.renamed += 1
                    else:
                        report.added += 1
                else:
                    report.added += 1
                (to_encode if read.photo is not None else to_reuse).append(read)
                flush()
            if progress:
                progress(done, total)
        flush(force=True)

    def _read_all(self, todo: list[FileEntry], reusable: set[str]) -> Iterator[_Read]:
        """Read, hash and decode files in a thread pool, yielding in order, bounded ahead."""
        window = max(2 * self.batch_size, 4 * self.workers)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="pixsearch-read") as pool:
            queue: deque[Future[_Read]] = deque()
            entries = iter(todo)
            for entry in entries:
                queue.append(pool.submit(_read_one, entry, reusable))
                if len(queue) >= window:
                    break
            while queue:
                yield queue.popleft().result()
                entry = next(entries, None)
                if entry is not None:
                    queue.append(pool.submit(_read_one, entry, reusable))

    def encode_files(
        self,
        paths: Sequence[str],
        report: IndexReport,
        progress: ProgressCallback | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Decode and encode the given files (no reuse), yielding rows; failures go to report."""
        batch: list[_Read] = []
        entries = [FileEntry(path, 0, 0) for path in paths]
        for done, read in enumerate(self._read_all(entries, set()), start=1):
            if read.error is not None:
                report.failed.append((read.entry.path, read.error))
            else:
                batch.append(read)
            if len(batch) >= self.batch_size:
                yield from self._encode(batch, report)
                batch = []
            if progress:
                progress(done, len(entries))
        if batch:
            yield from self._encode(batch, report)

    def _encode(self, reads: list[_Read], report: IndexReport) -> list[dict[str, Any]]:
        pixels = np.stack([read.photo.pixels for read in reads if read.photo is not None])
        features, _logits = self.bundle.image_encoder.encode(pixels)
        vectors = self.bundle.space.image_vectors(features)
        child_scores = self.child_scores(features)
        threshold = self.child_threshold()
        report.encoded += len(reads)
        now = datetime.now(UTC)
        rows = []
        for i, read in enumerate(reads):
            assert read.photo is not None
            rows.append(
                {
                    **self._file_fields(read, now),
                    "width": read.photo.width,
                    "height": read.photo.height,
                    "format": read.photo.format,
                    "vector": vectors[i],
                    "features": features[i],
                    "caption": (caption := read.sidecar or read.photo.description),
                    "child_score": float(child_scores[i]),
                    "restricted": photo_is_restricted(child_scores[i], threshold, caption),
                }
            )
        return rows

    def _reuse(self, reads: list[_Read], report: IndexReport) -> list[dict[str, Any]]:
        """Rows for files whose content is already indexed under another path (no decode)."""
        hashes = sorted({read.content_hash for read in reads})
        where = "content_hash IN (" + ", ".join(f"'{h}'" for h in hashes) + ")"
        found = {
            row["content_hash"]: row
            for row in self.store.scan(_REUSED_COLUMNS, where=where).to_pylist()
        }
        now = datetime.now(UTC)
        rows = []
        for read in reads:
            source = found.get(read.content_hash)
            if source is None:  # vanished meanwhile: decode it after all
                try:
                    read.photo = load_photo(read.entry.path)
                except ImageDecodeError as error:
                    report.failed.append((read.entry.path, str(error)))
                    continue
                rows.extend(self._encode([read], report))
                continue
            report.reused += 1
            row = {**source, **self._file_fields(read, now)}
            if read.sidecar:
                row["caption"] = read.sidecar
                row["restricted"] = row["restricted"] or caption_about_children(read.sidecar)
            rows.append(row)
        return rows

    def _file_fields(self, read: _Read, now: datetime) -> dict[str, Any]:
        return {
            "id": photo_id(read.entry.path),
            "path": read.entry.path,
            "content_hash": read.content_hash,
            "size": read.entry.size,
            "mtime_ns": read.entry.mtime_ns,
            "indexed_at": now,
        }

    def child_scores(self, features: np.ndarray) -> np.ndarray:
        """The bundle's child-photo classifier scores (zeros when the bundle has none)."""
        classifier = getattr(self.bundle, "child_classifier", None)
        if classifier is None:
            return np.zeros(len(features), dtype=np.float32)
        return np.asarray(classifier.scores(features), dtype=np.float32)

    def child_threshold(self) -> float:
        """Score at or above which a photo is restricted (inf without a classifier)."""
        classifier = getattr(self.bundle, "child_classifier", None)
        return float(classifier.threshold) if classifier is not None else float("inf")

    def to_arrow(self, rows: list[dict[str, Any]]) -> pa.Table:
        """Rows (dicts) as an Arrow table of the photos schema."""
        columns: dict[str, Any] = {}
        for name in self.schema.names:
            values = [row[name] for row in rows]
            kind = self.schema.field(name).type
            if name in ("vector", "features"):
                dtype = np.float16 if name == "features" else np.float32
                flat = np.asarray(
                    np.stack([np.asarray(v, dtype=np.float32) for v in values]), dtype=dtype
                ).ravel()
                columns[name] = pa.FixedSizeListArray.from_arrays(pa.array(flat), kind.list_size)
            else:
                columns[name] = pa.array(values, type=kind)
        return pa.table(columns, schema=self.schema)


def _read_one(entry: FileEntry, reusable: set[str]) -> _Read:
    """Worker: read the file once, hash its bytes, decode them unless already indexed."""
    read = _Read(entry)
    try:
        entry.path.encode("utf-8")
    except UnicodeEncodeError:
        read.error = "file name is not valid UTF-8; rename the file"
        return read
    try:
        with open(entry.path, "rb") as handle:
            info = os.fstat(handle.fileno())
            found = read_photo(handle, reusable)
    except OSError as error:
        read.error = f"cannot read: {error.strerror or error}"
        return read
    # size and mtime of the bytes we actually read (a file replaced since the scan counts).
    read.entry = FileEntry(entry.path, info.st_size, info.st_mtime_ns)
    read.sidecar = sidecar_caption(entry.path)
    read.content_hash, read.photo, read.error = found.content_hash, found.photo, found.error
    return read


SIDECAR_MAX_BYTES = 10_000


def sidecar_caption(photo_path: str) -> str | None:
    """The caption a user wrote next to a photo: ``NAME.EXT.txt``, else ``NAME.txt``.

    Captions count for the content policy (a caption about children restricts the photo) and
    are stored in the ``caption`` column. Only the first 10 kB are read.
    """
    stem, _ = os.path.splitext(photo_path)
    for candidate in (photo_path + ".txt", stem + ".txt"):
        try:
            with open(candidate, "rb") as handle:
                text = handle.read(SIDECAR_MAX_BYTES).decode("utf-8", "replace").strip()
        except OSError:
            continue
        if text:
            return text
    return None


def _is_under(path: str, root: str | os.PathLike[str]) -> bool:
    base = os.path.abspath(root)
    return path == base or path.startswith(base.rstrip(os.sep) + os.sep)


def iter_batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Split an iterable into lists of ``size`` (the last may be shorter)."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
