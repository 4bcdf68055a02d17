"""The photos table: open/create with checks, upsert, delete, vector search.

Writes go through LanceDB; reads (searches, counts, scans, settings) through the Lance format
library (:mod:`pixsearch.db.reader`), so that a process that only searches never imports
LanceDB (1.9 s of imports; see docs/performance.md).

>>> import tempfile
>>> from pixsearch.db.schema import photo_schema
>>> store = PhotoStore(tempfile.mkdtemp())
>>> store.table_info() is None
True
>>> schema = photo_schema(vector_dim=2, feature_dim=3, bundle_id="b1", space="demo")
>>> store.ensure_table(schema)
>>> store.count()
0
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pixsearch.db.errors import (
    BundleMismatchError,
    DatabaseError,
    DatabaseLockedError,
    DatabaseNotFoundError,
    SchemaVersionError,
)
from pixsearch.db.errors import readable_error as readable_error
from pixsearch.db.fragments import (
    SHARD_MARKS,
    FragmentWriter,
    ShardMarks,
    commit_fragments,
    overwrite_with_fragments,
)
from pixsearch.db.reader import TableReader
from pixsearch.db.schema import (
    RESULT_COLUMNS,
    SCHEMA_VERSION,
    TABLE_NAME,
    UPGRADES,
    TableInfo,
    table_info,
)
from pixsearch.db.snapshot import Snapshot

os.environ.setdefault("LANCEDB_LOG", "error")  # quiet LanceDB's stderr unless asked

_log = logging.getLogger("pixsearch.db")
LOCK_FILE = ".pixsearch-writer.lock"
SETTINGS_TABLE = "settings"
_SETTINGS_SCHEMA = pa.schema(
    [pa.field("key", pa.string(), nullable=False), pa.field("value", pa.string(), nullable=False)]
)
KEEP_OLD_VERSIONS_FOR = timedelta(minutes=2)
"""Old table versions younger than this survive a clean-up, so that a reader that opened one
just before a write can finish its query."""
_SCALAR_INDEXES = {
    "restricted": "Bitmap",
    "format": "Bitmap",
    "path": "BTree",
    "id": "BTree",
    "width": "BTree",
    "content_hash": "BTree",
}
"""Scalar indexes on the filter and lookup columns, built once the table has rows (``width``:
a ``width >= 3000`` prefilter at 100k rows took 17-21 ms p50 with it, 29 ms without; ``path``
and ``content_hash``: a batch job's plan looks rows up by path range and by content)."""
_LOOKUP_COLUMNS = ("id", "path", "content_hash")
"""Columns a batch job's plan looks rows up by (see :meth:`PhotoStore.snapshot`)."""
VECTOR_INDEX_MIN_ROWS = 50_000
"""Tables with at least this many rows get an approximate vector index (IVF_HNSW_SQ) in
:meth:`PhotoStore.optimize`. Below it exact search is as fast: measured on 2 shared cores
(``benchmarks/query.py``), exact search takes ~20 ms at 10k rows (per-query overhead, the same
as an indexed query) but 110-230 ms at 100k rows, where the index answers in ~12 ms."""
VECTOR_INDEX_ROWS_PER_PARTITION = 8192
"""IVF partitions of the vector index: one per this many rows (at least 1, at most 1024)."""
SEARCH_NPROBES = 10
"""IVF partitions searched per query (recall@10 0.95 at 100k rows, filtered, see
docs/performance.md)."""
SEARCH_EF = 100
"""HNSW candidate list size per partition searched (at least the query's limit)."""
SEARCH_EF_LARGE = 300
"""``ef`` for tables of at least ``LARGE_TABLE_ROWS`` rows: on the ``benchmarks/query.py``
table at 1M rows, ef 100 gave recall@10 0.83 (post-filtered, 34 candidates) and ef 300 0.975
for +0.3 ms; at 100k rows ef 100 already gave 0.99 and ef 300 cost +2 ms."""
SEARCH_REFINE_FACTOR: int | None = None
"""Index searches re-rank their ``k x SEARCH_REFINE_FACTOR`` best candidates by the stored
vectors (None: the index's own distances)."""
LARGE_TABLE_ROWS = 500_000
EXACT_SEARCH_MAX_ROWS = 2_000
"""A filter matching at most this many rows is searched exactly (no vector index), so that a
very selective filter still gets its ``k`` best rows. Kept low because exact search costs about
the same whatever the filter: at 100k rows a filter leaving 4.5k rows took 61 ms exactly and
13 ms through the index at recall@10 0.985."""
POSTFILTER_MIN_SHARE = 0.25
"""A filter matching at least this share of the rows (the content policy's ``restricted =
false`` matches ~90%) is applied *after* an unfiltered index search that fetches
``k / share * POSTFILTER_OVERFETCH`` candidates: building a prefilter mask over every matching
row cost 20-60 ms per query at 1M rows, more than the search itself (7 ms). Post-filtering
672 candidates for a filter matching 4.5% of the rows gave recall@10 0.99 at 1M rows but 0.88
at 100k (deep candidate lists of the index get inaccurate), hence the floor: a selective
filter is prefiltered. When fewer than ``k`` candidates pass, the query runs again with the
prefilter, so ``k`` results still come back whenever ``k`` rows match."""
POSTFILTER_MIN_SHARE_LARGE = 0.02
"""The post-filter floor for tables of at least ``LARGE_TABLE_ROWS`` rows, where the prefilter
mask costs most: on the ``benchmarks/query.py`` table at 1M rows, filters matching 2.2%, 4.5%
and 9% of the rows took 73 / 70 / 57 ms prefiltered and 25 / 21 / 18 ms post-filtered (x3
candidates) at the same recall@10 (0.98 / 0.983 / 0.97). At 100k rows post-filtering the same
filters was slower (19-29 ms against 15-17) and less accurate (0.89-0.97 against 0.96-0.99),
so smaller tables keep ``POSTFILTER_MIN_SHARE``."""
POSTFILTER_OVERFETCH = 3
"""Candidates fetched per expected surviving result on the post-filter path."""
_SCHEMA_VERSION_KEY = "pixsearch.schema_version"
_VECTOR_INDEX_TRAINED_ROWS = "index.{table}.vector.trained_rows"
"""Setting: rows a table's vector index was trained on; it is retrained once the table doubles."""


class PhotoStore:
    """One pixsearch database: a folder (or object-store URI) holding the ``photos`` table.

    Readers never block; writers take :meth:`writer_lock` so that only one process writes.
    """

    def __init__(
        self,
        uri: str | Path,
        *,
        storage_options: dict[str, str] | None = None,
        table: str = TABLE_NAME,
    ):
        self.uri = str(uri)
        self.storage_options = storage_options
        self.table_name = table
        """The table this store reads and writes (``photos``; batch jobs use staging tables)."""
        self._db: Any = None
        self._table: Any = None
        self._reader = TableReader(self.uri, table, storage_options)
        self._settings_reader = TableReader(self.uri, SETTINGS_TABLE, storage_options)
        # Query-plan facts of table version ``_facts_version``: rows per filter (None = all).
        self._facts_cache: dict[str | None, int] = {}
        self._facts_version = -1
        self._indexed = False
        # The settings rows as of one version of their table (every search reads the policy).
        self._settings: tuple[int, dict[str, str]] = (-1, {})

    # -- connection -------------------------------------------------------------------------
    @property
    def is_local(self) -> bool:
        """True when the database is a folder on this machine (not ``s3://`` and the like)."""
        return "://" not in self.uri or self.uri.startswith("file://")

    @property
    def local_path(self) -> Path:
        """The folder of a local database (``file://`` stripped)."""
        return Path(self.uri.removeprefix("file://"))

    def exists(self) -> bool:
        """Whether there is a database here (always True for an object-store URI).

        A regular file where the folder should be raises ``DatabaseNotFoundError``.
        """
        if not self.is_local:
            return True
        path = self.local_path
        if path.exists() and not path.is_dir():
            raise DatabaseNotFoundError(
                f"{path} is a file, not a pixsearch database folder: give --db a folder "
                "(an existing database or a new one to create)"
            )
        return path.is_dir()

    def require(self) -> None:
        """Raise ``DatabaseNotFoundError`` (naming the path) unless there is a database here.

        Every read calls it (one ``stat``): a read of a mistyped ``--db`` names the path instead
        of answering "0 photos", and never creates the folder.
        """
        if not self.exists():
            raise DatabaseNotFoundError(
                f"there is no pixsearch database at {self.uri}: check --db (or "
                "$PIXSEARCH_DB), or create one with `pixsearch index PHOTOS`"
            )

    def _connect(self, *, create: bool = False) -> Any:
        """Connect; a local folder is made only when ``create`` (a read never makes one)."""
        if self._db is None:
            import lancedb  # writes only: a search never pays for importing LanceDB

            if not self.exists():
                if not create:
                    self.require()
                with _translated_errors(f"create the database folder {self.uri}"):
                    self.local_path.mkdir(parents=True, exist_ok=True)
            with _translated_errors(f"open the database at {self.uri}"):
                self._db = lancedb.connect(
                    self.uri,
                    # Every read sees the latest committed version, also one written by
                    # another process (an index run while a server searches).
                    read_consistency_interval=timedelta(0),
                    storage_options=self.storage_options,
                )
        return self._db

    def _open(self) -> Any | None:
        if self._table is None:
            db = self._connect()
            with _translated_errors(f"open the {self.table_name} table in {self.uri}"):
                if self.table_name not in db.list_tables().tables:
                    return None
                self._table = db.open_table(self.table_name)
        return self._table

    @property
    def table(self) -> Any:
        """The LanceDB table (for writes); raises ``DatabaseError`` when there is none yet."""
        table = self._open()
        if table is None:
            raise self._no_table()
        return table

    def _no_table(self) -> DatabaseError:
        return DatabaseError(
            f"no photos indexed in {self.uri} yet: run `pixsearch index PATH` first"
        )

    def table_info(self) -> TableInfo | None:
        """The table's metadata (bundle id, dims, schema version), or None without a table."""
        self.require()
        with _translated_errors(f"open the {self.table_name} table in {self.uri}"):
            schema = self._reader.schema()
        return None if schema is None else table_info(schema)

    def ensure_table(self, schema: pa.Schema) -> None:
        """Create the table with ``schema``, or check that the existing one is compatible and
        upgrade an older layout in place (callers hold the writer lock)."""
        expected = table_info(schema)
        self._connect(create=True)
        info = self.table_info()
        if info is None:
            with _translated_errors(f"create the photos table in {self.uri}"):
                self._table = self._connect(create=True).create_table(
                    self.table_name, schema=schema, exist_ok=True
                )
            return
        check_compatible(info, expected, self.uri)
        self.upgrade()

    def upgrade(self) -> bool:
        """Add the columns of newer schema versions to an older table (one commit each, no
        rewrite of the rows); True when something was added. Callers hold the writer lock."""
        table = self._open()
        if table is None:
            return False
        changed = False
        for version, columns in UPGRADES.items():
            missing = {name: sql for name, sql in columns.items() if name not in table.schema.names}
            if not missing:
                continue
            with _translated_errors(f"upgrade the {self.table_name} table to schema {version}"):
                table.add_columns(missing)
                for name in missing:
                    table.update_field_metadata(
                        {"path": name, "metadata": {_SCHEMA_VERSION_KEY: str(version)}}
                    )
            changed = True
        return changed

    # -- reads ------------------------------------------------------------------------------
    def count(self, where: str | None = None) -> int:
        """Number of rows, optionally of those matching a SQL predicate."""
        self.require()
        with _translated_errors("count rows"):
            return self._reader.count(where)

    def scan(self, columns: Sequence[str], where: str | None = None) -> pa.Table:
        """Read whole columns (optionally filtered) as an Arrow table."""
        self.require()
        with _translated_errors("read the photos table"):
            return self._reader.scan(columns, where)

    def search(
        self,
        vector: np.ndarray,
        *,
        k: int,
        where: str | None = None,
        extra_columns: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """The ``k`` rows nearest to ``vector`` (cosine) among those matching ``where``.

        ``k`` results come back whenever ``k`` rows match, and nothing that fails the filter is
        ever returned. How the filter is applied depends on how many rows it matches (counted
        once per table version): at most ``EXACT_SEARCH_MAX_ROWS`` -> exact search among them;
        at least ``POSTFILTER_MIN_SHARE`` of the table (``POSTFILTER_MIN_SHARE_LARGE`` from
        ``LARGE_TABLE_ROWS`` rows) -> index search, then the filter (with a prefiltered retry if
        fewer than ``k`` pass); otherwise a prefiltered index search.
        Each row has a ``score`` = cosine similarity; ``extra_columns`` (e.g. ``features``)
        are returned too, vector columns as one numpy array per row (building Python lists of
        1280 floats per row tripled the time of fetching 50 rows with their features).
        """
        columns = [*RESULT_COLUMNS, *extra_columns]
        vector = np.asarray(vector, dtype=np.float32)
        self.require()
        with _translated_errors("search the photos table"):
            table = self._reader.dataset()
            if table is None:
                raise self._no_table()
            self._refresh_plan_facts(table)
            plan = self._plan(table, where)
            large = plan != "flat" and self._facts_cache[None] >= LARGE_TABLE_ROWS
            ef = SEARCH_EF_LARGE if large else SEARCH_EF
            found = None
            if plan == "postfilter":
                share = self._matching_rows(table, where) / max(1, self._facts_cache[None])
                limit = math.ceil(k / share * POSTFILTER_OVERFETCH)
                candidates = self._nearest(vector, columns, limit, "index", ef, where, False)
                if candidates.num_rows >= k:
                    found = candidates.slice(0, k)
            if found is None:
                mode = "index" if plan == "postfilter" else plan
                found = self._nearest(vector, columns, k, mode, ef, where, True)
        arrays = {
            name: _rows_as_numpy(found.column(name))
            for name in extra_columns
            if pa.types.is_fixed_size_list(found.schema.field(name).type)
        }
        rows = found.drop_columns(list(arrays)).to_pylist()
        for name, matrix in arrays.items():
            for row, values in zip(rows, matrix, strict=True):
                row[name] = values
        for row in rows:
            row["score"] = 1.0 - float(row.pop("_distance"))
        return rows

    def _nearest(
        self,
        vector: np.ndarray,
        columns: list[str],
        limit: int,
        plan: str,
        ef: int,
        where: str | None,
        prefilter: bool,
    ) -> pa.Table:
        """One vector query of ``plan`` ("index", "exact", "flat"), ``_distance`` included."""
        return self._reader.nearest(
            vector,
            columns,
            limit,
            plan=plan,
            nprobes=SEARCH_NPROBES,
            ef=ef,
            where=where,
            prefilter=prefilter,
            refine_factor=SEARCH_REFINE_FACTOR,
        )

    def _plan(self, table: Any, where: str | None) -> str:
        """How to run a query: "flat" (no vector index), "exact" (bypass the index),
        "postfilter" (index search, then the filter) or "index" (prefiltered index search)."""
        if not self._indexed:
            return "flat"
        if not where:
            return "index"
        matching = self._matching_rows(table, where)
        if matching <= EXACT_SEARCH_MAX_ROWS:
            return "exact"
        rows = self._facts_cache[None]
        floor = POSTFILTER_MIN_SHARE_LARGE if rows >= LARGE_TABLE_ROWS else POSTFILTER_MIN_SHARE
        if matching >= floor * rows:
            return "postfilter"
        return "index"

    def _refresh_plan_facts(self, table: Any) -> None:
        """Re-read what a query plan needs (vector index present, row count) when the table's
        version changed since the last query; otherwise keep them and the filter counts."""
        version = int(table.version)
        if self._facts_version != version:
            self._indexed = self._reader.has_vector_index()
            self._facts_cache = {None: int(table.count_rows())}
            self._facts_version = version

    def _matching_rows(self, table: Any, where: str) -> int:
        """Rows matching ``where``, counted once per table version (a range count cost ~20 ms
        at 1M rows); call ``_refresh_plan_facts`` first."""
        if where not in self._facts_cache:
            self._facts_cache[where] = int(table.count_rows(where))
        return self._facts_cache[where]

    def rows_by_id(self, ids: Sequence[str], columns: Sequence[str]) -> pa.Table:
        """Rows whose ``id`` is in ``ids`` (in table order)."""
        if not ids:
            return pa.table({name: [] for name in columns})
        return self.scan(columns, where=f"id IN ({', '.join(_quote(i) for i in ids)})")

    # -- writes -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def writer_lock(self, *, wait_seconds: float = 0.0, create: bool = True) -> Iterator[None]:
        """Hold the single-writer lock; ``DatabaseLockedError`` if another process has it.

        Object-store databases have no lock file: a writer holds a lease object there
        (:class:`pixsearch.db.lease.WriterLease`), and another writer is refused with
        ``ConcurrentWriteError`` (a ``DatabaseLockedError``). Without ``create`` a missing
        database raises ``DatabaseNotFoundError``.
        """
        if not self.is_local:
            from pixsearch.db.lease import WriterLease

            lease = WriterLease(self.uri, self.storage_options, purpose=f"write {self.table_name}")
            lease.acquire(wait_seconds)
            try:
                yield
            finally:
                lease.release()
            return
        from filelock import FileLock, Timeout

        if not create:
            self.require()
        self._connect(create=True)
        lock = FileLock(os.path.join(self.local_path, LOCK_FILE))
        try:
            lock.acquire(timeout=wait_seconds)
        except Timeout as error:
            raise DatabaseLockedError(
                f"another pixsearch process is writing to {self.uri}; wait for it to finish "
                "(or pass --wait SECONDS) and run again"
            ) from error
        except OSError as error:
            raise DatabaseError(f"cannot take the writer lock in {self.uri}: {error}") from error
        try:
            yield
        finally:
            lock.release()

    def upsert(self, rows: pa.Table) -> None:
        """Insert rows, replacing any with the same ``id`` (one atomic commit)."""
        if rows.num_rows == 0:
            return
        with _translated_errors("write photos"):
            (
                self.table.merge_insert("id")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute(rows)
            )

    def add(self, rows: pa.Table) -> None:
        """Append rows without looking for existing ids (one commit; callers skip known ids)."""
        if rows.num_rows == 0:
            return
        with _translated_errors("write photos"):
            self.table.add(rows)

    def delete_ids(self, ids: Sequence[str], *, chunk: int = 500) -> int:
        """Delete rows by id; returns how many ids were asked for."""
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk]
            with _translated_errors("delete photos"):
                self.table.delete(f"id IN ({', '.join(_quote(i) for i in part)})")
        return len(ids)

    def update_where(self, where: str | None, values: dict[str, Any]) -> None:
        """Set columns to constant values on matching rows (e.g. re-scored policy fields)."""
        with _translated_errors("update photos"):
            self.table.update(where=where, values=values)

    def replace_all(self, rows: pa.Table | pa.RecordBatchReader, schema: pa.Schema) -> None:
        """Atomically replace the whole table (new bundle): readers see old or new, never half.

        ``rows`` may be a stream (:meth:`batches` of a staging table): it is written without
        being held in memory, and committed once at the end.
        """
        data = rows.cast(schema) if isinstance(rows, pa.Table) else rows
        with _translated_errors(f"rewrite the {self.table_name} table"):
            self._table = self._connect(create=True).create_table(
                self.table_name, data=data, schema=schema, mode="overwrite"
            )

    # -- distributed writes (workers write fragments, the job's driver commits) -------------
    def fragment_writer(self) -> FragmentWriter:
        """A picklable writer of uncommitted fragments of this (existing) table."""
        schema = self._reader.schema()
        if schema is None:
            raise self._no_table()
        return FragmentWriter(self._reader.path, schema, self.storage_options)

    def shard_marks(self, job: str) -> ShardMarks:
        """The done marks of job ``job``'s shards written into this table (see ShardMarks)."""
        base = self.uri.rstrip("/") if not self.is_local else str(self.local_path)
        folder = f"{base}/{SHARD_MARKS}/{self.table_name}/{job}"
        return ShardMarks(folder, self.storage_options)

    def commit_fragments(self, fragments: Sequence[str], replaced_ids: Sequence[str] = ()) -> int:
        """Commit fragments written by :meth:`fragment_writer` (one version), deleting the rows
        of ``replaced_ids`` in the same commit; returns the new version."""
        with _translated_errors(f"commit rows to the {self.table_name} table"):
            return commit_fragments(
                self._reader.path,
                fragments,
                replaced_ids=replaced_ids,
                storage_options=self.storage_options,
            )

    def overwrite_with_fragments(
        self, fragments: Sequence[str], schema: pa.Schema, *, expected_version: int
    ) -> None:
        """Replace the table by fragments written into it (one commit), unless another writer
        committed after ``expected_version`` (``ConcurrentWriteError``)."""
        with _translated_errors(f"rewrite the {self.table_name} table"):
            overwrite_with_fragments(
                self._reader.path,
                fragments,
                schema,
                expected_version=expected_version,
                storage_options=self.storage_options,
            )
        self._table = None

    def snapshot(self, *, index_min_rows: int = 1) -> Snapshot:
        """The table as of now, pinned (:class:`pixsearch.db.snapshot.Snapshot`); its lookup
        columns are indexed first when it has ``index_min_rows`` rows or more and an index on
        them is missing (a smaller table is read whole faster than it is indexed)."""
        self.ensure_lookup_indexes(min_rows=index_min_rows)
        return Snapshot(self.dataset_path, self.version(), self.storage_options)

    def ensure_lookup_indexes(self, *, min_rows: int = 1) -> None:
        """Build the ``id``, ``path`` and ``content_hash`` indexes of a table that has rows
        (``min_rows`` or more) but not those indexes (a table from an older pixsearch, or one
        rewritten since)."""
        table = self._open()
        if table is None:
            return
        with _translated_errors(f"index the {self.table_name} table"):
            if table.count_rows() < max(1, min_rows):
                return
            from lancedb import index as configs

            existing = {tuple(index.columns) for index in table.list_indices()}
            for column in _LOOKUP_COLUMNS:
                if (column,) not in existing:
                    table.create_index(column, config=configs.BTree())

    def fragment_ids(self) -> list[int]:
        """The ids of the table's committed fragments (units of a distributed copy)."""
        dataset = self._reader.dataset()
        return [] if dataset is None else [f.fragment_id for f in dataset.get_fragments()]

    @property
    def dataset_path(self) -> str:
        """``<db>/<table>.lance``: where the table's files are."""
        return self._reader.path

    def batches(self, columns: Sequence[str] | None = None) -> pa.RecordBatchReader:
        """Stream the whole table (optionally some columns) as Arrow record batches."""
        self.require()
        with _translated_errors(f"read the {self.table_name} table"):
            if self._reader.dataset() is None:
                raise self._no_table()
            return self._reader.batches(columns)

    def drop(self) -> None:
        """Delete this store's table (and its files) if it exists."""
        db = self._connect()
        with _translated_errors(f"drop the {self.table_name} table"):
            if self.table_name in db.list_tables().tables:
                db.drop_table(self.table_name)
        self._table = None

    def optimize(self, *, vector_index_min_rows: int = VECTOR_INDEX_MIN_ROWS) -> None:
        """Compact files, refresh indexes, drop old versions; build scalar indexes once.

        From ``vector_index_min_rows`` rows on, the table gets a vector index (IVF_HNSW_SQ,
        cosine); new rows are added to it here, and it is retrained once the table has doubled
        since its training.
        """
        table = self._open()
        if table is None:
            return
        with _translated_errors("optimize the photos table"):
            rows = table.count_rows()
            if rows == 0:
                return
            from lancedb import index as configs

            existing = {tuple(index.columns) for index in table.list_indices()}
            for column, config in _SCALAR_INDEXES.items():
                if (column,) not in existing:
                    table.create_index(column, config=getattr(configs, config)())
            trained_key = _VECTOR_INDEX_TRAINED_ROWS.format(table=self.table_name)
            trained = int(self.get_setting(trained_key) or 0)
            has_index = ("vector",) in existing
            if rows >= vector_index_min_rows and (not has_index or rows >= 2 * trained):
                partitions = min(1024, max(1, rows // VECTOR_INDEX_ROWS_PER_PARTITION))
                table.create_index(
                    "vector",
                    config=configs.IvfHnswSq(distance_type="cosine", num_partitions=partitions),
                    replace=True,
                )
                self.set_setting(trained_key, str(rows))
            table.optimize(cleanup_older_than=KEEP_OLD_VERSIONS_FOR)

    def index_health(self, *, vector_index_min_rows: int = VECTOR_INDEX_MIN_ROWS) -> dict[str, str]:
        """Each index the table should have -> ``present``, ``missing`` or ``stale``.

        Stale: rows committed after the index was last updated (a run killed between its last
        commit and :meth:`optimize`), or a vector index trained on less than half the rows.
        The vector index is expected from ``vector_index_min_rows`` rows on; an empty table (or
        none) expects nothing. :meth:`optimize` makes every entry ``present``.
        """
        with _translated_errors(f"read the indexes of the {self.table_name} table"):
            dataset = self._reader.dataset()  # a metadata read: no LanceDB import for `info`
            rows = 0 if dataset is None else int(dataset.count_rows())
            if rows == 0:
                return {}
            found = {tuple(index.field_names): index.name for index in dataset.describe_indices()}
            expected = list(_SCALAR_INDEXES)
            if rows >= vector_index_min_rows or ("vector",) in found:
                expected.append("vector")
            health = {}
            for column in expected:
                name = found.get((column,))
                if name is None:
                    health[column] = "missing"
                    continue
                unindexed = int(dataset.stats.index_stats(name).get("num_unindexed_rows") or 0)
                health[column] = "stale" if unindexed else "present"
        if health.get("vector") == "present" and rows >= vector_index_min_rows:
            key = _VECTOR_INDEX_TRAINED_ROWS.format(table=self.table_name)
            if rows >= 2 * int(self.get_setting(key) or 0):
                health["vector"] = "stale"
        return health

    def has_vector_index(self) -> bool:
        """True when the ``vector`` column has an approximate index."""
        self.require()
        with _translated_errors(f"read the indexes of the {self.table_name} table"):
            return self._reader.has_vector_index()

    # -- settings ---------------------------------------------------------------------------
    def get_setting(self, key: str) -> str | None:
        """A database-level setting (e.g. the default policy profile), or None when unset.

        The (small) settings table is read once per version of it and kept, so a search pays
        one version check instead of opening and querying the table (7 ms per search on 2
        cores); a setting written by another process is seen at the next call.
        """
        self.require()
        with _translated_errors("read the database settings"):
            settings = self._settings_reader.dataset()
            if settings is None:
                return None
            version = int(settings.version)
            if self._settings[0] != version:
                rows = settings.to_table(columns=["key", "value"]).to_pylist()
                self._settings = (version, {row["key"]: row["value"] for row in rows})
        return self._settings[1].get(key)

    def set_setting(self, key: str, value: str) -> None:
        """Store a database-level setting (one atomic upsert)."""
        db = self._connect(create=True)
        row = pa.table({"key": [key], "value": [value]}, schema=_SETTINGS_SCHEMA)
        with _translated_errors("write the database settings"):
            table = db.create_table(SETTINGS_TABLE, schema=_SETTINGS_SCHEMA, exist_ok=True)
            table.merge_insert(
                "key"
            ).when_matched_update_all().when_not_matched_insert_all().execute(row)

    def version(self) -> int:
        """The table's current version number (0 without a table)."""
        self.require()
        with _translated_errors(f"read the version of the {self.table_name} table"):
            return self._reader.version()


def check_compatible(found: TableInfo, expected: TableInfo, uri: str) -> None:
    """Refuse a table from a newer pixsearch, or one built with another model bundle."""
    if found.schema_version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"the database at {uri} was written by a newer pixsearch (table schema "
            f"{found.schema_version}, this one reads up to {SCHEMA_VERSION}); upgrade pixsearch "
            "to open it. Nothing was changed."
        )
    if found.bundle_id != expected.bundle_id or found.vector_dim != expected.vector_dim:
        raise BundleMismatchError(
            f"the database at {uri} was built with model bundle {found.bundle_id!r} "
            f"({found.space}, {found.vector_dim}-d), but this pixsearch uses "
            f"{expected.bundle_id!r} ({expected.space}, {expected.vector_dim}-d); run "
            f"`pixsearch reindex --db {uri}` to re-encode it"
        )


def _rows_as_numpy(column: pa.ChunkedArray) -> np.ndarray:
    """A fixed-size-list column as a ``[rows, size]`` numpy array."""
    array = column.combine_chunks()
    return array.values.to_numpy(zero_copy_only=False).reshape(len(array), array.type.list_size)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@contextlib.contextmanager
def _translated_errors(action: str) -> Iterator[None]:
    """Turn storage failures (disk full, read-only folder, corrupt files) into DatabaseError.

    The message keeps what a user can act on; the raw error (with Rust source locations) stays
    the exception's ``__cause__`` and is logged at DEBUG level (``pixsearch.db``).
    """
    try:
        yield
    except (DatabaseError, KeyboardInterrupt):
        raise
    except (OSError, RuntimeError, ValueError) as error:
        _log.debug("could not %s", action, exc_info=error)
        raise DatabaseError(f"could not {action}: {readable_error(error)}") from error
