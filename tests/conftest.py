"""Shared fixtures: where the shared training data lies, and temporary databases."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pixsearch.db.environment import environment

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """The customer's data: $PIXSEARCH_DATA, else ../shared/data beside the checkout."""
    candidates = [os.environ.get("PIXSEARCH_DATA"), REPO_ROOT.parent / "shared" / "data"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "practicum").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(autouse=True)
def _environment_read_per_test() -> Iterator[None]:
    """pixsearch reads its environment variables once per process (``db.environment``); each
    test starts from the real environment, and a test that changes a variable calls
    ``reload_environment()`` after it."""
    environment.cache_clear()
    yield
    environment.cache_clear()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the shared data folder; skips the test with a reason when it is absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("shared data not found: set PIXSEARCH_DATA or place it at ../shared/data")
    return path
