"""``pixsearch check`` finds what ``info`` cannot see, and ``--repair`` fixes what it can
(issue 19): a Lance data file overwritten in the middle, bad vectors, missing indexes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
import pytest
from helpers import noise_image
from typer.testing import CliRunner

from pixsearch.db.schema import TABLE_NAME
from pixsearch.db.store import PhotoStore
from pixsearch.search import ImageSearch
from pixsearch.search.cli import app

runner = CliRunner()
PHOTOS = 120


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("check")
    photos = root / "photos"
    photos.mkdir()
    for i in range(PHOTOS):
        noise_image(photos / f"p{i:03}.png", i)
    ImageSearch(root / "db").index(photos)
    return photos, root / "db"


@pytest.fixture
def db(indexed, tmp_path: Path) -> Path:
    """A fresh copy of the indexed database."""
    return Path(shutil.copytree(indexed[1], tmp_path / "db"))


def _check(db: Path, *extra: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["check", "--db", str(db), "--json", *extra])
    return result.exit_code, json.loads(result.stdout)


def _set_vector(db: Path, photo_id: str, value: float) -> None:
    """Overwrite one row's vector with ``value`` everywhere."""
    table = lancedb.connect(db).open_table(TABLE_NAME)
    row = table.search().where(f"id = '{photo_id}'").limit(1).to_arrow()
    dim = row.schema.field("vector").type.list_size
    values = pa.FixedSizeListArray.from_arrays(pa.array([value] * dim, pa.float32()), dim)
    row = row.set_column(row.schema.get_field_index("vector"), "vector", values)
    PhotoStore(db).upsert(row.cast(table.schema))


def test_a_healthy_database_checks_clean(db: Path) -> None:
    code, report = _check(db)
    assert (code, report["ok"], report["rows"], report["problems"]) == (0, True, PHOTOS, [])


def test_an_overwritten_data_file_is_found_while_info_looks_healthy(db: Path) -> None:
    [data] = (db / f"{TABLE_NAME}.lance" / "data").glob("*.lance")
    size = data.stat().st_size
    assert size > 400_000, size
    with open(data, "r+b") as handle:  # 200 KB of noise in the middle of the fragment
        handle.seek(size // 2 - 100_000)
        handle.write(np.random.default_rng(19).bytes(200_000))
    info = runner.invoke(app, ["info", "--db", str(db), "--json"])
    assert info.exit_code == 0 and json.loads(info.stdout)["photos"] == PHOTOS
    code, report = _check(db)
    assert code == 3 and not report["ok"], report
    kinds = {problem["kind"] for problem in report["problems"]}
    assert kinds & {"rows", "unreadable"}, report


def test_bad_vectors_are_named_and_repaired_from_their_photos(db: Path) -> None:
    table = lancedb.connect(db).open_table(TABLE_NAME)
    ids = [row["id"] for row in table.search().select(["id"]).limit(3).to_list()]
    _set_vector(db, ids[0], float("inf"))  # LanceDB refuses to write NaN; a damaged file has them
    _set_vector(db, ids[1], 7.0)
    code, report = _check(db)
    assert code == 3
    [problem] = report["problems"]
    assert problem["kind"] == "rows" and problem["repairable"]
    assert sorted(problem["ids"]) == sorted(ids[:2])

    code, report = _check(db, "--repair")
    assert (code, report["ok"]) == (0, True), report
    assert report["repaired"] == ["re-encoded 2 of 2 damaged rows from their photos"]
    vectors = ImageSearch(db).store.rows_by_id(ids[:2], ["vector"]).column("vector")
    norms = np.linalg.norm(np.asarray(vectors.to_pylist()), axis=1)
    assert np.allclose(norms, 1.0, atol=1e-3)


def test_a_damaged_row_whose_photo_changed_is_left_and_reported(db: Path) -> None:
    table = lancedb.connect(db).open_table(TABLE_NAME)
    row = table.search().select(["id", "path", "vector"]).limit(1).to_list()[0]
    _set_vector(db, row["id"], 0.0)
    changed = Path(row["path"])
    original = changed.read_bytes()
    try:
        noise_image(changed, 10_000)
        code, report = _check(db, "--repair")
    finally:
        changed.write_bytes(original)
    assert code == 3
    assert "1 damaged rows left: their photo is gone or changed" in report["repaired"][1]
    assert report["problems"][0]["ids"] == [row["id"]]


def test_missing_indexes_are_reported_and_rebuilt(db: Path) -> None:
    table = lancedb.connect(db).open_table(TABLE_NAME)
    for index in table.list_indices():
        if tuple(index.columns) in {("path",), ("restricted",)}:
            table.drop_index(index.name)
    code, report = _check(db)
    assert code == 3
    assert sorted(p["message"].split("'")[1] for p in report["problems"]) == ["path", "restricted"]
    code, report = _check(db, "--repair")
    assert (code, report["ok"], report["repaired"]) == (0, True, ["rebuilt 2 missing indexes"])


def test_damaged_metadata_is_reported_and_not_touched(db: Path, tmp_path: Path) -> None:
    data = lancedb.connect(db).open_table(TABLE_NAME).to_arrow()
    meta = {**data.schema.metadata, b"pixsearch.schema_version": b"abc"}
    damaged = tmp_path / "damaged"
    lancedb.connect(damaged).create_table(TABLE_NAME, data=data.replace_schema_metadata(meta))
    before = sorted(os.listdir(damaged / f"{TABLE_NAME}.lance" / "_versions"))
    code, report = _check(damaged, "--repair")
    assert code == 3 and report["repaired"] == []
    assert "metadata" in {problem["kind"] for problem in report["problems"]}
    assert sorted(os.listdir(damaged / f"{TABLE_NAME}.lance" / "_versions")) == before


def test_check_of_a_missing_database_is_bad_input(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", "--db", str(tmp_path / "typo")])
    assert result.exit_code == 2 and "no pixsearch database at" in result.output
    assert not (tmp_path / "typo").exists()
