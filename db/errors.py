"""Typed exceptions for every layer of pixsearch.

The library raises these; only the CLI prints them and picks exit codes. Every message says
what happened *and* what to do about it.

>>> try:
...     raise BundleMismatchError("database built with bundle a, runtime has b")
... except PixsearchError as error:
...     error.exit_code
4
"""

from __future__ import annotations


class PixsearchError(Exception):
    """Base class of every error pixsearch raises on purpose."""

    exit_code = 1


class InvalidInputError(PixsearchError, ValueError):
    """A query, filter, path or option the caller gave is not valid."""

    exit_code = 2


class DatabaseError(PixsearchError):
    """The database folder cannot be opened, read or written."""

    exit_code = 3


class BundleMismatchError(DatabaseError):
    """The database was built with another model bundle: run `pixsearch reindex`."""

    exit_code = 4


class SchemaVersionError(DatabaseError):
    """The database was written by a newer pixsearch: upgrade pixsearch to open it."""

    exit_code = 4


class DatabaseLockedError(DatabaseError):
    """Another process is writing to this database."""

    exit_code = 5


class ModelBundleError(PixsearchError):
    """A model bundle file is missing, changed or unreadable."""

    exit_code = 6


class MissingExtraError(PixsearchError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    exit_code = 7


class ImageDecodeError(PixsearchError):
    """One photo could not be read or decoded (the indexer logs it and goes on)."""

    exit_code = 8
