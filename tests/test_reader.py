"""The read path on ``lance`` (pylance): a search never imports LanceDB, and reads through
``lance`` return what LanceDB returns on the same table (same files, two libraries whose
versions are pinned together in pyproject.toml)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from helpers import copy_demo_photos

from pixsearch.db import store as store_module
from pixsearch.db.reader import TableReader
from pixsearch.db.schema import RESULT_COLUMNS, photo_schema
from pixsearch.db.store import SEARCH_NPROBES, PhotoStore
from pixsearch.search import ImageSearch

DIM = 16
FILTERS = [
    None,
    "restricted = false",  # 75%: post-filtered once indexed
    "(format = 'PNG') AND (restricted = false)",  # 7.5%: prefiltered
    "(width >= 4000) AND (restricted = false)",
    "id IN ('000003', '000007', '000011')",  # 3 rows: exact
    "lower(path) LIKE '%/1%'",
]


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
            "size": [i for i in ids],
            "mtime_ns": [1] * count,
            "width": [4000 if i % 3 == 0 else 640 for i in ids],
            "height": [100] * count,
            "format": ["PNG" if i % 10 == 0 else "JPEG" for i in ids],
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIM),
            "features": pa.FixedSizeListArray.from_arrays(
                pa.array(rng.normal(size=count * 2).astype(np.float16)), 2
            ),
            "caption": [None] * count,
            "caption_source": [""] * count,
            "child_score": [float(i % 7) / 7 for i in ids],
            "restricted": [i % 4 == 0 for i in ids],
            "indexed_at": [datetime(2026, 1, 1, tzinfo=UTC)] * count,
        },
        schema=schema,
    )
    return table, vectors


@pytest.fixture
def table(tmp_path: Path) -> tuple[PhotoStore, np.ndarray]:
    """A 2000-row photos table written through LanceDB (scalar indexes, no vector index)."""
    schema = photo_schema(vector_dim=DIM, feature_dim=2, bundle_id="t", space="t")
    store = PhotoStore(tmp_path / "db")
    store.ensure_table(schema)
    rows, vectors = _rows(schema, 0, 2000)
    store.add(rows)
    store.optimize()
    return store, vectors


def _lancedb_nearest(store: PhotoStore, vector, limit, *, plan, where, prefilter) -> pa.Table:
    """The query ``TableReader.nearest`` makes, written with LanceDB's query builder."""
    query = (
        store.table.search(vector, vector_column_name="vector")
        .distance_type("cosine")
        .select([*RESULT_COLUMNS, "_distance"])
        .limit(limit)
    )
    if plan == "exact":
        query = query.bypass_vector_index()
    elif plan == "index":
        query = query.nprobes(SEARCH_NPROBES).ef(max(store_module.SEARCH_EF, limit))
    if where:
        query = query.where(where, prefilter=prefilter)
    return query.to_arrow()


def _assert_same_hits(ours: pa.Table, theirs: pa.Table) -> None:
    assert ours.column("id").to_pylist() == theirs.column("id").to_pylist()
    np.testing.assert_allclose(
        ours.column("_distance").to_numpy(), theirs.column("_distance").to_numpy(), atol=1e-5
    )
    assert ours.drop_columns(["_distance"]).equals(
        theirs.select(ours.drop_columns(["_distance"]).column_names)
    )


@pytest.mark.parametrize("indexed", [False, True], ids=["no vector index", "IVF_HNSW_SQ"])
def test_lance_and_lancedb_return_the_same_rows(table, indexed: bool) -> None:
    """Every query shape a search makes (index / exact / flat, prefilter / post-filter, the
    filters of the policy and of users) gives the same rows and distances through both
    libraries, with and without the vector index."""
    store, vectors = table
    if indexed:
        store.optimize(vector_index_min_rows=1000)
    assert store.has_vector_index() is indexed
    reader = TableReader(store.uri, "photos")
    plans = ["index", "exact"] if indexed else ["flat"]
    for plan in plans:
        for where in FILTERS:
            for prefilter in (True, False) if where else (True,):
                for i in (0, 5, 1234):
                    ours = reader.nearest(
                        vectors[i],
                        RESULT_COLUMNS,
                        25,
                        plan=plan,
                        nprobes=SEARCH_NPROBES,
                        ef=store_module.SEARCH_EF,
                        where=where,
                        prefilter=prefilter,
                    )
                    theirs = _lancedb_nearest(
                        store, vectors[i], 25, plan=plan, where=where, prefilter=prefilter
                    )
                    _assert_same_hits(ours, theirs)
    # counts, scans, schema (with pixsearch's metadata) and version agree too
    lancedb_table = store.table
    for where in FILTERS[1:]:
        assert reader.count(where) == lancedb_table.count_rows(where)
        ours = reader.scan(["id", "width", "vector"], where)
        theirs = lancedb_table.search().select(["id", "width", "vector"]).where(where)
        assert ours.equals(theirs.limit(None).to_arrow())
    assert reader.schema() == lancedb_table.schema
    assert reader.schema().metadata == lancedb_table.schema.metadata
    assert reader.version() == lancedb_table.version


def test_photo_store_search_plans_match_lancedb(table, monkeypatch) -> None:
    """``PhotoStore.search`` (planning by selectivity on the lance path) returns what the same
    plan returns through LanceDB: the plan of each filter is the one LanceDB used before."""
    store, vectors = table
    store.optimize(vector_index_min_rows=1000)
    monkeypatch.setattr(store_module, "EXACT_SEARCH_MAX_ROWS", 50)
    plans: list[str] = []
    real_plan = PhotoStore._plan
    monkeypatch.setattr(
        PhotoStore, "_plan", lambda self, t, w: plans.append(real_plan(self, t, w)) or plans[-1]
    )
    for where in FILTERS:
        hits = store.search(vectors[42], k=10, where=where, extra_columns=["features"])
        share = store.count(where) / store.count()
        expected_plan = (
            "index"
            if where is None or 50 / 2000 < share < store_module.POSTFILTER_MIN_SHARE
            else "exact"
            if share <= 50 / 2000
            else "postfilter"
        )
        assert plans[-1] == expected_plan
        if expected_plan == "postfilter":
            limit = int(np.ceil(10 / share * store_module.POSTFILTER_OVERFETCH))
            theirs = _lancedb_nearest(
                store, vectors[42], limit, plan="index", where=where, prefilter=False
            ).slice(0, 10)
        else:
            theirs = _lancedb_nearest(
                store, vectors[42], 10, plan=expected_plan, where=where, prefilter=True
            )
        assert [h["id"] for h in hits] == theirs.column("id").to_pylist()
        np.testing.assert_allclose(
            [h["score"] for h in hits], 1 - theirs.column("_distance").to_numpy(), atol=1e-5
        )
        assert all(h["features"].shape == (2,) for h in hits)
    assert set(plans) == {"index", "postfilter", "exact"}


def test_a_refine_factor_reranks_product_quantized_candidates_exactly(table) -> None:
    """With ``refine_factor`` an index search re-ranks its candidates by the stored vectors:
    the distances of an IVF_PQ index (approximate by construction) become the exact cosine
    distances, under a prefilter too (how benchmarks/index_variants.py measures PQ indexes)."""
    from lancedb import index as configs

    store, vectors = table
    config = configs.IvfPq(distance_type="cosine", num_partitions=2, num_sub_vectors=4)
    store.table.create_index("vector", config=config)
    reader = TableReader(store.uri, "photos")
    assert reader.has_vector_index()
    for where in (None, "restricted = false"):
        for i in (0, 5, 1234):
            found = {
                refine: reader.nearest(
                    vectors[i],
                    ["id"],
                    10,
                    plan="index",
                    nprobes=2,
                    ef=10,
                    where=where,
                    refine_factor=refine,
                )
                for refine in (None, 5)
            }
            for refine, hits in found.items():
                rows = [int(x) for x in hits.column("id").to_pylist()]
                exact = 1.0 - vectors[rows] @ vectors[i]
                error = np.abs(hits.column("_distance").to_numpy() - exact).max()
                assert error < 1e-5 if refine else error > 1e-3
            if where is None:
                assert rows[0] == i  # the row itself, at distance 0, comes first


def test_writes_of_another_process_are_seen_at_the_next_read(table) -> None:
    """The reader checks out the latest version at every read: rows added, a table rewritten
    and a table dropped by another process are seen by a store that already searched."""
    store, vectors = table
    assert store.count() == 2000 and store.search(vectors[0], k=1)[0]["id"] == "000000"
    writer = (
        "import sys, numpy as np, pyarrow as pa\n"
        "from pixsearch.db.store import PhotoStore\n"
        "store = PhotoStore(sys.argv[1])\n"
        "rows = store.scan(store.table.schema.names, \"id = '000000'\")\n"
        "if sys.argv[2] == 'add':\n"
        "    rows = rows.set_column(0, 'id', pa.array(['new']))\n"
        "    store.add(rows)\n"
        "elif sys.argv[2] == 'replace':\n"
        "    store.replace_all(rows.set_column(0, 'id', pa.array(['only'])), rows.schema)\n"
        "else:\n"
        "    store.drop()\n"
    )
    for action, count, nearest in (("add", 2001, {"000000", "new"}), ("replace", 1, {"only"})):
        subprocess.run([sys.executable, "-c", writer, store.uri, action], check=True, timeout=120)
        assert store.count() == count
        assert {h["id"] for h in store.search(vectors[0], k=2)} == nearest
    subprocess.run([sys.executable, "-c", writer, store.uri, "drop"], check=True, timeout=120)
    assert store.count() == 0 and store.table_info() is None


SEARCH_SCRIPT = """
import json, sys
from pixsearch.search import ImageSearch
engine = ImageSearch(sys.argv[1])
response = engine.search("a cat", k=3, filters=["width>=100"])
stats = engine.stats()
print(json.dumps({
    "paths": [r.path for r in response.results],
    "policy": response.policy,
    "photos": stats.photos,
    "formats": stats.formats,
    "lancedb": sorted(m for m in sys.modules if m.split(".")[0] in ("lancedb", "lance_namespace")),
}))
"""


@pytest.mark.slow
def test_a_search_process_never_imports_lancedb(tmp_path: Path) -> None:
    """Search and stats in a fresh process (what the CLI does) read through ``lance`` only:
    ``import lancedb`` alone costs ~1.9 s, most of a cold start before."""
    photos = copy_demo_photos(tmp_path / "photos")
    engine = ImageSearch(tmp_path / "db")
    engine.index(photos)
    expected = [r.path for r in engine.search("a cat", k=3, filters=["width>=100"]).results]
    done = subprocess.run(
        [sys.executable, "-c", SEARCH_SCRIPT, str(tmp_path / "db")],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    found = json.loads(done.stdout)
    assert found["lancedb"] == []
    assert found["paths"] == expected and len(expected) == 3
    assert found["policy"] == "strict" and found["photos"] == engine.stats().photos
    assert sum(found["formats"].values()) == found["photos"]
