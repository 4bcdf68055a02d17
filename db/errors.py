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
