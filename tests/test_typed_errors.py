"""Every fault is a typed error with the documented exit code and words a user can act on
(issue 19): damaged metadata, --db at a file or a typo, out-of-range filters, NaN scores,
removing what was never indexed."""

from __future__ import annotations

from pathlib import Path

import lancedb
import pytest
from helpers import noise_image
from typer.testing import CliRunner

from pixsearch.db.errors import DatabaseError
from pixsearch.db.schema import TABLE_NAME
from pixsearch.search import ImageSearch
from pixsearch.search.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("typed")
    photos = root / "photos"
    photos.mkdir()
    for i in range(3):
        noise_image(photos / f"p{i}.png", i)
    result = runner.invoke(app, ["index", str(photos), "--db", str(root / "db"), "--quiet"])
    assert result.exit_code == 0, result.output
    return photos, root / "db"


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@pytest.fixture
def damaged(indexed, tmp_path: Path) -> Path:
    """A copy of the database whose table says ``pixsearch.schema_version = abc``."""
    db = lancedb.connect(indexed[1])
    data = db.open_table(TABLE_NAME).to_arrow()
    meta = {**data.schema.metadata, b"pixsearch.schema_version": b"abc"}
    target = tmp_path / "damaged"
    lancedb.connect(target).create_table(TABLE_NAME, data=data.replace_schema_metadata(meta))
    return target


@pytest.mark.parametrize("command", [["info"], ["search", "a cat"], ["index", "PHOTOS"]])
def test_damaged_schema_version_is_a_database_error(indexed, damaged, command) -> None:
    args = [str(indexed[0]) if part == "PHOTOS" else part for part in command]
    code, output = _run(*args, "--db", str(damaged))
    assert code == 3, output
    assert "pixsearch.schema_version is 'abc', not a whole number" in output


@pytest.mark.parametrize("command", [["info"], ["search", "a cat"], ["index", "PHOTOS"]])
def test_db_at_a_regular_file_names_the_path(indexed, tmp_path: Path, command) -> None:
    target = tmp_path / "a-file"
    target.write_text("not a database")
    args = [str(indexed[0]) if part == "PHOTOS" else part for part in command]
    code, output = _run(*args, "--db", str(target))
    assert code == 2, output
    assert f"{target} is a file, not a pixsearch database folder" in output
    assert target.read_text() == "not a database"


@pytest.mark.parametrize(
    "command", [["info"], ["search", "a cat"], ["policy"], ["remove", "/x"], ["reindex"]]
)
def test_reads_of_a_missing_database_name_it_and_create_nothing(tmp_path: Path, command) -> None:
    typo = tmp_path / "typo"
    code, output = _run(*command, "--db", str(typo))
    assert code == 2, output
    assert f"there is no pixsearch database at {typo}" in output
    assert not typo.exists()


@pytest.mark.parametrize(
    ("where", "words"),
    [
        ("width<3000000000", "out of range"),
        ("size>99999999999999999999", "out of range"),
        ("child_score<inf", "not a finite number"),
    ],
)
def test_filters_the_column_cannot_hold_are_bad_input(indexed, where, words) -> None:
    code, output = _run("search", "a cat", "--db", str(indexed[1]), "--where", where)
    assert code == 2, output
    assert words in output and ".cargo" not in output


def test_min_score_nan_is_refused(indexed) -> None:
    code, output = _run("search", "a cat", "--db", str(indexed[1]), "--min-score", "nan")
    assert code == 2, output
    assert "min_score must be a number" in output


def test_removing_what_was_never_indexed_says_so_and_removes_nothing(indexed) -> None:
    photos, db = indexed
    before = ImageSearch(db).store.count()
    code, output = _run("remove", "/nope", str(photos / "p0.png"), "--db", str(db))
    assert code == 2, output
    assert "not in the database" in output and "/nope" in output
    assert "nothing was removed" in output
    assert ImageSearch(db).store.count() == before


def test_decode_errors_carry_no_object_reprs(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "fake.jpg").write_bytes(b"\x00" * 5000)
    noise_image(photos / "ok.png", 1)
    report = ImageSearch(tmp_path / "db").index(photos)
    [(_, reason)] = report.failed
    assert reason == "not a readable image (unknown or damaged format)"


def test_storage_errors_lose_their_rust_source_locations(indexed) -> None:
    """A filter the database rejects (raw SQL through the store) reads without Rust paths."""
    store = ImageSearch(indexed[1]).store
    with pytest.raises(DatabaseError) as caught:
        store.count("width < 3000000000")
    assert "could not convert to literal" in str(caught.value)
    assert ".cargo" not in str(caught.value) and ".rs:" not in str(caught.value)
    assert ".rs:" in str(caught.value.__cause__)  # the raw detail is kept for logs
