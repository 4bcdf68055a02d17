"""pixsearch's environment variables, read in one place, once per process (on first use).

Every layer asks :func:`environment` instead of reading ``os.environ`` itself, so the names,
defaults and checks of the variables live here and a process sees one consistent set.

============================  ===============================================================
``PIXSEARCH_DB``              the database when the caller names none (search)
``PIXSEARCH_BUNDLE``          a model bundle folder instead of the packaged one (indexer)
``PIXSEARCH_THREADS``         onnxruntime's intra-op threads (0 or unset: one per core)
``PIXSEARCH_WRITE_BATCH``     rows per commit while indexing (unset: the indexer's default)
``PIXSEARCH_DISCLAIMER``      the text shown instead of withheld photos (policy)
============================  ===============================================================

>>> env = Environment.from_mapping({"PIXSEARCH_THREADS": "2", "PIXSEARCH_DISCLAIMER": "  "})
>>> env.threads, env.disclaimer, env.db
(2, None, None)
>>> try:
...     Environment.from_mapping({"PIXSEARCH_WRITE_BATCH": "many"})
... except InvalidInputError as error:
...     print(error)
PIXSEARCH_WRITE_BATCH must be a whole number >= 1, not 'many'
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass

from pixsearch.db.errors import InvalidInputError

DB_ENV = "PIXSEARCH_DB"
BUNDLE_ENV = "PIXSEARCH_BUNDLE"
THREADS_ENV = "PIXSEARCH_THREADS"
WRITE_BATCH_ENV = "PIXSEARCH_WRITE_BATCH"
DISCLAIMER_ENV = "PIXSEARCH_DISCLAIMER"
DEVICE_ENV = "PIXSEARCH_DEVICE"
DEVICES = ("auto", "cpu", "cuda")
"""Where the image encoder runs: ``auto`` (CUDA when onnxruntime has it), ``cpu`` or ``cuda``."""


def _whole(env: Mapping[str, str], name: str, minimum: int) -> int | None:
    text = (env.get(name) or "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise InvalidInputError(f"{name} must be a whole number >= {minimum}, not {text!r}")
    return value


def _device(env: Mapping[str, str]) -> str:
    choice = (env.get(DEVICE_ENV) or "auto").strip().lower()
    if choice not in DEVICES:
        raise InvalidInputError(
            f"{DEVICE_ENV}={choice!r} is not one of {', '.join(DEVICES)}; unset it to use a GPU "
            "when there is one"
        )
    return choice


@dataclass(frozen=True)
class Environment:
    """The values of pixsearch's environment variables (``None``: unset or blank)."""

    db: str | None = None
    bundle: str | None = None
    threads: int = 0
    """0: onnxruntime's default (one thread per physical core)."""
    write_batch: int | None = None
    disclaimer: str | None = None
    """Stripped; a blank value counts as unset."""
    device: str = "auto"
    """One of :data:`DEVICES` (case and spaces ignored)."""

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> Environment:
        """Read and check the variables of ``env`` (e.g. ``os.environ``)."""
        return cls(
            db=env.get(DB_ENV) or None,
            bundle=env.get(BUNDLE_ENV) or None,
            threads=_whole(env, THREADS_ENV, 0) or 0,
            write_batch=_whole(env, WRITE_BATCH_ENV, 1),
            disclaimer=(env.get(DISCLAIMER_ENV) or "").strip() or None,
            device=_device(env),
        )


@functools.cache
def environment() -> Environment:
    """This process's :class:`Environment`, read from ``os.environ`` on the first call."""
    return Environment.from_mapping(os.environ)


def reload_environment() -> Environment:
    """Read ``os.environ`` again (after a test or a worker changed it); the new values."""
    environment.cache_clear()
    return environment()
