"""The exit codes of the ``pixsearch`` command: one table, owned by the CLI.

The convention follows grep and ripgrep: 0 means the command did what was asked, 1 means it ran
to the end but found nothing or left something out (a search with no results, an index run in
which some photos could not be read), 2 and above mean an error stopped it. The library never
picks an exit code; it raises typed errors (:class:`pixsearch.db.errors.PixsearchError` and
subclasses, each kept in the layer that raises it) and :func:`exit_code_for` maps them here.

>>> from pixsearch.db.errors import DatabaseLockedError, InvalidInputError
>>> exit_code_for(InvalidInputError("bad filter")), exit_code_for(DatabaseLockedError("busy"))
(2, 5)
>>> exit_code_for(KeyError("a bug"))
9
"""

from __future__ import annotations

from pixsearch.db.errors import (
    BundleMismatchError,
    DatabaseError,
    DatabaseLockedError,
    DatabaseNotFoundError,
    InvalidInputError,
    MissingExtraError,
    PixsearchError,
    SchemaVersionError,
)
from pixsearch.indexer.errors import ImageDecodeError, ModelBundleError

OK = 0
NOTHING_FOUND = 1
"""A search returned no photos, or an index/reindex run finished but some photos failed."""
BAD_INPUT = 2
OTHER_ERROR = 9
BLOCKED = 10
"""The content policy blocked the query (its disclaimer is printed)."""
INTERRUPTED = 130
"""Ctrl-C (128 + SIGINT, as shells report it)."""

_BY_ERROR: dict[type[BaseException], int] = {
    InvalidInputError: BAD_INPUT,
    DatabaseError: 3,
    DatabaseNotFoundError: BAD_INPUT,
    BundleMismatchError: 4,
    SchemaVersionError: 4,
    DatabaseLockedError: 5,
    ModelBundleError: 6,
    MissingExtraError: 7,
    ImageDecodeError: 8,
    PixsearchError: OTHER_ERROR,
}
"""Error class -> exit code; a subclass (e.g. the exporter's ``DataValidationError``, an
``InvalidInputError``) takes the code of its nearest listed ancestor."""

TABLE: tuple[tuple[int, str], ...] = (
    (OK, "success"),
    (NOTHING_FOUND, "no results, or some photos could not be read (listed on stderr)"),
    (BAD_INPUT, "bad input: query, filter, path or option (no database where --db points)"),
    (3, "database cannot be opened, read or written"),
    (4, "database built by another model bundle (run reindex) or a newer pixsearch"),
    (5, "another process is writing to the database"),
    (6, "model bundle missing, damaged or drifting from PyTorch (export parity)"),
    (7, "optional extra not installed (the message names it)"),
    (8, "a photo cannot be decoded"),
    (OTHER_ERROR, "any other error"),
    (BLOCKED, "query blocked by the content policy (the disclaimer is printed)"),
    (INTERRUPTED, "interrupted (Ctrl-C); a re-run resumes"),
)
"""Every exit code with its meaning, as ``pixsearch --help`` and the README list them."""


def exit_code_for(error: BaseException) -> int:
    """The exit code for ``error``: its nearest class in the table, else ``OTHER_ERROR``."""
    for cls in type(error).__mro__:
        if cls in _BY_ERROR:
            return _BY_ERROR[cls]
    return OTHER_ERROR


def help_text() -> str:
    """The table as the paragraph ``pixsearch --help`` ends with.

    >>> help_text().splitlines()[1]
    '  0    success'
    """
    return "Exit codes:\n" + "\n".join(f"  {code:<4} {meaning}" for code, meaning in TABLE)
