"""The automatic vector index: built by ``PhotoStore.optimize`` above a row count, used by
``PhotoStore.search`` with its filters applied before the search (prefilter)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from pixsearch.db import store as store_module
from pixsearch.db.schema import photo_schema
from pixsearch.db.store import PhotoStore

DIM = 16


def _rows(schema: pa.Schema, start: int, count: int) -> tuple[pa.Table, np.ndarray]:
    rng = np.random.default_rng(start)
    vectors = rng.normal(size=(count, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = range(start, start + count)
    table = pa.table(
        {
            "id": [f"{i:06d}" for i in ids],
            "path": [f"/p/{i}.jpg" for i in ids],
            "content_hash": [str(i) for i in ids],
            "size": [1] * count,
            "mtime_ns": [1] * count,
            "width": [4000 if i % 3 == 0 else 640 for i in ids],
            "height": [100] * count,
            "format": ["PNG" if i % 10 == 0 else "JPEG" for i in ids],
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIM),
            "features": pa.FixedSizeListArray.from_arrays(
                pa.array(np.zeros(count * 2, np.float16)), 2
            ),
            "caption": [None] * count,
            "caption_source": [""] * count,
            "child_score": [0.0] * count,
            "restricted": [i % 4 == 0 for i in ids],
            "indexed_at": [datetime(2026, 1, 1, tzinfo=UTC)] * count,
        },
        schema=schema,
    )
    return table, vectors


def _recorded_plans(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Exact search only up to 100 matching rows; returns the list each query's plan is
    appended to."""
    monkeypatch.setattr(store_module, "EXACT_SEARCH_MAX_ROWS", 100)
    plans: list[str] = []
    real_plan = PhotoStore._plan
    monkeypatch.setattr(
        PhotoStore, "_plan", lambda self, t, w: plans.append(real_plan(self, t, w)) or plans[-1]
    )
    return plans


@pytest.fixture
def store(tmp_path) -> tuple[PhotoStore, pa.Schema]:
    schema = photo_schema(vector_dim=DIM, feature_dim=2, bundle_id="t", space="t")
    store = PhotoStore(tmp_path / "db")
    store.ensure_table(schema)
    return store, schema


def test_small_table_gets_no_vector_index_by_default(store) -> None:
    photos, schema = store
    photos.add(_rows(schema, 0, 2000)[0])
    photos.optimize()
    assert not photos.has_vector_index()


def test_index_built_above_threshold_and_filtered_search_is_correct(store, monkeypatch) -> None:
    photos, schema = store
    rows, vectors = _rows(schema, 0, 2000)
    photos.add(rows)
    photos.optimize(vector_index_min_rows=1000)
    assert photos.has_vector_index()
    where = "(width >= 4000) AND (restricted = false)"
    # Through the index (no exact fallback for selective filters) and exactly.
    for exact_below in (0, store_module.EXACT_SEARCH_MAX_ROWS):
        monkeypatch.setattr(store_module, "EXACT_SEARCH_MAX_ROWS", exact_below)
        for i in (3, 9, 15, 21):  # rows that pass the filter: each must find itself first
            hits = photos.search(vectors[i], k=10, where=where)
            assert len(hits) == 10
            assert hits[0]["id"] == f"{i:06d}" and hits[0]["score"] == pytest.approx(1.0, abs=1e-3)
            assert all(h["width"] >= 4000 and not h["restricted"] for h in hits)
        # A row that fails the filter is never returned, even for its own vector.
        hits = photos.search(vectors[4], k=10, where=where)
        assert "000004" not in {h["id"] for h in hits}


def test_index_is_retrained_once_the_table_doubles(store) -> None:
    photos, schema = store
    photos.add(_rows(schema, 0, 1000)[0])
    photos.optimize(vector_index_min_rows=1000)
    key = store_module._VECTOR_INDEX_TRAINED_ROWS.format(table=photos.table_name)
    assert photos.get_setting(key) == "1000"
    photos.add(_rows(schema, 1000, 500)[0])
    photos.optimize(vector_index_min_rows=1000)  # new rows join the index, no retraining
    assert photos.get_setting(key) == "1000"
    photos.add(_rows(schema, 1500, 500)[0])
    photos.optimize(vector_index_min_rows=1000)
    assert photos.get_setting(key) == "2000"
    assert photos.has_vector_index() and photos.count() == 2000


def test_broad_filter_is_applied_after_the_index_search_and_still_returns_k(
    store, monkeypatch
) -> None:
    """A filter matching most rows (the policy's ``restricted = false``) is post-filtered and
    returns what exact search under the filter returns."""
    photos, schema = store
    rows, vectors = _rows(schema, 0, 2000)
    photos.add(rows)
    photos.optimize(vector_index_min_rows=1000)
    plans = _recorded_plans(monkeypatch)
    # 75% of rows pass: post-filtered; the same top 10 as exact search under the filter
    where = "restricted = false"
    exact = photos.table.search(vectors[1], vector_column_name="vector").distance_type("cosine")
    exact = exact.where(where, prefilter=True).bypass_vector_index().limit(10).to_arrow()
    hits = photos.search(vectors[1], k=10, where=where)
    assert plans[-1] == "postfilter"
    assert len(hits) == 10 and not any(h["restricted"] for h in hits)
    assert len({h["id"] for h in hits} & set(exact["id"].to_pylist())) >= 8
    # 25% pass (restricted rows only), asked near rows that fail it: k rows, all passing
    where = "restricted = true"
    for i in (1, 2, 5):
        hits = photos.search(vectors[i], k=30, where=where)
        assert len(hits) == 30 and all(h["restricted"] for h in hits)
    # a filter matching few rows is searched exactly
    hits = photos.search(vectors[0], k=5, where="id = '000000'")
    assert plans[-1] == "exact" and [h["id"] for h in hits] == ["000000"]


def test_selective_filter_is_post_filtered_only_on_large_tables(store, monkeypatch) -> None:
    """A filter matching 10% of the rows is prefiltered on a small table and post-filtered on a
    large one (there the prefilter mask costs more than fetching more candidates); both return
    k rows that all pass it."""
    photos, schema = store
    rows, vectors = _rows(schema, 0, 2000)
    photos.add(rows)
    photos.optimize(vector_index_min_rows=1000)
    plans = _recorded_plans(monkeypatch)
    where = "format = 'PNG'"  # every 10th row
    for large_from, plan in ((10**6, "index"), (1000, "postfilter")):
        monkeypatch.setattr(store_module, "LARGE_TABLE_ROWS", large_from)
        hits = photos.search(vectors[3], k=10, where=where)
        assert plans[-1] == plan
        assert len(hits) == 10 and all(h["format"] == "PNG" for h in hits)


def test_plan_facts_follow_new_versions(store) -> None:
    """Counts behind the plan are re-read after a write (another version)."""
    photos, schema = store
    photos.add(_rows(schema, 0, 1500)[0])
    photos.optimize(vector_index_min_rows=1000)
    photos.search(_rows(schema, 0, 1)[1][0], k=3, where="restricted = false")
    assert photos._facts_cache[None] == 1500
    photos.add(_rows(schema, 1500, 500)[0])
    photos.search(_rows(schema, 0, 1)[1][0], k=3, where="restricted = false")
    assert photos._facts_cache[None] == 2000


def test_search_prints_no_lance_warning_in_an_app_that_imported_lancedb_first(store) -> None:
    """LANCEDB_LOG / LANCE_LOG=error (set by pixsearch.db) only work before lancedb / lance
    start their loggers; an embedding app may import them first, so queries must not trigger
    warnings."""
    photos, schema = store
    photos.add(_rows(schema, 0, 300)[0])
    script = (
        "import lance, lancedb, numpy as np, sys\n"
        "from pixsearch.db.store import PhotoStore\n"
        "store = PhotoStore(sys.argv[1])\n"
        "v = np.ones(16, np.float32)\n"
        "rows = store.search(v, k=3) + store.search(v, k=3, where='restricted = false')\n"
        "print(len(rows), sum(r['restricted'] for r in rows[3:]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("LANCEDB_LOG", "LANCE_LOG")}
    done = subprocess.run(
        [sys.executable, "-c", script, photos.uri],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["6", "0"]
    assert "WARN" not in done.stderr, done.stderr
