"""Batch reindexing: list photos, split them into shards, encode the shards on an engine
(in this process, or on Ray Data workers), write the rows to LanceDB from one driver.

Two modes, picked from what the database holds:

- **in place** (no table yet, or a table made by this very bundle, and a source given): new
  and changed photos under the source are encoded and upserted in batches (one commit per
  batch); photos gone from the source are removed at the end. A restart skips every photo
  whose row already has the listed size and mtime.
- **rebuild** (a table made by another bundle, or no source: "re-encode what is there"): rows
  are written to a staging table ``photos_staging_<job id>`` (the job id hashes the bundle id
  and the source), then replace ``photos`` in one commit when the job completes: searches see
  the old table until then, never a mix. Rows whose stored ``features`` came from the same image
  encoder are re-projected without decoding a photo. A restart skips ids already staged.

Engines: ``local`` encodes shard after shard here (threads read and decode); ``ray`` runs
:class:`ShardEncoder` in a Ray Data actor pool (``map_batches`` with ``ActorPoolStrategy``),
so each worker loads the ONNX bundle once; Ray is imported only then (``pixsearch[ray]``).

>>> import tempfile
>>> from pixsearch.db.store import PhotoStore
>>> from pixsearch.indexer.models import ModelBundle
>>> report = run_reindex(PhotoStore(tempfile.mkdtemp()), ModelBundle.load())
>>> report.summary().startswith("[local] nothing to do")
True
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from pixsearch.db.environment import THREADS_ENV, reload_environment
from pixsearch.db.errors import InvalidInputError, MissingExtraError
from pixsearch.db.schema import table_info
from pixsearch.db.store import PhotoStore
from pixsearch.indexer.errors import ImageDecodeError
from pixsearch.indexer.pipeline import (
    Indexer,
    IndexReport,
    ProgressCallback,
    feature_source,
    photo_id,
    schema_for_bundle,
)
from pixsearch.indexer.policy import photo_is_restricted
from pixsearch.indexer.preprocess import load_photo
from pixsearch.indexer.sources import PhotoSource, SourceEntry, open_source

log = logging.getLogger("pixsearch.batch")

ENGINES = ("local", "ray")
STAGING_PREFIX = "photos_staging_"
DEFAULT_SHARD_SIZE = 64
"""Photos per shard: the unit a worker decodes and encodes in one call."""
DEFAULT_WRITE_BATCH = 256
"""Rows per commit (a restart loses at most this many encoded rows)."""
COMMIT_EVERY_SECONDS = 10.0
"""A slow job also commits at least this often."""
RAY_EXTRA = 'pip install "pixsearch[ray]"'


@dataclass
class JobStatus:
    """Where a running job stands: photos done of total, rate, ETA, failures.

    >>> JobStatus(done=50, total=200, failed=1, encoded=40, elapsed=10.0, done_at_start=10).line()
    'reindex [local]: 50/200 photos (25%), 4.0 photos/s, ETA 38 s, 1 failed'
    """

    done: int
    total: int
    failed: int
    encoded: int
    elapsed: float
    done_at_start: int = 0
    """Photos found already done (resumed or unchanged) when the job started."""
    engine: str = "local"

    @property
    def rate(self) -> float:
        """Photos per second processed by this run."""
        work = self.done - self.done_at_start
        return work / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the current rate (None before the first shard is done)."""
        return (self.total - self.done) / self.rate if self.rate > 0 else None

    def line(self) -> str:
        """One line for people."""
        percent = 100 * self.done // self.total if self.total else 100
        eta = "ETA ?" if self.eta_seconds is None else f"ETA {_duration(self.eta_seconds)}"
        return (
            f"reindex [{self.engine}]: {self.done}/{self.total} photos ({percent}%), "
            f"{self.rate:.1f} photos/s, {eta}, {self.failed} failed"
        )


StatusCallback = Callable[[JobStatus], None]
"""Called as ``status(JobStatus)`` after each commit and once at the end."""


@dataclass
class BatchReport(IndexReport):
    """What a batch job did: the indexer's counts plus the job's own facts."""

    engine: str = "local"
    mode: str = "in-place"
    job_id: str = ""
    shards: int = 0
    commits: int = 0
    resumed: int = 0
    """Photos already written by an earlier, interrupted run of the same job (skipped)."""
    reprojected: int = 0
    """Rows made from stored features (same image encoder): no photo decoded."""
    swapped: bool = False
    """True when a staging table replaced ``photos`` (rebuild mode)."""

    def summary(self) -> str:
        """One line for people: the engine, counts, time and rate."""
        work = self.encoded + self.reprojected + self.resumed + self.unchanged + self.removed
        if not work and not self.failed:
            return f"[{self.engine}] nothing to do"
        extra = f"; resumed {self.resumed}, reprojected {self.reprojected}, mode {self.mode}"
        return f"[{self.engine}] {super().summary()}{extra}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        data = super().to_dict()
        data.update(
            engine=self.engine,
            mode=self.mode,
            job_id=self.job_id,
            shards=self.shards,
            commits=self.commits,
            resumed=self.resumed,
            reprojected=self.reprojected,
            swapped=self.swapped,
        )
        return data


@dataclass
class ShardResult:
    """The rows a worker made from one shard, and the photos it could not read or decode."""

    rows: pa.Table
    failed: list[tuple[str, str]] = field(default_factory=list)
    photos: int = 0


class ShardEncoder:
    """Decodes and encodes one shard of photos into photos-table rows (runs on a worker).

    The model bundle is loaded once per encoder (per Ray actor); ``bundle_id`` guards against
    a worker whose installed pixsearch carries another bundle. Read errors (``OSError``) and
    undecodable photos are per-photo failures; any other exception fails the job.

    >>> import tempfile, os
    >>> from PIL import Image
    >>> from pixsearch.indexer.models import ModelBundle
    >>> folder = tempfile.mkdtemp()
    >>> Image.new("RGB", (32, 24), "red").save(os.path.join(folder, "red.png"))
    >>> bundle = ModelBundle.load()
    >>> source = open_source(folder)
    >>> result = ShardEncoder(bundle=bundle, source=source)(source.list().files)
    >>> result.rows.num_rows, result.rows.column("width").to_pylist(), result.failed
    (1, [32], [])
    """

    def __init__(
        self,
        *,
        source: PhotoSource,
        bundle: Any = None,
        bundle_dir: str | None = None,
        bundle_id: str | None = None,
        read_threads: int = 4,
    ) -> None:
        if bundle is None:
            bundle = _load_bundle(bundle_dir, bundle_id)
        self.bundle = bundle
        self.source = source
        self.indexer = Indexer(None, bundle)  # type: ignore[arg-type]  # rows only, no store
        self.read_threads = max(1, read_threads)

    def __call__(self, entries: Sequence[SourceEntry]) -> ShardResult:
        """Encode ``entries`` (one shard); returns its rows in the photos schema."""
        with ThreadPoolExecutor(self.read_threads, thread_name_prefix="pixsearch-read") as pool:
            reads = list(pool.map(self._read_one, entries))
        ok = [read for read in reads if read[1] is None]
        failed = [(entry.path, error) for entry, error, *_ in reads if error is not None]
        if not ok:
            return ShardResult(self.indexer.schema.empty_table(), failed, len(entries))
        pixels = np.stack([read[3].pixels for read in ok])
        features, _logits = self.bundle.image_encoder.encode(pixels)
        vectors = self.bundle.space.image_vectors(features)
        scores = self.indexer.child_scores(features)
        threshold = self.indexer.child_threshold()
        now = datetime.now(UTC)
        rows = []
        for i, (entry, _error, content_hash, photo, sidecar) in enumerate(ok):
            caption = sidecar or photo.description
            rows.append(
                {
                    "id": photo_id(entry.path),
                    "path": entry.path,
                    "content_hash": content_hash,
                    "size": entry.size,
                    "mtime_ns": entry.mtime_ns,
                    "width": photo.width,
                    "height": photo.height,
                    "format": photo.format,
                    "vector": vectors[i],
                    "features": features[i],
                    "caption": caption,
                    "child_score": float(scores[i]),
                    "restricted": photo_is_restricted(scores[i], threshold, caption),
                    "indexed_at": now,
                }
            )
        return ShardResult(self.indexer.to_arrow(rows), failed, len(entries))

    def _read_one(self, entry: SourceEntry) -> tuple[SourceEntry, str | None, str, Any, Any]:
        """Read, hash and decode one photo: (entry as read, error, sha256, photo, caption)."""
        try:
            got = self.source.read(entry.path)
        except OSError as error:
            reason = getattr(error, "strerror", None) or str(error)
            return entry, f"cannot read: {reason}", "", None, None
        # Keep the listed size/mtime (what a restart compares) unless the object changed since.
        read = got.entry
        if read.size == entry.size and (read.mtime_ns == 0 or read.mtime_ns == entry.mtime_ns):
            read = entry
        try:
            photo = load_photo(io.BytesIO(got.data), name="")
        except ImageDecodeError as error:
            return entry, str(error), "", None, None
        content_hash = hashlib.sha256(got.data).hexdigest()
        return read, None, content_hash, photo, self.source.sidecar_caption(entry)


def _load_bundle(bundle_dir: str | None, bundle_id: str | None) -> Any:
    from pixsearch.indexer.models import ModelBundle

    path = bundle_dir if bundle_dir and os.path.isdir(bundle_dir) else None
    bundle = ModelBundle.load(path)
    if bundle_id is not None and bundle.id != bundle_id:
        raise InvalidInputError(
            f"this worker's model bundle is {bundle.id!r} but the job runs {bundle_id!r}: "
            "install the same pixsearch version on every worker"
        )
    return bundle


# -- engines ----------------------------------------------------------------------------------
def _encode_local(
    shards: list[list[SourceEntry]], source: PhotoSource, bundle: Any, workers: int | None
) -> Iterator[ShardResult]:
    encoder = ShardEncoder(source=source, bundle=bundle, read_threads=workers or 4)
    for shard in shards:
        yield encoder(shard)


class _RayShardEncoder:
    """Ray Data actor: one input row = one shard (JSON entries); one output row per shard."""

    def __init__(self, source: PhotoSource, bundle_dir: str, bundle_id: str, threads: int):
        os.environ.setdefault(THREADS_ENV, str(threads))  # before any session exists
        reload_environment()
        self.encoder = ShardEncoder(source=source, bundle_dir=bundle_dir, bundle_id=bundle_id)

    def __call__(self, batch: pa.Table) -> pa.Table:
        out: dict[str, list[Any]] = {"rows": [], "failed": [], "photos": []}
        for text in batch.column("entries").to_pylist():
            result = self.encoder([SourceEntry(**item) for item in json.loads(text)])
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, result.rows.schema) as writer:
                writer.write_table(result.rows)
            out["rows"].append(sink.getvalue().to_pybytes())
            out["failed"].append(json.dumps(result.failed))
            out["photos"].append(result.photos)
        return pa.table(
            {
                "rows": pa.array(out["rows"], pa.binary()),
                "failed": pa.array(out["failed"], pa.string()),
                "photos": pa.array(out["photos"], pa.int64()),
            }
        )


def _require_ray() -> None:
    """Fail before any work when the ray engine is asked for but Ray is not installed."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as error:
        raise MissingExtraError(f"the ray engine needs Ray: {RAY_EXTRA}") from error


def _encode_ray(
    shards: list[list[SourceEntry]],
    source: PhotoSource,
    bundle: Any,
    workers: int | None,
    cpus_per_worker: float,
) -> Iterator[ShardResult]:
    _require_ray()
    import ray
    import ray.data

    if not ray.is_initialized():
        # RAY_ADDRESS (if set) joins a cluster; otherwise a local Ray starts on this machine.
        ray.init(include_dashboard=False, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    if workers is None:
        workers = max(1, int(ray.cluster_resources().get("CPU", 1) // max(cpus_per_worker, 1)))
    items = [{"entries": json.dumps([asdict(e) for e in shard])} for shard in shards]
    dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        _RayShardEncoder,
        fn_constructor_kwargs={
            "source": source,
            "bundle_dir": str(getattr(bundle, "path", "")),
            "bundle_id": bundle.id,
            "threads": max(1, int(cpus_per_worker)),
        },
        batch_size=1,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=cpus_per_worker,
    )
    for block in dataset.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=2):
        for row in block.to_pylist():
            rows = pa.ipc.open_stream(row["rows"]).read_all()
            failed = [tuple(pair) for pair in json.loads(row["failed"])]
            yield ShardResult(rows, failed, int(row["photos"]))


# -- the job ----------------------------------------------------------------------------------
def job_id(bundle_id: str, source_uri: str | None) -> str:
    """The id of a job: same bundle and source = same job (its staging table is reused).

    >>> job_id("b1", "s3://bucket/photos")
    '1512a4155dbf5502'
    """
    key = f"{bundle_id}\0{source_uri or ''}".encode()
    return hashlib.blake2b(key, digest_size=8).hexdigest()


def run_reindex(
    store: PhotoStore,
    bundle: Any,
    source: str | os.PathLike[str] | PhotoSource | None = None,
    *,
    engine: str = "local",
    shard_size: int = DEFAULT_SHARD_SIZE,
    write_batch: int = DEFAULT_WRITE_BATCH,
    workers: int | None = None,
    cpus_per_worker: float = 1.0,
    progress: ProgressCallback | None = None,
    status: StatusCallback | None = None,
    wait_seconds: float = 0.0,
) -> BatchReport:
    """Reindex ``source`` (a folder or ``s3://`` prefix) into ``store`` with ``bundle``; without
    a source, re-encode the photos already in the database. See the module docstring.

    ``workers`` is the number of Ray actors (default: one per ``cpus_per_worker`` CPUs of the
    cluster), or the read threads of the local engine.
    """
    if engine not in ENGINES:
        raise InvalidInputError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if shard_size < 1 or write_batch < 1:
        raise InvalidInputError("shard_size and write_batch must be at least 1")
    if engine == "ray":
        _require_ray()
    if source is not None and not isinstance(source, PhotoSource):
        source = open_source(source, storage_options=store.storage_options)
    job = _Job(store, bundle, source, engine, shard_size, write_batch, progress, status)
    job.workers, job.cpus_per_worker = workers, cpus_per_worker
    with store.writer_lock(wait_seconds=wait_seconds):
        return job.run()


class _Job:
    def __init__(
        self,
        store: PhotoStore,
        bundle: Any,
        source: PhotoSource | None,
        engine: str,
        shard_size: int,
        write_batch: int,
        progress: ProgressCallback | None,
        status: StatusCallback | None,
    ) -> None:
        self.store, self.bundle, self.source, self.engine = store, bundle, source, engine
        self.shard_size, self.write_batch = shard_size, write_batch
        self.progress, self.status = progress, status
        self.workers: int | None = None
        self.cpus_per_worker = 1.0
        self.schema = schema_for_bundle(bundle)
        self.id = job_id(bundle.id, source.uri if source else None)
        self.report = BatchReport(engine=engine, job_id=self.id)
        self.started = time.perf_counter()
        self.done = self.done_at_start = self.total = 0

    # -- plan -------------------------------------------------------------------------------
    def run(self) -> BatchReport:
        info = self.store.table_info()
        if info is None and self.source is None:
            return self._finish()
        if info is not None:  # refuse a newer schema before touching anything
            from pixsearch.db.store import check_compatible

            expected = table_info(self.schema)
            if info.bundle_id == expected.bundle_id:
                check_compatible(info, expected, self.store.uri)
        same_bundle = info is not None and info.bundle_id == self.bundle.id
        if self.source is not None and (info is None or same_bundle):
            self._in_place()
        else:
            assert info is not None
            self._rebuild(same_encoder=info.feature_source == feature_source(self.bundle))
        return self._finish()

    def _old_rows(self) -> dict[str, dict[str, Any]]:
        if self.store.table_info() is None:
            return {}
        known = self.store.scan(["id", "path", "size", "mtime_ns"])
        return {row["id"]: row for row in known.to_pylist()}

    def _listing(self) -> list[SourceEntry]:
        assert self.source is not None
        listing = self.source.list()
        self.report.skipped.extend(listing.skipped)
        return listing.files

    def _in_place(self) -> None:
        self.report.mode = "in-place"
        self.store.ensure_table(self.schema)
        old = self._old_rows()
        listed = self._listing()
        todo = []
        for entry in listed:
            row = old.get(photo_id(entry.path))
            if row and (row["size"], row["mtime_ns"]) == (entry.size, entry.mtime_ns):
                self.report.unchanged += 1
            else:
                todo.append(entry)
        self.total, self.done = len(listed), self.report.unchanged
        self.done_at_start = self.done
        self._encode_and_write(todo, self.store, old, upsert=True)
        listed_ids = {photo_id(e.path) for e in listed}
        assert self.source is not None
        gone = [
            i for i, row in old.items() if i not in listed_ids and self.source.contains(row["path"])
        ]
        self.report.removed = self.store.delete_ids(gone)
        if self.report.encoded or self.report.removed:
            self.store.optimize()

    def _rebuild(self, *, same_encoder: bool) -> None:
        self.report.mode = "rebuild"
        staging = PhotoStore(
            self.store.uri,
            storage_options=self.store.storage_options,
            table=STAGING_PREFIX + self.id,
        )
        staging.ensure_table(self.schema)
        staged = {
            row["id"]: (row["size"], row["mtime_ns"])
            for row in staging.scan(["id", "size", "mtime_ns"]).to_pylist()
        }
        old = self._old_rows()
        entries: dict[str, SourceEntry] = {}
        if self.source is not None:
            for entry in self._listing():
                entries[photo_id(entry.path)] = entry
        for row_id, row in old.items():  # rows outside the source are carried over
            if row_id not in entries and not (self.source and self.source.contains(row["path"])):
                entries[row_id] = SourceEntry(row["path"], row["size"], row["mtime_ns"])
        to_encode: list[SourceEntry] = []
        to_reproject: set[str] = set()
        for row_id, entry in entries.items():
            if staged.get(row_id) == (entry.size, entry.mtime_ns):
                self.report.resumed += 1
            elif same_encoder and row_id in old and _same_file(old[row_id], entry):
                to_reproject.add(row_id)
            else:
                to_encode.append(entry)
        self.total, self.done = len(entries), self.report.resumed
        self.done_at_start = self.done
        self._notify()
        if to_reproject:
            self._reproject(to_reproject, staging)
        self._encode_and_write(to_encode, staging, old, upsert=False)
        # Every row is staged: one commit replaces the table; readers never see a mix.
        self.report.removed = len(set(old) - set(entries))
        self.report.removed += sum(1 for path, _ in self.report.failed if photo_id(path) in old)
        self.store.replace_all(staging.batches(), self.schema)
        self.report.swapped = True
        self.report.commits += 1
        staging.drop()
        self.store.optimize()

    # -- work -------------------------------------------------------------------------------
    def _reproject(self, ids: set[str], staging: PhotoStore) -> None:
        """New vectors and policy fields from stored features, streamed through the old table."""
        indexer = Indexer(None, self.bundle)  # type: ignore[arg-type]
        for batch in self.store.batches(self.schema.names):
            rows = pa.Table.from_batches([batch])
            mask = pa.array([i in ids for i in rows.column("id").to_pylist()])
            rows = rows.filter(mask)
            if rows.num_rows == 0:
                continue
            staging.add(reproject_rows(rows, self.schema, self.bundle, indexer))
            self.report.reprojected += rows.num_rows
            self.report.updated += rows.num_rows
            self.report.commits += 1
            self.done += rows.num_rows
            self._notify()

    def _encode_and_write(
        self,
        todo: list[SourceEntry],
        target: PhotoStore,
        old: dict[str, dict[str, Any]],
        *,
        upsert: bool,
    ) -> None:
        shards = [todo[i : i + self.shard_size] for i in range(0, len(todo), self.shard_size)]
        self.report.shards = len(shards)
        if not shards:
            return
        source = self.source or open_source(".", storage_options=self.store.storage_options)
        pending: list[pa.Table] = []
        last_commit = time.monotonic()

        def commit() -> None:
            nonlocal last_commit
            if pending:
                rows = pa.concat_tables(pending)
                (target.upsert if upsert else target.add)(rows)
                pending.clear()
                self.report.commits += 1
                last_commit = time.monotonic()

        results: Iterable[ShardResult]
        if self.engine == "ray":
            results = _encode_ray(shards, source, self.bundle, self.workers, self.cpus_per_worker)
        else:
            results = _encode_local(shards, source, self.bundle, self.workers)
        try:
            for result in results:
                pending.append(result.rows)
                ids = result.rows.column("id").to_pylist()
                self.report.encoded += len(ids)
                self.report.updated += sum(1 for i in ids if i in old)
                self.report.added += sum(1 for i in ids if i not in old)
                self.report.failed.extend(result.failed)
                self.done += result.photos
                due = time.monotonic() - last_commit >= COMMIT_EVERY_SECONDS
                if due or sum(t.num_rows for t in pending) >= self.write_batch:
                    commit()
                self._notify()
        except BaseException:
            commit()  # keep what was encoded: a restart skips it
            raise
        commit()

    def _notify(self) -> None:
        if self.progress:
            self.progress(self.done, self.total)
        if self.status:
            self.status(self._status())

    def _status(self) -> JobStatus:
        return JobStatus(
            done=self.done,
            total=self.total,
            failed=len(self.report.failed),
            encoded=self.report.encoded,
            elapsed=time.perf_counter() - self.started,
            done_at_start=self.done_at_start,
            engine=self.engine,
        )

    def _finish(self) -> BatchReport:
        self.report.seconds = time.perf_counter() - self.started
        self._notify()
        for path, reason in self.report.failed:
            log.warning("failed: %s: %s", path, reason)
        return self.report


def _same_file(row: dict[str, Any], entry: SourceEntry) -> bool:
    return (row["path"], row["size"], row["mtime_ns"]) == (entry.path, entry.size, entry.mtime_ns)


def reproject_rows(rows: pa.Table, schema: pa.Schema, bundle: Any, indexer: Any) -> pa.Table:
    """Rows with new ``vector``, ``child_score`` and ``restricted`` from their ``features``."""
    features_column = rows.column("features").combine_chunks()
    width = features_column.type.list_size
    features = (
        features_column.values.to_numpy(zero_copy_only=False).reshape(-1, width).astype(np.float32)
    )
    vectors = np.asarray(bundle.space.image_vectors(features), dtype=np.float32)
    scores = indexer.child_scores(features)
    threshold = indexer.child_threshold()
    captions = rows.column("caption").to_pylist()
    restricted = [
        photo_is_restricted(score, threshold, caption)
        for score, caption in zip(scores, captions, strict=True)
    ]
    replacements = {
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1]),
        "child_score": pa.array(scores, type=pa.float32()),
        "restricted": pa.array(restricted, type=pa.bool_()),
        "indexed_at": pa.array([datetime.now(UTC)] * rows.num_rows, type=pa.timestamp("us", "UTC")),
    }
    for name, column in replacements.items():
        rows = rows.set_column(rows.schema.get_field_index(name), schema.field(name), column)
    return rows.select(schema.names).cast(schema)


def _duration(seconds: float) -> str:
    """``95`` -> ``'1m35s'``, ``38.2`` -> ``'38 s'``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"
