"""One version of a table, read by key ranges: what a batch job's plan compares a listing with.

A :class:`Snapshot` (picklable: it travels to batch workers) pins a table at the version the
job planned from, so the rows the job commits meanwhile never enter its lookups (and never
slow them: the pinned version's rows are the indexed ones). Each lookup reads only the
columns asked for, of the rows in a ``path`` range (the rows under one chunk of a sorted
listing) or with given content hashes (is this photo's content stored already?), through the
table's scalar indexes (``path``, ``content_hash``: :data:`pixsearch.db.store._SCALAR_INDEXES`).
Nothing proportional to the table is ever held.

>>> import tempfile, lancedb, pyarrow as pa
>>> folder = tempfile.mkdtemp()
>>> rows = {"id": ["a", "b", "c"], "path": ["/p/1.jpg", "/p/2.jpg", "/q/3.jpg"],
...         "content_hash": ["h1", "h2", "h1"]}
>>> table = lancedb.connect(folder).create_table("photos", pa.table(rows))
>>> snap = Snapshot(f"{folder}/photos.lance", 1)
>>> table.add(pa.table({"id": ["d"], "path": ["/p/4.jpg"], "content_hash": ["h4"]}))
AddResult(version=2)
>>> snap.rows_in_range(["id"], "/p/", "/p0").column("id").to_pylist()  # d came after
['a', 'b']
>>> "h1" in snap, "h4" in snap
(True, False)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

LOOKUP_CACHE = 4096
"""Content hashes whose answer (stored or not) a snapshot remembers (the most recent)."""
INDEX_CACHE_BYTES = 64 << 20
"""Lance's cache of index pages for a snapshot's point lookups (a content hash, ids; its default
is sized for searches, gigabytes): lookups come in any order, so pages read once may serve
again; at most this much is kept."""
RANGE_INDEX_CACHE_BYTES = 4 << 20
"""The same cache for the plan's range reads: a plan reads the ``path`` index forward, chunk
by chunk, so a page it read is never read again. With the lookups' 64 MB, that cache filled
with pages never read again (~70 bytes per photo planned, full at ~0.9M photos): a re-run's
driver grew 100k -> 1M photos by the cache's size (docs/scale-out.md)."""
METADATA_CACHE_BYTES = 16 << 20
"""Lance's cache of file and fragment metadata, per dataset of a snapshot (its default size is
a search's): it grows with the data files a plan touches (~50 KB per 10 000-row file
measured), i.e. with the table; capped, a plan stays flat (docs/scale-out.md)."""


class Snapshot:
    """The table at ``path`` (``<db>/<table>.lance``) as of ``version`` (0: no table yet)."""

    def __init__(
        self, path: str, version: int, storage_options: dict[str, str] | None = None
    ) -> None:
        self.path, self.version, self.storage_options = path, version, storage_options
        self._dataset: Any = None
        self._range_dataset: Any = None
        self._lock = threading.Lock()
        self._known: OrderedDict[str, bool] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "version": self.version, "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["version"], state["storage_options"])  # type: ignore[misc]

    def dataset(self) -> Any | None:
        """The pinned ``lance.LanceDataset`` of point lookups (opened once), None for version 0."""
        return self._open("_dataset", INDEX_CACHE_BYTES)

    def _ranges(self) -> Any | None:
        """The pinned dataset of forward range reads: its own small index cache."""
        return self._open("_range_dataset", RANGE_INDEX_CACHE_BYTES)

    def _open(self, attribute: str, index_cache_bytes: int) -> Any | None:
        if self.version == 0:
            return None
        with self._lock:
            if getattr(self, attribute) is None:
                import lance

                dataset = lance.dataset(
                    self.path,
                    version=self.version,
                    storage_options=self.storage_options,
                    index_cache_size_bytes=index_cache_bytes,
                    metadata_cache_size_bytes=METADATA_CACHE_BYTES,
                )
                setattr(self, attribute, dataset)
            return getattr(self, attribute)

    def cache_bytes(self) -> int:
        """What Lance's caches of this snapshot's datasets hold now (bytes)."""
        opened = (d for d in (self._dataset, self._range_dataset) if d is not None)
        return sum(int(d.session().size_bytes()) for d in opened)

    def scan(
        self, columns: Sequence[str], where: str | None = None, *, ranges: bool = False
    ) -> pa.Table:
        """``columns`` of the rows matching ``where`` (empty columns without a table); with
        ``ranges``, through the dataset of forward range reads."""
        dataset = self._ranges() if ranges else self.dataset()
        if dataset is None:
            return pa.table({name: pa.array([], pa.string()) for name in columns})
        return dataset.to_table(columns=list(columns), filter=where)

    def batches(
        self, columns: Sequence[str], where: str | None, batch_size: int
    ) -> Iterator[pa.RecordBatch]:
        """``columns`` of the rows matching ``where``, streamed in batches of ``batch_size``."""
        dataset = self._ranges()
        if dataset is None:
            return
        scanner = dataset.scanner(columns=list(columns), filter=where, batch_size=batch_size)
        yield from scanner.to_reader()

    def rows_in_range(
        self,
        columns: Sequence[str],
        low: str,
        high: str,
        *,
        low_inclusive: bool = True,
        high_inclusive: bool = False,
    ) -> pa.Table:
        """Rows whose ``path`` lies between ``low`` and ``high`` (one chunk of a listing)."""
        where = (
            f"path {'>=' if low_inclusive else '>'} {quote(low)} AND "
            f"path {'<=' if high_inclusive else '<'} {quote(high)}"
        )
        return self.scan(columns, where, ranges=True)

    def rows_by_content(self, hashes: Sequence[str], columns: Sequence[str]) -> pa.Table:
        """Rows whose ``content_hash`` is one of ``hashes``."""
        if not hashes:
            return pa.table({name: pa.array([], pa.string()) for name in columns})
        return self.scan(columns, f"content_hash IN ({', '.join(quote(h) for h in hashes)})")

    def __contains__(self, content_hash: object) -> bool:
        """True when a row of the snapshot has this content hash (one indexed lookup; the last
        ``LOOKUP_CACHE`` answers are remembered: many copies of one photo cost one)."""
        if not isinstance(content_hash, str) or self.version == 0:
            return False
        with self._lock:
            if content_hash in self._known:
                self._known.move_to_end(content_hash)
                return self._known[content_hash]
        dataset = self.dataset()
        found = dataset is not None and (
            dataset.count_rows(filter=f"content_hash = {quote(content_hash)}") > 0
        )
        with self._lock:
            self._known[content_hash] = found
            if len(self._known) > LOOKUP_CACHE:
                self._known.popitem(last=False)
        return found


def quote(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"
