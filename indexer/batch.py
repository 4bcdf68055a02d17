"""The indexing job: list photos, read them ahead in threads, encode them in shards on an engine
(in this process, or on Ray workers that write their rows as Lance fragments), commit once
per checkpoint from one driver (:mod:`pixsearch.db.fragments`). The in-place plan is streamed:
the driver holds one chunk of the listing at a time, never the listing or the table.

``pixsearch index`` and ``pixsearch reindex`` are this one job (:func:`run_index`,
:func:`run_reindex`), in one of two modes picked from what the database holds:

- **in place** (``index``; ``reindex`` when there is no table yet, or a table made by this very
  bundle, and a source is given): photos whose size, mtime and caption files are unchanged
  cost a ``stat``; new and changed ones are read once (hash and decode from the same bytes),
  encoded and upserted in batches (one commit per ``write_batch`` rows or per
  ``COMMIT_EVERY_SECONDS``: the batch's fragments added and the rows they replace deleted in
  one operation), so a killed run loses at most one batch and the next run skips what was
  committed. A photo whose content is already stored (a rename, a copy, an edited
  caption) is not decoded: its row is copied and its caption re-evaluated. Rows of photos gone
  from the source are removed at the end, except under folders that could not be listed.
- **rebuild** (a table made by another bundle, or no source: "re-encode what is there"): rows
  are written to a staging table ``photos_staging_<job id>`` (the job id hashes the bundle id
  and the source), then replace ``photos`` in one commit when the job completes: searches see
  the old table until then, never a mix. Rows whose stored ``features`` came from the same image
  encoder are re-projected without decoding a photo. A restart skips ids already staged and
  first deletes staged rows whose photo changed or went (each id is staged once). The swap
  refuses (``ConcurrentWriteError``) when ``photos`` moved past the version the job planned
  from: another writer's rows are never discarded silently.

On an object store the job holds the database's writer lease (:mod:`pixsearch.db.lease`): a
second job is refused with ``ConcurrentWriteError``. A photo that fails in any way is reported
in ``failed`` and the job goes on.

Either mode ends by building missing or stale indexes (:meth:`PhotoStore.index_health`), also
when no photo changed: a run killed before its ``optimize`` leaves them for the next one.

Engines: ``local`` reads ahead in a thread pool and encodes shard after shard here; ``ray``
runs :class:`ShardEncoder` in a pool of Ray actors fed shards as the plan makes them (a few
per actor in flight), so each worker loads the ONNX bundle once; Ray is imported only then
(``pixsearch[ray]``). A Ray worker leaves a done mark per shard it wrote
(:class:`pixsearch.db.fragments.ShardMarks`, named after the job and the shard's photos;
shards never span plan chunks, so a rerun forms the same ones): a rerun after the driver died
commits those fragments without reading their photos again.

>>> import tempfile
>>> from pixsearch.db.store import PhotoStore
>>> from pixsearch.indexer.models import ModelBundle
>>> report = run_reindex(PhotoStore(tempfile.mkdtemp()), ModelBundle.load())
>>> report.summary().startswith("[local] nothing to do")
True
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

from pixsearch.db.environment import THREADS_ENV, environment, reload_environment
from pixsearch.db.errors import InvalidInputError, MissingExtraError
from pixsearch.db.fragments import FragmentWriter, ShardMarks, copy_fragment, fragments_present
from pixsearch.db.schema import table_info
from pixsearch.db.snapshot import Snapshot, quote
from pixsearch.db.store import PhotoStore, check_compatible
from pixsearch.indexer.report import (
    BatchReport,
    IndexReport,
    JobStatus,
    ProgressCallback,
    StatusCallback,
)
from pixsearch.indexer.rows import PhotoRead, RowMaker, feature_source, photo_id, read_photo
from pixsearch.indexer.scan import Listing, PhotoEntry, caption_key, within_tree
from pixsearch.indexer.sources import PhotoSource, is_remote, open_source

__all__ = ["BatchReport", "IndexReport", "JobStatus", "ShardEncoder", "run_index", "run_reindex"]

log = logging.getLogger("pixsearch.batch")

ENGINES = ("local", "ray")
STAGING_PREFIX = "photos_staging_"
DEFAULT_SHARD_SIZE = 64
"""Photos per shard: the unit the encoder (or a Ray worker) decodes and encodes in one call."""
INDEX_SHARD_SIZE = 32
"""``index``'s shard: the image encoder's batch; the read-ahead fills sooner and holds fewer
decoded photos than with 64 (which was no faster: 300 practicum photos, interleaved runs)."""
DEFAULT_WRITE_BATCH = 512
"""Rows per commit (``$PIXSEARCH_WRITE_BATCH`` overrides it); each commit is one LanceDB
version, and a killed run loses at most this many encoded rows."""
PLAN_CHUNK = 10_000
"""Listed photos the in-place plan compares with the stored rows at a time (one indexed
lookup of their path range): the driver's plan holds about this many, whatever the size of
the source."""
_PLAN_COLUMNS = ("id", "path", "size", "mtime_ns", "caption_source")
"""What the plan reads of a stored row."""
_LOOKUP_IDS = 1000
"""Ids per lookup by id (an ``IN`` list), and rows per batch of a streamed scan."""
COMMIT_EVERY_SECONDS = 10.0
"""A slow run also commits at least this often, so a kill loses little work."""
MAX_READ_WORKERS = 8
"""Reader threads at most (default: CPUs + 2; reading and decoding release the GIL)."""
READ_AHEAD_SHARDS = 2
"""Photos read ahead of the encoder, in shards: readers decode the next shards while the
encoder runs forward passes, and memory stays bounded (decoded 224x224 pixels only)."""
RAY_EXTRA = 'pip install "pixsearch[ray]"'
_NOT_UTF8 = "file name is not valid UTF-8; rename the file"


MALLOC_ARENAS = 2
"""glibc heap arenas a job's process may use (``M_ARENA_MAX``), unless ``$MALLOC_ARENA_MAX``
says otherwise: with one arena per reader thread (glibc's default, up to 8 per core) the freed
memory of each write batch was not reused, and the driver's RSS rose ~70 MB per 10k rows
(benchmarks/scale_out.py, docs/scale-out.md); with 2 it stays flat, at the same speed."""
_M_ARENA_MAX = -8  # mallopt's parameter number in glibc's malloc.h


def limit_malloc_arenas() -> bool:
    """Cap glibc's heap arenas at ``MALLOC_ARENAS`` for this process (arenas made later);
    returns whether it could (False on other C libraries, or when the environment sets it)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    import ctypes

    try:  # the symbols the process already has: no library search
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, TypeError):  # not glibc (macOS, musl, Windows)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_ARENA_MAX, MALLOC_ARENAS))


def default_read_workers() -> int:
    """Reader threads of the local engine: CPUs + 2, at most ``MAX_READ_WORKERS``."""
    return min(MAX_READ_WORKERS, (os.cpu_count() or 2) + 2)


def default_write_batch() -> int:
    """Rows per commit: ``$PIXSEARCH_WRITE_BATCH``, else ``DEFAULT_WRITE_BATCH``."""
    return environment().write_batch or DEFAULT_WRITE_BATCH


@dataclass
class ShardResult:
    """What a worker made of one shard: rows of the photos it encoded (or, with a fragment
    writer, the fragments it wrote them to and their ids), photos whose content is already
    stored (rows made by the driver), photos it could not read or decode."""

    rows: pa.Table
    failed: list[tuple[str, str]] = field(default_factory=list)
    photos: int = 0
    reused: list[PhotoRead] = field(default_factory=list)
    fragments: list[str] = field(default_factory=list)
    """Uncommitted fragments holding the encoded rows (JSON metadata; see db.fragments)."""
    ids: list[str] = field(default_factory=list)
    """Ids of the encoded rows."""
    mark: str | None = None
    """The shard's done mark, when its worker left one (see db.fragments.ShardMarks)."""
    from_mark: bool = False
    """The fragments were written by an earlier, interrupted run: nothing was read now."""


class ShardEncoder:
    """Reads, decodes and encodes one shard of photos into photos-table rows (on a worker).

    The model bundle is loaded once per encoder (per Ray actor); ``bundle_id`` guards against
    a worker whose installed pixsearch carries another bundle. Photos whose content hash is in
    ``reusable`` are read and hashed but not decoded. With a ``writer`` the encoded rows are
    written as uncommitted fragments of the job's target table (the driver commits them).
    Any ``Exception`` while reading a photo is that photo's failure, one while encoding a shard
    its photos' failures (the job goes on); only ``BaseException`` (Ctrl-C, exit) stops it.

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
        read_threads: int | None = None,
        reusable: Container[str] = (),
        writer: FragmentWriter | None = None,
    ) -> None:
        if bundle is None:
            bundle = _load_bundle(bundle_dir, bundle_id)
        self.bundle = bundle
        self.source = source
        self.rows = RowMaker(bundle)
        self.read_threads = max(1, read_threads or default_read_workers())
        self.reusable = reusable
        self.writer = writer

    def __call__(self, entries: Sequence[PhotoEntry]) -> ShardResult:
        """Read and encode ``entries`` (one shard)."""
        with ThreadPoolExecutor(self.read_threads, thread_name_prefix="pixsearch-read") as pool:
            reads = list(pool.map(self.read, entries))
        return self.encode(reads)

    def read(self, entry: PhotoEntry) -> PhotoRead:
        """Read one photo (a reader thread's work); any error is the photo's failure."""
        try:
            return read_photo(self.source, entry, self.reusable)
        except Exception as error:  # a bad photo or source must not stop the job
            return PhotoRead(entry, error=f"unexpected error: {_describe(error)}")

    def encode(self, reads: list[PhotoRead]) -> ShardResult:
        """Encode the decoded photos of a shard in one forward pass (and write them when the
        encoder has a writer); sort out the rest."""
        failed = [(read.entry.path, read.error) for read in reads if read.error is not None]
        ok = [read for read in reads if read.error is None]
        decoded = [read for read in ok if read.photo is not None]
        reused = [read for read in ok if read.photo is None]
        try:
            rows = self.rows.encode(decoded)
        except Exception as error:  # the shard's photos fail, the job goes on
            failed += [(read.entry.path, f"cannot encode: {_describe(error)}") for read in decoded]
            rows = self.rows.schema.empty_table()
        ids = rows.column("id").to_pylist()
        fragments: list[str] = []
        if self.writer is not None:
            fragments = self.writer(rows)
            rows = self.rows.schema.empty_table()
        return ShardResult(rows, failed, len(reads), reused, fragments, ids)


def _describe(error: BaseException) -> str:
    """``Type: message`` of an unexpected error, on one line."""
    text = " ".join(str(error).split())[:300]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def read_ahead(
    read: Callable[[PhotoEntry], PhotoRead],
    entries: Iterable[PhotoEntry],
    *,
    workers: int,
    window: int,
) -> Iterator[PhotoRead]:
    """``read(entry)`` for each entry in a thread pool, yielded in order, at most ``window``
    photos ahead of the consumer."""
    with ThreadPoolExecutor(workers, thread_name_prefix="pixsearch-read") as pool:
        queue: deque[Future[PhotoRead]] = deque()
        pending = iter(entries)
        for entry in pending:
            queue.append(pool.submit(read, entry))
            if len(queue) >= window:
                break
        while queue:
            yield queue.popleft().result()
            entry = next(pending, None)
            if entry is not None:
                queue.append(pool.submit(read, entry))


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
    shards: Iterable[list[PhotoEntry]],
    source: PhotoSource,
    bundle: Any,
    workers: int | None,
    reusable: Container[str],
    shard_size: int,
) -> Iterator[ShardResult]:
    """Readers run ``READ_AHEAD_SHARDS`` shards ahead; this thread only encodes (the rows stay
    in this process: the job writes one fragment per checkpoint, not one per shard). Shards
    are taken from ``shards`` as the readers need them (the plan is streamed)."""
    encoder = ShardEncoder(source=source, bundle=bundle, read_threads=workers, reusable=reusable)
    sizes: deque[int] = deque()

    def entries() -> Iterator[PhotoEntry]:
        for shard in shards:
            sizes.append(len(shard))
            yield from shard

    reads = read_ahead(
        encoder.read, entries(), workers=encoder.read_threads, window=READ_AHEAD_SHARDS * shard_size
    )
    for first in reads:
        yield encoder.encode([first] + [next(reads) for _ in range(sizes.popleft() - 1)])


class _RayShardEncoder:
    """A Ray actor: encodes one shard (JSON entries) per call and returns what it made of it:
    the fragments it wrote (metadata), the ids in them, failures and reusable photos."""

    def __init__(
        self,
        source: PhotoSource,
        bundle_dir: str,
        bundle_id: str,
        threads: int,
        reusable: Container[str],
        writer: FragmentWriter,
        marks: ShardMarks,
    ) -> None:
        os.environ.setdefault(THREADS_ENV, str(threads))  # before any session exists
        self.writer, self.marks = writer, marks
        reload_environment()
        self.encoder = ShardEncoder(
            source=source,
            bundle_dir=bundle_dir,
            bundle_id=bundle_id,
            reusable=reusable,
            writer=writer,
        )

    def encode(self, entries: str, mark: str) -> dict[str, Any]:
        """Encode one shard, unless its done mark is there (an earlier run of the job wrote
        it and was stopped before committing it) with its data files: then that is the
        result. A shard without failures leaves its mark (a rerun retries failed photos)."""
        found = self.marks.get(mark)
        if found is not None and fragments_present(
            self.writer.path, found.get("fragments", []), self.writer.storage_options
        ):
            return {**found, "from_mark": True}
        result = self.encoder([PhotoEntry(**item) for item in json.loads(entries)])
        out = {
            "fragments": result.fragments,
            "ids": result.ids,
            "failed": result.failed,
            "photos": result.photos,
            "reused": [
                {"entry": asdict(r.entry), "content_hash": r.content_hash, "caption": r.caption}
                for r in result.reused
            ],
        }
        if not result.failed:
            self.marks.put(mark, out)
        return out


def _require_ray() -> None:
    """Fail before any work when the ray engine is asked for but Ray is not installed."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as error:
        raise MissingExtraError(f"the ray engine needs Ray: {RAY_EXTRA}") from error


RAY_SHARDS_IN_FLIGHT = 2
"""Shards handed to each Ray actor ahead of its results (one running, one waiting)."""


def _encode_ray(
    shards: Iterable[list[PhotoEntry]],
    source: PhotoSource,
    bundle: Any,
    workers: int | None,
    cpus_per_worker: float,
    reusable: Container[str],
    writer: FragmentWriter,
    marks: ShardMarks,
    job: str,
) -> Iterator[ShardResult]:
    """A pool of ``workers`` Ray actors (each loads the bundle once), fed shards from the
    streamed plan, at most ``RAY_SHARDS_IN_FLIGHT`` per actor: the driver holds a few shards'
    entries, never the plan. An actor whose process dies is restarted by Ray and its shards
    are retried (``max_restarts``, ``max_task_retries``). Results come as shards finish.
    Each shard is named after ``job`` and its photos (its done mark: see ShardMarks)."""
    ray = _ray()
    if workers is None:
        workers = max(1, int(ray.cluster_resources().get("CPU", 1) // max(cpus_per_worker, 1)))
    actor = ray.remote(num_cpus=cpus_per_worker, max_restarts=-1, max_task_retries=-1)(
        _RayShardEncoder
    )
    actors = [
        actor.remote(
            source,
            str(getattr(bundle, "path", "")),
            bundle.id,
            max(1, int(cpus_per_worker)),
            reusable,
            writer,
            marks,
        )
        for _ in range(workers)
    ]
    free = deque(actors * RAY_SHARDS_IN_FLIGHT)
    running: dict[Any, tuple[Any, str]] = {}
    pending = iter(shards)
    try:
        while True:
            while free:
                shard = next(pending, None)
                if shard is None:
                    break
                encoder = free.popleft()
                entries = json.dumps([asdict(entry) for entry in shard])
                mark = ShardMarks.name(job, entries)
                running[encoder.encode.remote(entries, mark)] = (encoder, mark)
            if not running:
                return
            finished, _ = ray.wait(list(running), num_returns=1)
            for ref in finished:
                encoder, mark = running.pop(ref)
                free.append(encoder)
                out = ray.get(ref)
                yield ShardResult(
                    pa.table({}),
                    [(path, reason) for path, reason in out["failed"]],
                    int(out["photos"]),
                    [
                        PhotoRead(PhotoEntry(**r["entry"]), r["content_hash"], caption=r["caption"])
                        for r in out["reused"]
                    ],
                    out["fragments"],
                    out["ids"],
                    mark if not out["failed"] else None,
                    bool(out.get("from_mark")),
                )
    finally:
        for encoder in actors:
            ray.kill(encoder)


def _ray() -> Any:
    """The ``ray`` module, started: ``RAY_ADDRESS`` (if set) joins that cluster, otherwise a
    local Ray starts on this machine."""
    _require_ray()
    import ray

    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS") or None
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    return ray


def _copy_fragments(
    engine: str,
    source: PhotoStore,
    writer: FragmentWriter,
    cpus_per_worker: float,
) -> list[str]:
    """Copy every fragment of ``source`` into ``writer``'s table (uncommitted): one task per
    fragment on the Ray workers, or here with the local engine."""
    ids = source.fragment_ids()
    options = source.storage_options
    if engine != "ray" or not ids:
        return [
            text for i in ids for text in copy_fragment(source.dataset_path, i, writer, options)
        ]
    ray = _ray()
    task = ray.remote(num_cpus=cpus_per_worker)(copy_fragment)
    parts = ray.get([task.remote(source.dataset_path, i, writer, options) for i in ids])
    return [text for part in parts for text in part]


# -- the job ----------------------------------------------------------------------------------
def job_id(bundle_id: str, source_uri: str | None) -> str:
    """The id of a job: same bundle and source = same job (its staging table is reused). An
    object-store prefix is the same with or without its trailing slash.

    >>> job_id("b1", "s3://bucket/photos"), job_id("b1", "s3://bucket/photos/")
    ('1512a4155dbf5502', '1512a4155dbf5502')
    """
    if source_uri and is_remote(source_uri):
        source_uri = source_uri.rstrip("/")
    key = f"{bundle_id}\0{source_uri or ''}".encode()
    return hashlib.blake2b(key, digest_size=8).hexdigest()


def run_index(
    store: PhotoStore,
    bundle: Any,
    root: str | os.PathLike[str],
    *,
    remove_missing: bool = True,
    include_hidden: bool = False,
    progress: ProgressCallback | None = None,
    wait_seconds: float = 0.0,
    workers: int | None = None,
    write_batch: int | None = None,
) -> IndexReport:
    """Index every photo under ``root`` (a folder, a photo file or an ``s3://`` prefix) in
    place: the job's in-place mode on the local engine. See the module docstring."""
    source = open_source(root, storage_options=store.storage_options, include_hidden=include_hidden)
    limit_malloc_arenas()
    write_batch = default_write_batch() if write_batch is None else write_batch
    if write_batch < 1 or (workers is not None and workers < 1):
        raise InvalidInputError("workers and write_batch must be at least 1")
    # a shard is the unit of a commit too: a write batch smaller than a shard makes it smaller
    shard_size = min(INDEX_SHARD_SIZE, write_batch)
    job = _Job(store, bundle, source, "local", shard_size, write_batch, progress, None)
    job.workers, job.remove_missing = workers, remove_missing
    with store.writer_lock(wait_seconds=wait_seconds):
        job.in_place()
        return job.finish().index_report()


def run_reindex(
    store: PhotoStore,
    bundle: Any,
    source: str | os.PathLike[str] | PhotoSource | None = None,
    *,
    engine: str = "local",
    shard_size: int = DEFAULT_SHARD_SIZE,
    write_batch: int | None = None,
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
    write_batch = default_write_batch() if write_batch is None else write_batch
    if shard_size < 1 or write_batch < 1 or (workers is not None and workers < 1):
        raise InvalidInputError("workers, shard_size and write_batch must be at least 1")
    if engine == "ray":
        _require_ray()
    limit_malloc_arenas()
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
        self.remove_missing = True
        self.rows = RowMaker(bundle)
        self.schema = self.rows.schema
        self.id = job_id(bundle.id, source.uri if source else None)
        self.report = BatchReport(engine=engine, job_id=self.id)
        self.started = time.perf_counter()
        self.done = self.done_at_start = self.total = 0
        self.moved: set[str] = set()
        """Ids of old rows whose content was found under a new path (renames, not removals)."""
        self.moved_gone = 0
        """Of those, the ones whose row the job removes as gone (not counted as removed)."""
        self.snapshot: Snapshot | None = None
        """The target table as the job found it (in place): what the plan compares with."""
        self.trees: list[str] = []
        """The trees the listing walked (see ``PhotoSource.walk``)."""
        self.tree_filters: list[str] = []
        """SQL predicates: the paths each tree covers (a rebuild carries the rows outside)."""
        self.staging: PhotoStore | None = None
        self.same_encoder = False
        self.incomplete: list[str] = []
        """Folders or prefixes that could not be listed: their rows are kept."""
        self.replacing: set[str] = set()
        """Ids being encoded whose row is stored: counted as updated, not added."""
        self.replaced: list[str] = []
        """Ids of stored rows that the written rows not committed yet replace (an upsert
        deletes them in the commit that adds their new rows)."""
        self.gone: list[str] = []
        """Ids of stored rows whose photo is gone, not deleted yet."""
        self.gone_count = 0

    # -- plan -------------------------------------------------------------------------------
    def run(self) -> BatchReport:
        info = self.store.table_info()
        if info is None and self.source is None:
            return self.finish()
        if info is not None and info.bundle_id == self.bundle.id:
            # refuse a newer schema before touching anything
            check_compatible(info, table_info(self.schema), self.store.uri)
        same_bundle = info is not None and info.bundle_id == self.bundle.id
        if self.source is not None and (info is None or same_bundle):
            self.in_place()
        else:
            assert info is not None
            self._rebuild(same_encoder=info.feature_source == feature_source(self.bundle))
        return self.finish()

    def in_place(self) -> None:
        """New and changed photos of the source upserted; gone ones removed; indexes built.

        The plan is streamed: the listing comes in chunks of about ``PLAN_CHUNK`` photos in
        path order; each chunk is compared with the stored rows of its path range only (one
        indexed lookup in the table as the job found it), its photos to encode go to the
        engine as shards, the stored rows in its range that it did not list are deleted as
        gone (in the next commit), then it is dropped. Nothing proportional to the listing or
        the table is held.
        """
        assert self.source is not None
        self.report.mode = "in-place"
        self.store.ensure_table(self.schema)
        self.snapshot = self.store.snapshot()
        self._encode_and_write(
            self._shards(self._plan_in_place()), self.store, upsert=True, reusable=self.snapshot
        )
        self.report.removed = max(0, self.gone_count - self.moved_gone)
        changed = bool(
            self.report.added or self.report.updated or self.report.renamed or self.gone_count
        )
        self._build_indexes(changed)

    def _plan_in_place(self) -> Iterator[list[PhotoEntry]]:
        """The photos to encode, chunk after chunk of the listing (see :meth:`in_place`)."""
        assert self.snapshot is not None
        for chunk in self._chunks():
            rows = chunk.stored(self.snapshot, _PLAN_COLUMNS)
            stored = {row["id"]: row for row in rows}
            self.total += len(chunk.entries)
            todo = []
            for row_id, entry in chunk.entries:
                row = stored.pop(row_id, None)
                if _unchanged(row, entry):
                    self.report.unchanged += 1
                    self.done += 1
                    self.done_at_start += 1
                    continue
                if row is not None:
                    self.replacing.add(row_id)
                todo.append(entry)
            if self.remove_missing:
                for row_id, row in stored.items():  # in the chunk's range, not listed
                    self._gone(row_id, row["path"], chunk.tree)
            self._notify()  # the chunk is planned: its photos are counted in the total
            yield todo

    def _chunks(self) -> Iterator[_Chunk]:
        """The source's listing in chunks of at least ``PLAN_CHUNK`` photos (whole pieces of
        the walk), each with the path range it covers: from the end of the chunk before (or
        the start of its tree) to its last photo, or to the end of its tree for a tree's last
        chunk; so the chunks of a tree cover every path under it once."""
        assert self.source is not None
        tree: Listing | None = None
        entries: list[tuple[str, PhotoEntry]] = []
        low: str | None = None
        last = ""
        for piece in self.source.walk():
            self.report.skipped.extend(piece.skipped)
            self.incomplete.extend(piece.incomplete)
            if tree is not None and piece.root != tree.root:
                yield _Chunk(tree.root, tree.single, self.source.remote, entries, low, None)
                self.tree_filters.append(
                    _Chunk.covering(tree.root, tree.single, self.source.remote)
                )
                entries, low, last = [], None, ""
            if tree is None or piece.root != tree.root:
                self.trees.append(piece.root)
            tree = piece
            for entry in piece.files:
                try:
                    row_id = photo_id(entry.path)
                except UnicodeEncodeError:
                    self.report.failed.append((entry.path, _NOT_UTF8))
                    continue
                if entry.path <= last:  # never: a walk is in path order; if so, delete nothing
                    log.warning("listing of %s out of order at %s", piece.root, entry.path)
                    self.incomplete.append(piece.root)
                entries.append((row_id, entry))
                last = entry.path
            if len(entries) >= PLAN_CHUNK:
                yield _Chunk(tree.root, tree.single, self.source.remote, entries, low, last)
                entries, low = [], last
        if tree is not None:
            yield _Chunk(tree.root, tree.single, self.source.remote, entries, low, None)
            self.tree_filters.append(_Chunk.covering(tree.root, tree.single, self.source.remote))
        for root in self.source.roots:  # the root as named (a link): rows stored under it
            if not any(_under(root, walked) for walked in self.trees):
                self.trees.append(root)
                yield _Chunk(root, False, self.source.remote, [], None, None)
                self.tree_filters.append(_Chunk.covering(root, False, self.source.remote))

    def _gone(self, row_id: str, path: str, tree: str) -> None:
        """A stored row in a chunk's range whose photo the chunk did not list: deleted if the
        listing would have listed it, kept under a folder that could not be listed."""
        state = self._absent(path, tree)
        if state == "kept":
            self.report.kept += 1
        if state != "gone":
            return
        self.gone.append(row_id)
        self.gone_count += 1
        if len(self.gone) >= self.write_batch:  # a mass removal commits as it goes
            self.store.commit_fragments([], self.gone)
            self.report.commits += 1
            self.gone.clear()

    def _absent(self, path: str, tree: str) -> str:
        """What a stored photo not listed is: ``gone``; ``kept`` (under a folder that could
        not be listed); or ``outside`` what the listing covers (a hidden folder)."""
        if not self._within_listing(path, tree):
            return "outside"
        if any(_under(path, folder) for folder in self.incomplete):
            return "kept"
        return "gone"

    def _within_listing(self, path: str, tree: str) -> bool:
        """True when the listing of ``tree`` would list ``path`` if it existed: under the
        source's root, or under the tree (a folder reached through a link) but in no hidden
        folder."""
        assert self.source is not None
        if self.source.contains(path):
            return True
        folder = os.path.dirname(path)
        return _under(path, tree) and within_tree(folder, tree, self.source.include_hidden)

    def _build_indexes(self, changed: bool) -> None:
        """Optimize after changes, or when an index is missing or stale (a run killed before
        its optimize, a table grown past the vector-index threshold)."""
        if changed or any(state != "present" for state in self.store.index_health().values()):
            self.store.optimize()

    def _rebuild(self, *, same_encoder: bool) -> None:
        """Every photo (the source's, and the stored rows outside it) staged in a staging
        table, then swapped in; streamed like :meth:`in_place`: chunk by chunk of the listing
        against the stored and staged rows of its path range, then the stored rows outside
        the listed trees in batches (all of them without a source)."""
        self.report.mode = "rebuild"
        self.store.upgrade()
        staging = PhotoStore(
            self.store.uri,
            storage_options=self.store.storage_options,
            table=STAGING_PREFIX + self.id,
        )
        staging.ensure_table(self.schema)
        self.staging, self.same_encoder = staging, same_encoder
        # the live table is indexed only when it is big: a rebuild stays invisible to readers
        old = self.store.snapshot(index_min_rows=PLAN_CHUNK)
        staged = staging.snapshot(index_min_rows=PLAN_CHUNK)
        self.snapshot = old
        self._encode_and_write(self._shards(self._plan_rebuild(old, staged)), staging, upsert=False)
        # Every row is staged: one commit replaces the table; readers never see a mix.
        failed = sorted({photo_id(p) for p, reason in self.report.failed if reason != _NOT_UTF8})
        self.report.removed += len(_by_ids(old, failed, ["id"]))
        self._swap(staging, old.version)
        staging.drop()
        self.store.optimize()

    def _plan_rebuild(self, old: Snapshot, staged: Snapshot) -> Iterator[list[PhotoEntry]]:
        """The photos to encode (see :meth:`_rebuild`); re-projections and the removal of
        stale staged rows are done on the way, chunk by chunk."""
        where = None
        if self.source is not None:
            for chunk in self._chunks():
                olds = {row["id"]: row for row in chunk.stored(old, _PLAN_COLUMNS)}
                stageds = {row["id"]: row for row in chunk.stored(staged, _PLAN_COLUMNS)}
                listed = {row_id for row_id, _ in chunk.entries}
                entries = list(chunk.entries)
                for row_id, row in olds.items():
                    if row_id in listed:
                        continue
                    state = self._absent(row["path"], chunk.tree)
                    if state == "gone":
                        self.report.removed += 1
                        continue
                    if state == "kept":
                        self.report.kept += 1
                    entries.append((row_id, _carried(row)))  # outside the listing: carried over
                yield self._stage(entries, olds, stageds, old)
            where = "NOT (" + " OR ".join(self.tree_filters) + ")" if self.tree_filters else None
        # rows outside the listed trees are carried over (every row without a source)
        for batch in old.batches(_PLAN_COLUMNS, where, _LOOKUP_IDS):
            olds = {row["id"]: row for row in batch.to_pylist()}
            stageds = {row["id"]: row for row in _by_ids(staged, list(olds), _PLAN_COLUMNS)}
            entries = [(row_id, _carried(row)) for row_id, row in olds.items()]
            yield self._stage(entries, olds, stageds, old)
        # staged rows outside the listed trees whose stored row is gone since
        for batch in staged.batches(["id"], where, _LOOKUP_IDS):
            ids = batch.column("id").to_pylist()
            present = {row["id"] for row in _by_ids(old, ids, ["id"])}
            self._unstage([i for i in ids if i not in present])

    def _stage(
        self,
        entries: list[tuple[str, PhotoEntry]],
        olds: dict[str, dict[str, Any]],
        stageds: dict[str, dict[str, Any]],
        old: Snapshot,
    ) -> list[PhotoEntry]:
        """One chunk of a rebuild: photos staged already (unchanged since) are skipped, stale
        staged rows removed first, stored rows re-projected (same image encoder), the rest
        yielded to encode."""
        stale, reproject, todo = [], [], []
        for row_id, entry in entries:
            staged_row = stageds.pop(row_id, None)
            if _unchanged(staged_row, entry):
                self.report.resumed += 1
                self.done += 1
                self.done_at_start += 1
                continue
            if staged_row is not None:
                stale.append(row_id)
            stored = olds.get(row_id)
            if self.same_encoder and _unchanged(stored, entry):
                reproject.append(row_id)
                continue
            if stored is not None:
                self.replacing.add(row_id)
            todo.append(entry)
        self.total += len(entries)
        # A staged row whose photo changed or went since it was staged leaves the staging
        # table before anything is written for it: a resumed rebuild stages each id once.
        self._unstage(stale + list(stageds))
        if reproject:
            self._reproject(reproject, old)
        self._notify()
        return todo

    def _unstage(self, ids: list[str]) -> None:
        """Delete staged rows (one commit to the staging table)."""
        assert self.staging is not None
        if ids:
            self.staging.commit_fragments([], ids)
            self.report.commits += 1

    def _swap(self, staging: PhotoStore, snapshot: int) -> None:
        """Replace ``photos`` by the staged rows in one commit: the staging table's fragments
        are copied into it by the workers, unless another writer committed to it after the job
        planned (``snapshot``): its rows would be lost (``ConcurrentWriteError``)."""
        writer = FragmentWriter(
            self.store.dataset_path, self.schema, self.store.storage_options, mode="overwrite"
        )
        fragments = _copy_fragments(self.engine, staging, writer, self.cpus_per_worker)
        self.store.overwrite_with_fragments(fragments, self.schema, expected_version=snapshot)
        self.report.swapped = True
        self.report.commits += 1

    # -- work -------------------------------------------------------------------------------
    def _reproject(self, ids: list[str], old: Snapshot) -> None:
        """New vectors and policy fields from the stored features of rows ``ids`` (one chunk),
        read from the old table into fragments of the staging table (committed per
        ``write_batch`` rows and at the end of the chunk)."""
        assert self.staging is not None
        writer = self.staging.fragment_writer()
        pending: list[str] = []
        waiting = 0
        for start in range(0, len(ids), _LOOKUP_IDS):
            rows = old.scan(self.schema.names, _id_in(ids[start : start + _LOOKUP_IDS]))
            if rows.num_rows == 0:
                continue
            pending += writer(self.rows.reproject(rows))
            waiting += rows.num_rows
            self.report.reprojected += rows.num_rows
            self.report.updated += rows.num_rows
            self.done += rows.num_rows
            if waiting >= self.write_batch:
                self.staging.commit_fragments(pending)
                self.report.commits += 1
                pending, waiting = [], 0
        if pending:
            self.staging.commit_fragments(pending)
            self.report.commits += 1

    def _shards(self, chunks: Iterable[list[PhotoEntry]]) -> Iterator[list[PhotoEntry]]:
        """Each chunk's photos to encode in shards of ``shard_size``, as they come (counted
        in the report). A shard never spans chunks, so a rerun after a crash forms the same
        shards from what is left of a chunk (whole shards were committed or not: the full
        shards stay aligned, the short one stays last) and finds their done marks."""
        for chunk in chunks:
            for start in range(0, len(chunk), self.shard_size):
                self.report.shards += 1
                yield chunk[start : start + self.shard_size]

    def _encode_and_write(
        self,
        shards: Iterable[list[PhotoEntry]],
        target: PhotoStore,
        *,
        upsert: bool,
        reusable: Container[str] = (),
    ) -> None:
        """Encode ``shards`` on the engine (taken as the engine needs them), commit the
        written rows once per checkpoint. In place (``upsert``), photos whose content is
        stored (``reusable``: renames, copies, caption edits) are not decoded: their rows
        are copied from the stored ones; each commit also deletes the rows the new ones
        replace and those of photos found gone."""
        source = self.source or open_source(".", storage_options=self.store.storage_options)
        writer = target.fragment_writer()
        marks = target.shard_marks(self.id)
        marked: list[str] = []  # done marks of the shards whose fragments wait for a commit
        fragments: list[str] = []  # written by the workers, not committed yet
        rows: list[pa.Table] = []  # encoded here (local engine), not written yet
        reuse: list[PhotoRead] = []
        waiting = 0
        last_commit = time.monotonic()

        def commit() -> None:
            """One checkpoint: the written fragments become one version of the target (an
            upsert deletes the rows they replace, and those found gone, in the same commit)."""
            nonlocal last_commit, waiting
            if reuse:
                rows.append(self._reused_rows(reuse, source))
                reuse.clear()
            if rows:
                fragments.extend(writer(pa.concat_tables(rows)))
                rows.clear()
            deleted = self.replaced + self.gone if upsert else []
            marks.delete(marked)  # first: a mark never names committed fragments
            marked.clear()
            if fragments or deleted:
                target.commit_fragments(fragments, deleted)
                self.report.commits += 1
            fragments.clear()
            self.replaced.clear()
            self.gone.clear()
            waiting = 0
            last_commit = time.monotonic()

        pending = iter(shards)
        first = next(pending, None)
        if first is None:  # nothing to encode: no engine started
            commit()
            return
        shards = itertools.chain([first], pending)
        results: Iterable[ShardResult]
        if self.engine == "ray":
            job = f"{self.id}/{target.table_name}"
            results = _encode_ray(
                shards,
                source,
                self.bundle,
                self.workers,
                self.cpus_per_worker,
                reusable,
                writer,
                marks,
                job,
            )
        else:
            results = _encode_local(
                shards, source, self.bundle, self.workers, reusable, self.shard_size
            )
        try:
            for result in results:
                fragments.extend(result.fragments)
                if result.mark is not None:
                    marked.append(result.mark)
                self.report.shards_reused += result.from_mark
                if result.rows.num_rows:
                    rows.append(result.rows)
                reuse.extend(result.reused)
                for row_id in result.ids:
                    self._count(row_id)
                self.report.encoded += len(result.ids)
                self.report.failed.extend(result.failed)
                self.done += result.photos
                waiting += len(result.ids) + len(result.reused)
                if waiting >= self.write_batch or (
                    time.monotonic() - last_commit >= COMMIT_EVERY_SECONDS
                ):
                    commit()
                self._notify()
        except BaseException:
            commit()  # keep what was encoded: a restart skips it
            raise
        commit()
        marks.clear()  # marks of shards not formed again (their photos changed since)

    def _count(self, row_id: str, moved_from: dict[str, Any] | None = None) -> None:
        """Count one new row: updated (its photo's row is stored: the commit replaces it),
        renamed (its content is stored under a path whose photo is gone: ``moved_from``) or
        added (a new photo, or a copy)."""
        if row_id in self.replacing:
            self.replacing.discard(row_id)
            self.replaced.append(row_id)
            self.report.updated += 1
        elif moved_from is not None:
            self.report.renamed += 1
            if moved_from["id"] not in self.moved:
                self.moved.add(moved_from["id"])
                path = moved_from["path"]
                tree = next((t for t in self.trees if _under(path, t)), "")
                if self._within_listing(path, tree) and not any(
                    _under(path, folder) for folder in self.incomplete
                ):
                    self.moved_gone += 1  # its row goes as gone: not also counted removed
        else:
            self.report.added += 1

    def _reused_rows(self, reads: list[PhotoRead], source: PhotoSource) -> pa.Table:
        """Rows for photos whose content is stored: copied from a stored row with it (one
        indexed lookup per checkpoint in the table as the job found it: many copies of one
        photo cost one row read), or encoded after all if none is found."""
        assert self.snapshot is not None
        stored: dict[str, dict[str, Any]] = {}
        hashes = sorted({read.content_hash for read in reads})
        for row in self.snapshot.rows_by_content(hashes, self.schema.names).to_pylist():
            stored.setdefault(row["content_hash"], row)
        moved = {  # the stored path's photo is gone (checked once per content)
            content: not source.exists(row["path"]) for content, row in stored.items()
        }
        found = [read for read in reads if read.content_hash in stored]
        for read in found:
            row_id = photo_id(read.entry.path)
            old = stored[read.content_hash]
            self._count(row_id, old if moved[read.content_hash] and old["id"] != row_id else None)
        self.report.reused += len(found)
        tables = [self.rows.reuse(found, stored)]
        vanished = [
            read_photo(source, read.entry, ()) for read in reads if read.content_hash not in stored
        ]
        if vanished:
            result = ShardEncoder(source=source, bundle=self.bundle).encode(vanished)
            for row_id in result.ids:
                self._count(row_id)
            self.report.encoded += result.rows.num_rows
            self.report.failed.extend(result.failed)
            tables.append(result.rows)
        return pa.concat_tables(tables)

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

    def finish(self) -> BatchReport:
        self.report.seconds = time.perf_counter() - self.started
        self._notify()
        for path, reason in self.report.failed:
            log.warning("failed: %s: %s", path, reason)
        return self.report


def _carried(row: dict[str, Any]) -> PhotoEntry:
    """The entry of a stored photo that a rebuild carries over without a listing of it."""
    key = row["caption_source"]
    if not is_remote(row["path"]):  # a local caption file may have changed since
        key = caption_key(row["path"])[1]
    return PhotoEntry(row["path"], row["size"], row["mtime_ns"], caption_key=key)


def _id_in(ids: Sequence[str]) -> str:
    """A SQL predicate: the row's id is one of ``ids``."""
    return f"id IN ({', '.join(quote(i) for i in ids)})"


def _by_ids(snapshot: Snapshot, ids: Sequence[str], columns: Sequence[str]) -> list[dict[str, Any]]:
    """The rows of ``snapshot`` with these ids (one indexed lookup per ``_LOOKUP_IDS``)."""
    found: list[dict[str, Any]] = []
    for start in range(0, len(ids), _LOOKUP_IDS):
        found += snapshot.scan(columns, _id_in(ids[start : start + _LOOKUP_IDS])).to_pylist()
    return found


@dataclass
class _Chunk:
    """A chunk of a streamed listing: its photos (by id) and the path range it covers in its
    tree: after ``low`` (None: from the tree's start) up to ``high`` included (None: to the
    tree's end). A ``single`` tree is one photo file."""

    tree: str
    single: bool
    remote: bool
    entries: list[tuple[str, PhotoEntry]]
    low: str | None
    high: str | None

    @staticmethod
    def bounds(tree: str, remote: bool) -> tuple[str, str]:
        """The paths under folder ``tree``: from ``start`` (included) to ``end`` (excluded)."""
        separator = "/" if remote else os.sep
        base = tree.rstrip(separator)
        return base + separator, base + chr(ord(separator) + 1)

    @staticmethod
    def covering(tree: str, single: bool, remote: bool) -> str:
        """A SQL predicate: the path lies in ``tree``."""
        if single:
            return f"path = {quote(tree)}"
        start, end = _Chunk.bounds(tree, remote)
        return f"(path >= {quote(start)} AND path < {quote(end)})"

    def stored(self, snapshot: Snapshot, columns: Sequence[str]) -> list[dict[str, Any]]:
        """The rows of ``snapshot`` in this chunk's range (one indexed range read)."""
        if self.single:
            found = snapshot.rows_in_range(columns, self.tree, self.tree, high_inclusive=True)
            return found.to_pylist()
        start, end = self.bounds(self.tree, self.remote)
        found = snapshot.rows_in_range(
            columns,
            start if self.low is None else self.low,
            end if self.high is None else self.high,
            low_inclusive=self.low is None,
            high_inclusive=self.high is not None,
        )
        return found.to_pylist()


def _under(path: str, folder: str) -> bool:
    """True when ``path`` is ``folder`` or lies under it (local path or object-store URI).

    >>> _under("/p/a/x.jpg", "/p/a"), _under("/p/ab/x.jpg", "/p/a"), _under("s3://b/p/x", "s3://b/p/")
    (True, False, True)
    """
    separator = "/" if is_remote(folder) else os.sep
    base = folder.rstrip(separator)
    return path == base or path.startswith(base + separator)


def _unchanged(row: dict[str, Any] | None, entry: PhotoEntry) -> bool:
    """True when a stored row was made from this very file and caption files (stat only)."""
    if row is None:
        return False
    stored = (row["path"], row["size"], row["mtime_ns"], row["caption_source"] or "")
    return stored == (entry.path, entry.size, entry.mtime_ns, entry.caption_key)
