"""pixsearch's environment variables: one module reads them, once, and checks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import noise_image

from pixsearch.db.environment import Environment, environment, reload_environment
from pixsearch.db.errors import InvalidInputError

PIXSEARCH = shutil.which("pixsearch") or str(Path(sys.executable).with_name("pixsearch"))


def test_read_once_until_reloaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXSEARCH_DB", "/first")
    assert reload_environment().db == "/first"
    monkeypatch.setenv("PIXSEARCH_DB", "/second")
    assert environment().db == "/first"
    assert reload_environment().db == "/second"


@pytest.mark.parametrize(
    ("name", "value"),
    [("PIXSEARCH_THREADS", "-1"), ("PIXSEARCH_THREADS", "two"), ("PIXSEARCH_WRITE_BATCH", "0")],
)
def test_bad_numbers_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(InvalidInputError, match=f"{name} must be a whole number"):
        Environment.from_mapping({name: value})


def test_blank_values_are_unset() -> None:
    env = Environment.from_mapping(dict.fromkeys(["PIXSEARCH_DB", "PIXSEARCH_BUNDLE"], ""))
    assert env == Environment()


def test_a_bad_write_batch_is_bad_input_for_the_cli(tmp_path: Path) -> None:
    """It was ``int("many")``: a ValueError traceback; now exit 2 naming the variable."""
    (tmp_path / "photos").mkdir()
    noise_image(tmp_path / "photos" / "a.png", 1)
    done = subprocess.run(
        [PIXSEARCH, "index", str(tmp_path / "photos"), "--db", str(tmp_path / "db"), "--quiet"],
        env={**os.environ, "PIXSEARCH_WRITE_BATCH": "many", "LANCEDB_LOG": "error"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "PIXSEARCH_WRITE_BATCH must be a whole number" in done.stderr
    assert "Traceback" not in done.stderr
