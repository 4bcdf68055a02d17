"""Read a table of a pixsearch database through the Lance format library, without LanceDB.

Writes go through LanceDB (:class:`pixsearch.db.store.PhotoStore`); every read (searches,
counts, scans, settings) goes through ``lance`` (the ``pylance`` package) directly. Both read
and write the same files (``<db>/<table>.lance``), so nothing is converted. Why:
``import lancedb`` 0.40 costs ~1.9 s, of which ~1.8 s is a generated REST client for
namespaces that pixsearch never uses, while ``import lance`` costs ~0.3 s; a cold
``pixsearch search`` is mostly imports (docs/performance.md, fourth round).

Each read first checks out the latest committed version (0.05 ms when nothing changed), so a
reader sees every write committed before it, also by another process, as LanceDB did with
``read_consistency_interval=0``.

>>> import tempfile, lancedb, pyarrow as pa
>>> folder = tempfile.mkdtemp()
>>> reader = TableReader(folder, "photos")
>>> reader.dataset() is None
True
>>> _ = lancedb.connect(folder).create_table("photos", pa.table({"id": ["a", "b"]}))
>>> reader.count(), reader.count("id = 'b'")
(2, 1)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

os.environ.setdefault("LANCE_LOG", "error")  # quiet Lance's stderr unless asked

import lance


class TableReader:
    """Reads of one Lance table (``<uri>/<name>.lance``), always at its latest version.

    ``dataset()`` is None while the table does not exist; it is looked for again at the next
    call, so a table created (or dropped) by another process is seen.
    """

    def __init__(self, uri: str, name: str, storage_options: dict[str, str] | None = None):
        self.uri = uri
        self.name = name
        self.storage_options = storage_options
        self._dataset: Any = None

    @property
    def path(self) -> str:
        """Where the table lives: ``<uri>/<name>.lance`` (the layout LanceDB writes)."""
        if "://" in self.uri and not self.uri.startswith("file://"):
            return f"{self.uri.rstrip('/')}/{self.name}.lance"
        return str(Path(self.uri.removeprefix("file://"), f"{self.name}.lance"))

    def dataset(self) -> Any | None:
        """The ``lance.LanceDataset`` at its latest version, or None without a table."""
        if self._dataset is not None:
            try:
                self._dataset.checkout_latest()
                return self._dataset
            except (OSError, RuntimeError, ValueError):
                self._dataset = None  # dropped or rewritten under us: open it again
        local = "://" not in self.uri or self.uri.startswith("file://")
        if local and not os.path.isdir(os.path.join(self.path, "_versions")):
            return None
        try:
            self._dataset = lance.dataset(self.path, storage_options=self.storage_options)
        except ValueError as error:
            if "not found" in str(error).lower():
                return None
            raise
        return self._dataset

    def version(self) -> int:
        """The latest version number (0 without a table)."""
        dataset = self.dataset()
        return 0 if dataset is None else int(dataset.version)

    def schema(self) -> pa.Schema | None:
        """The table's Arrow schema with its metadata, or None without a table."""
        dataset = self.dataset()
        return None if dataset is None else dataset.schema

    def count(self, where: str | None = None) -> int:
        """Rows, optionally only those matching a SQL predicate (0 without a table)."""
        dataset = self.dataset()
        if dataset is None:
            return 0
        return int(dataset.count_rows(where) if where else dataset.count_rows())

    def scan(self, columns: Sequence[str], where: str | None = None) -> pa.Table:
        """Whole columns, optionally of the rows matching ``where``, in table order."""
        dataset = self.dataset()
        if dataset is None:
            return pa.table({name: [] for name in columns})
        return dataset.to_table(columns=list(columns), filter=where)

    def batches(self, columns: Sequence[str] | None = None) -> pa.RecordBatchReader:
        """Stream the table (optionally some columns) as Arrow record batches."""
        dataset = self.dataset()
        if dataset is None:
            raise ValueError(f"{self.path} was not found")
        return dataset.scanner(columns=None if columns is None else list(columns)).to_reader()

    def has_vector_index(self, column: str = "vector") -> bool:
        """Whether ``column`` has a vector index (a metadata read)."""
        dataset = self.dataset()
        if dataset is None:
            return False
        return any(
            list(index.field_names) == [column] and _is_vector_index(index.index_type)
            for index in dataset.describe_indices()
        )

    def nearest(
        self,
        vector: np.ndarray,
        columns: Sequence[str],
        limit: int,
        *,
        plan: str,
        nprobes: int,
        ef: int,
        where: str | None = None,
        prefilter: bool = True,
        refine_factor: int | None = None,
    ) -> pa.Table:
        """The ``limit`` rows nearest to ``vector`` (cosine), with a ``_distance`` column.

        ``plan``: "index" (``nprobes`` IVF partitions, ``ef`` HNSW candidates), "exact" (the index
        bypassed) or "flat" (a table without a vector index). ``where`` is applied before
        the search (``prefilter``) or to its ``limit`` candidates (so fewer may come back).
        ``refine_factor`` (index plan only): the index's ``limit x refine_factor`` best
        candidates are re-ranked by their stored vectors (exact distances).
        """
        dataset = self.dataset()
        if dataset is None:
            raise ValueError(f"{self.path} was not found")
        nearest: dict[str, Any] = {
            "column": "vector",
            "q": np.asarray(vector, dtype=np.float32),
            "k": limit,
            "metric": "cosine",
            "use_index": plan != "exact",
        }
        if plan == "index":
            candidates = limit * (refine_factor or 1)  # what the index itself returns
            nearest.update(minimum_nprobes=nprobes, maximum_nprobes=nprobes, ef=max(ef, candidates))
            if refine_factor:
                nearest["refine_factor"] = refine_factor
        return dataset.to_table(
            # ``_distance`` by name: Lance adds it to a column selection only by a deprecated
            # default (and warns about it on stderr per query).
            columns=[*columns, "_distance"],
            nearest=nearest,
            filter=where,
            prefilter=prefilter if where else None,
        )


def _is_vector_index(index_type: str) -> bool:
    """Whether a Lance index type names a vector index (``IVF_HNSW_SQ``, ``IVF_PQ``, ...)."""
    return index_type.upper().startswith(("IVF", "HNSW", "FLAT", "PQ"))
