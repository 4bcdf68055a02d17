"""Verify what a database can verify about itself: ``pixsearch check``.

:func:`check_store` reads the table's schema and metadata, compares them with what the installed
model bundle writes, lists its indexes, and streams every row in batches (a few columns at a
time, so one unreadable column does not hide the others): vectors must be finite and of unit
length, features and child scores finite. It never writes; repairs live in
``ImageSearch.check(repair=True)``, which re-encodes rows from their photos.

>>> import tempfile
>>> from pixsearch.db.schema import photo_schema
>>> store = PhotoStore(tempfile.mkdtemp())
>>> schema = photo_schema(vector_dim=2, feature_dim=3, bundle_id="b1", space="demo")
>>> store.ensure_table(schema)
>>> check_store(store, schema).ok
True
>>> print(check_store(store, photo_schema(vector_dim=2, feature_dim=3, bundle_id="b2",
...     space="demo")).summary())  # doctest: +ELLIPSIS
checked ...: 0 rows, 1 problem
  bundle: the database at ... was built with model bundle 'b1' ...
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from pixsearch.db.errors import DatabaseError, DatabaseNotFoundError
from pixsearch.db.schema import table_info
from pixsearch.db.store import (
    _SCALAR_INDEXES,
    VECTOR_INDEX_MIN_ROWS,
    PhotoStore,
    check_compatible,
    readable_error,
)

UNIT_TOLERANCE = 1e-3
"""How far a stored vector's length may be from 1 (float32 rounding is ~1e-7)."""
BATCH_ROWS = 4096
"""Rows read at a time: memory stays at a few MB whatever the table holds."""
_COLUMN_GROUPS = (
    ("id", "path", "content_hash"),
    ("id", "vector"),
    ("id", "features"),
    ("id", "child_score", "width", "height", "size", "mtime_ns", "format", "caption"),
    ("id", "restricted", "indexed_at"),
)
"""Columns read together; ``id`` with each, so that a bad value names its row."""


@dataclass
class Problem:
    """One thing wrong with a database."""

    kind: str
    """``missing``, ``metadata``, ``bundle``, ``schema``, ``index``, ``unreadable``, ``rows``."""
    message: str
    repairable: bool = False
    """``--repair`` can fix it (re-encode rows from their photos, rebuild an index)."""
    ids: list[str] = field(default_factory=list)
    """Rows concerned (``rows``: those whose vectors or features are bad)."""


@dataclass
class CheckReport:
    """What :func:`check_store` found; ``ok`` when nothing."""

    uri: str
    rows: int = 0
    """Rows the table says it holds."""
    problems: list[Problem] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    """What ``--repair`` did (one line each)."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """A short report: one line, then one per problem and per repair."""
        count = len(self.problems)
        head = f"checked {self.uri}: {self.rows} rows, "
        head += "no problems" if not count else f"{count} problem{'s' if count > 1 else ''}"
        lines = [head]
        lines += [f"  repaired: {line}" for line in self.repaired]
        lines += [f"  {problem.kind}: {problem.message}" for problem in self.problems]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (row ids of a problem are cut at 100)."""
        problems = [{**asdict(p), "ids": p.ids[:100]} for p in self.problems]
        return {
            "uri": self.uri,
            "ok": self.ok,
            "rows": self.rows,
            "problems": problems,
            "repaired": self.repaired,
        }


def check_store(store: PhotoStore, expected: pa.Schema | None = None) -> CheckReport:
    """Check ``store`` (against ``expected``, the schema the installed bundle writes).

    Raises ``DatabaseNotFoundError`` when there is no database at all; everything else found
    wrong is a :class:`Problem` in the report.
    """
    report = CheckReport(store.uri)
    try:
        table = store.table
    except DatabaseNotFoundError:
        raise
    except DatabaseError as error:
        report.problems.append(Problem("missing", str(error)))
        return report
    try:
        report.rows = store.count()
    except DatabaseError as error:
        report.problems.append(Problem("unreadable", f"cannot count the rows: {error}"))
    report.problems += _schema_problems(store, table.schema, expected)
    report.problems += _index_problems(table, report.rows)
    report.problems += _row_problems(store, report.rows)
    return report


def _schema_problems(store: PhotoStore, found: pa.Schema, expected: pa.Schema | None) -> list:
    problems = []
    try:
        info = table_info(found)
    except DatabaseError as error:
        problems.append(Problem("metadata", str(error)))
        info = None
    if expected is None:
        return problems
    if info is not None:
        try:
            check_compatible(info, table_info(expected), store.uri)
        except DatabaseError as error:
            problems.append(Problem("bundle", str(error)))
    for want in expected:
        if want.name not in found.names:
            problems.append(Problem("schema", f"column {want.name!r} is missing"))
        elif not found.field(want.name).type.equals(want.type):
            got = found.field(want.name).type
            problems.append(
                Problem("schema", f"column {want.name!r} is {got}, expected {want.type}")
            )
    return problems


def _index_problems(table: Any, rows: int) -> list[Problem]:
    if rows == 0:
        return []
    try:
        present = {tuple(index.columns) for index in table.list_indices()}
    except (OSError, RuntimeError, ValueError) as error:
        return [Problem("index", f"cannot list the indexes: {readable_error(error)}")]
    wanted = list(_SCALAR_INDEXES)
    if rows >= VECTOR_INDEX_MIN_ROWS:
        wanted.append("vector")
    return [
        Problem("index", f"no index on {column!r} (a table of {rows} rows has one)", True)
        for column in wanted
        if (column,) not in present
    ]


def _row_problems(store: PhotoStore, rows: int) -> list[Problem]:
    problems = []
    bad: dict[str, list[str]] = {}
    for columns in _COLUMN_GROUPS:
        seen = 0
        try:
            for batch in _batches(store, columns):
                seen += batch.num_rows
                for reason, ids in _bad_values(batch).items():
                    bad.setdefault(reason, []).extend(ids)
        except (DatabaseError, OSError, RuntimeError, ValueError, pa.ArrowException) as error:
            text = readable_error(error.__cause__ or error)
            names = ", ".join(c for c in columns if c != "id")
            problems.append(Problem("unreadable", f"columns {names}: {text}"))
            continue
        if seen != rows:
            names = ", ".join(c for c in columns if c != "id")
            problems.append(Problem("unreadable", f"read {seen} of {rows} rows of {names}"))
    for reason, ids in bad.items():
        ids = sorted(set(ids))
        problems.append(Problem("rows", f"{len(ids)} rows {reason}", True, ids))
    return problems


def _batches(store: PhotoStore, columns: tuple[str, ...]) -> Iterator[pa.RecordBatch]:
    reader = store.batches(list(columns))
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        for start in range(0, batch.num_rows, BATCH_ROWS):
            yield batch.slice(start, BATCH_ROWS)


def _bad_values(batch: pa.RecordBatch) -> dict[str, list[str]]:
    """Row ids with non-finite or non-unit vectors, non-finite features or child scores."""
    names = batch.schema.names
    ids = np.asarray(batch.column("id").to_pylist(), dtype=object)
    out: dict[str, list[str]] = {}
    if "vector" in names:
        vectors = _matrix(batch.column("vector"))
        with np.errstate(over="ignore", invalid="ignore"):
            norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64))
        wrong = ~np.isfinite(norms) | (np.abs(norms - 1.0) > UNIT_TOLERANCE)
        if wrong.any():
            out["have vectors that are not finite or not of unit length"] = list(ids[wrong])
    if "features" in names:
        wrong = ~np.isfinite(_matrix(batch.column("features"))).all(axis=1)
        if wrong.any():
            out["have features that are not finite"] = list(ids[wrong])
    if "child_score" in names:
        scores = batch.column("child_score").to_numpy(zero_copy_only=False)
        wrong = ~np.isfinite(scores)
        if wrong.any():
            out["have child scores that are not finite"] = list(ids[wrong])
    return out


def _matrix(column: pa.Array) -> np.ndarray:
    size = column.type.list_size
    return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), size)
