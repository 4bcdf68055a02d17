"""Filters are validated values, never executed SQL."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from pixsearch.db.errors import InvalidInputError
from pixsearch.db.filters import FILTER_FIELDS, Filter, combine, parse_filter
from pixsearch.db.schema import photo_schema
from pixsearch.db.store import PhotoStore

HOSTILE = ["' OR 1=1 --", '"; DROP TABLE photos; --', "back\\slash", "it's", "%", "_", "a'b\"c"]


@pytest.mark.parametrize(
    ("text", "sql"),
    [
        ("width>=1000", "width >= 1000"),
        ("format = PNG", "format = 'PNG'"),
        ("format='JPEG'", "format = 'JPEG'"),
        ("restricted=false", "restricted = false"),
        ("child_score<0.5", "child_score < 0.5"),
        ("path~Holiday", "lower(path) LIKE '%holiday%' ESCAPE '\\'"),
    ],
)
def test_parse_filter_builds_quoted_sql(text: str, sql: str) -> None:
    assert parse_filter(text).to_sql() == sql


@pytest.mark.parametrize(
    ("field", "op", "value", "message"),
    [
        ("nope", "=", 1, "valid fields: path"),
        ("width", "=", "wide", "not a valid int"),
        ("width", "~", "1", "text fields"),
        ("restricted", ">", True, "use = or !="),
        ("path", "LIKE", "x", "valid operators"),
        ("path", "=", "a\x00b", "NUL"),
        ("child_score", "<", "nan", "not a valid float"),
    ],
)
def test_invalid_filters_are_rejected_with_help(field, op, value, message) -> None:
    with pytest.raises(InvalidInputError, match=message):
        Filter(field, op, value)


def test_unparseable_filter_lists_fields() -> None:
    with pytest.raises(InvalidInputError, match="fields: " + ", ".join(FILTER_FIELDS)):
        parse_filter("width")


def test_combine_ands_filters_and_internal_predicates() -> None:
    assert combine(["width>1", Filter("format", "=", "PNG")], "restricted = false") == (
        "(width > 1) AND (format = 'PNG') AND (restricted = false)"
    )
    assert combine([]) is None


@pytest.fixture
def store_with_hostile_paths(tmp_path) -> PhotoStore:
    schema = photo_schema(vector_dim=2, feature_dim=2, bundle_id="t", space="t")
    store = PhotoStore(tmp_path / "db")
    store.ensure_table(schema)
    paths = ["/p/normal.jpg", *[f"/p/{value}.jpg" for value in HOSTILE]]
    rows = [
        {
            "id": str(i),
            "path": path,
            "content_hash": str(i),
            "size": 1,
            "mtime_ns": 1,
            "width": 10,
            "height": 10,
            "format": "JPEG",
            "vector": [1.0, 0.0],
            "features": np.zeros(2, np.float16),
            "caption": None,
            "caption_source": "",
            "child_score": 0.0,
            "restricted": False,
            "indexed_at": datetime(2026, 1, 1, tzinfo=UTC),
        }
        for i, path in enumerate(paths)
    ]
    store.upsert(pa.Table.from_pylist(rows, schema=schema))
    return store


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_match_literally(store_with_hostile_paths: PhotoStore, value: str) -> None:
    store = store_with_hostile_paths
    exact = combine([Filter("path", "=", f"/p/{value}.jpg")])
    contains = combine([Filter("path", "~", value)])
    assert store.scan(["path"], where=exact).column("path").to_pylist() == [f"/p/{value}.jpg"]
    found = store.scan(["path"], where=contains).column("path").to_pylist()
    assert found and all(value.lower() in path.lower() for path in found)
    assert store.count() == 1 + len(HOSTILE)  # nothing was dropped or changed
