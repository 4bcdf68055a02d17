"""Every documented command, driven through typer's CliRunner, plus one real subprocess run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import copy_demo_photos, noise_image
from typer.testing import CliRunner

from pixsearch.search.cli import EXIT_BLOCKED, app

runner = CliRunner()


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cli")
    photos = copy_demo_photos(root / "photos")
    result = runner.invoke(app, ["index", str(photos), "--db", str(root / "db"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "added 14" in result.output
    # Ranking is under test here, not the content policy: this database defaults to none.
    assert runner.invoke(app, ["policy", "none", "--db", str(root / "db")]).exit_code == 0
    return photos, root / "db"


@pytest.mark.parametrize(
    "command",
    ["index", "search", "info", "policy", "reindex", "remove", "demo", "export", "eda", "train"],
)
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_top_level_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("index", "search", "info", "reindex", "demo"):
        assert command in result.output


def test_search_prints_ranked_paths(indexed) -> None:
    _, db = indexed
    result = runner.invoke(app, ["search", "a cat", "--db", str(db), "-k", "2"])
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0].split()
    assert first[0] == "1" and first[2].endswith("chelsea.png")


def test_search_json_shape(indexed) -> None:
    _, db = indexed
    result = runner.invoke(app, ["search", "a motorcycle", "--db", str(db), "--json", "-k", "3"])
    payload = json.loads(result.stdout)
    assert payload["query"] == "a motorcycle" and payload["blocked"] is False
    assert payload["message"] is None and len(payload["results"]) == 3
    assert payload["results"][0]["path"].endswith("motorcycle_left.png")


def test_search_paths_only_and_where(indexed) -> None:
    _, db = indexed
    result = runner.invoke(
        app, ["search", "a photo", "--db", str(db), "--paths-only", "--where", "format=JPEG"]
    )
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines and all(line.endswith(".jpg") for line in lines)


def test_bad_filter_exits_2_with_field_list(indexed) -> None:
    _, db = indexed
    result = runner.invoke(app, ["search", "x", "--db", str(db), "--where", "colour=red"])
    assert result.exit_code == 2
    assert "valid fields" in result.output


def test_blocked_query_has_its_own_exit_code_and_json(indexed) -> None:
    _, db = indexed
    result = runner.invoke(
        app, ["search", "a little boy", "--db", str(db), "--json", "--policy", "strict"]
    )
    assert result.exit_code == EXIT_BLOCKED
    payload = json.loads(result.stdout)
    assert payload["blocked"] is True and payload["results"] == []
    assert "unavailable" in payload["message"]
    open_result = runner.invoke(
        app, ["search", "a little boy", "--db", str(db), "--policy", "none", "--json"]
    )
    assert open_result.exit_code == 0 and json.loads(open_result.stdout)["results"]


def test_info_json(indexed) -> None:
    _, db = indexed
    result = runner.invoke(app, ["info", "--db", str(db), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["photos"] == 14


def test_reindex_and_remove(indexed, tmp_path: Path) -> None:
    photos, db = indexed
    copy = tmp_path / "db"
    shutil.copytree(db, copy)
    result = runner.invoke(app, ["reindex", "--db", str(copy), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["updated"] == 14
    result = runner.invoke(app, ["remove", str(photos / "coins.png"), "--db", str(copy)])
    assert result.exit_code == 0 and "removed 1" in result.output


def test_errors_are_one_line_with_exit_codes(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["index", str(tmp_path / "nope"), "--db", str(tmp_path / "d")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    empty = runner.invoke(app, ["search", "a cat", "--db", str(tmp_path / "d")])
    assert empty.exit_code == 3 and "pixsearch index" in empty.output


def test_index_reports_failures_and_json(tmp_path: Path) -> None:
    noise_image(tmp_path / "ok.png", 1)
    (tmp_path / "bad.jpg").write_bytes(b"junk")
    result = runner.invoke(app, ["index", str(tmp_path), "--db", str(tmp_path / "db"), "--json"])
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert payload["added"] == 1 and payload["failed"][0]["path"].endswith("bad.jpg")


def test_demo_runs_offline(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    assert 'pixsearch search "a cat"' in result.output
    assert "Under the default policy `strict`" in result.output
    assert "1.  " in result.output and "chelsea.png" in result.output


def test_installed_command_end_to_end(indexed) -> None:
    """The console script itself, as a user runs it, in a fresh process."""
    _, db = indexed
    exe = shutil.which("pixsearch") or str(Path(sys.executable).with_name("pixsearch"))
    env = {**os.environ, "LANCEDB_LOG": "error"}
    done = subprocess.run(
        [exe, "search", "a cup of coffee", "--db", str(db), "--json", "-k", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["results"][0]["path"].endswith("coffee.png")


def test_policy_command_shows_and_sets_the_default(tmp_path: Path) -> None:
    db = str(tmp_path / "db")
    shown = runner.invoke(app, ["policy", "--db", db])
    assert shown.exit_code == 0 and shown.output.strip().endswith("strict")
    changed = runner.invoke(app, ["policy", "none", "--db", db])
    assert changed.exit_code == 0 and changed.output.strip().endswith("none")
    bad = runner.invoke(app, ["policy", "lenient", "--db", db])
    assert bad.exit_code == 2 and "strict" in bad.output
