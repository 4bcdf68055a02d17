"""Typed exceptions of the storage layer, and the base classes every layer shares.

Each layer keeps the errors it raises (``pixsearch.indexer.errors`` holds the model-bundle and
photo-decoding ones; the exporter keeps its own); all derive from :class:`PixsearchError`. The
library raises them and never prints; the CLI prints them and picks the exit code from its one
table (``pixsearch.search.exit_codes``). Every message says what happened *and* what to do.

>>> try:
...     raise BundleMismatchError("database built with bundle a, runtime has b: run reindex")
... except DatabaseError as error:
...     print(error)
database built with bundle a, runtime has b: run reindex
"""

from __future__ import annotations

import re


class PixsearchError(Exception):
    """Base class of every error pixsearch raises on purpose."""


class InvalidInputError(PixsearchError, ValueError):
    """A query, filter, path or option the caller gave is not valid (any layer raises it)."""


class MissingExtraError(PixsearchError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class DatabaseError(PixsearchError):
    """The database folder cannot be opened, read or written."""


class DatabaseNotFoundError(DatabaseError):
    """No pixsearch database where the caller pointed (a read never creates one): bad input."""


class BundleMismatchError(DatabaseError):
    """The database was built with another model bundle: run `pixsearch reindex`."""


class SchemaVersionError(DatabaseError):
    """The database was written by a newer pixsearch: upgrade pixsearch to open it."""


class DatabaseLockedError(DatabaseError):
    """Another process is writing to this database."""


class ConcurrentWriteError(DatabaseLockedError):
    """Another job wrote to (or holds) the table this job writes: run it again afterwards."""


_RUST_LOCATION = re.compile(r",?\s*[^\s,]*\.rs:\d+(:\d+)?")
_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-f]+>")


def readable_error(error: BaseException) -> str:
    """An error's message without Rust source locations or Python object reprs.

    >>> readable_error(ValueError("Invalid input, bad literal, "
    ...     "/root/.cargo/registry/src/index.crates.io-1/lance-13.0.0/src/expr.rs:23:88, "
    ...     "/home/runner/work/lance/lance/rust/lance-datafusion/src/planner.rs:967:13"))
    'Invalid input, bad literal'
    >>> readable_error(OSError("cannot identify image file <_io.BytesIO object at 0x7fee54>"))
    'cannot identify image file (in memory)'
    >>> readable_error(OSError(28, "No space left on device"))
    '[Errno 28] No space left on device'
    """
    text = str(error).split(". Detail: Python exception:")[0]
    text = _RUST_LOCATION.sub("", text)
    text = _OBJECT_REPR.sub("(in memory)", text)
    return text.strip().rstrip(",").strip() or type(error).__name__
