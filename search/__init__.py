"""pixsearch's public Python API: search a photo folder by text, offline.

>>> from pixsearch.search import ImageSearch, Filter
>>> engine = ImageSearch(db="/tmp/my-photos.db")              # doctest: +SKIP
>>> engine.index("~/Pictures")                                # doctest: +SKIP
>>> engine.search("a red car", k=5, filters=[Filter("width", ">=", 800)])  # doctest: +SKIP

Names are imported on first use (PEP 562), so ``pixsearch --help`` and other commands that
need no database do not pay for importing LanceDB.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "BundleMismatchError": "pixsearch.db.errors",
    "DatabaseError": "pixsearch.db.errors",
    "DatabaseLockedError": "pixsearch.db.errors",
    "DatabaseNotFoundError": "pixsearch.db.errors",
    "ImageDecodeError": "pixsearch.indexer.errors",
    "InvalidInputError": "pixsearch.db.errors",
    "MissingExtraError": "pixsearch.db.errors",
    "ModelBundleError": "pixsearch.indexer.errors",
    "PixsearchError": "pixsearch.db.errors",
    "SchemaVersionError": "pixsearch.db.errors",
    "CheckReport": "pixsearch.db.check",
    "FILTER_FIELDS": "pixsearch.db.filters",
    "Filter": "pixsearch.db.filters",
    "parse_filter": "pixsearch.db.filters",
    "IndexReport": "pixsearch.indexer.report",
    "ImageSearch": "pixsearch.search.engine",
    "PhotoId": "pixsearch.search.query",
    "QueryPart": "pixsearch.search.query",
    "clean_query": "pixsearch.search.engine",
    "DatabaseStats": "pixsearch.search.results",
    "SearchResponse": "pixsearch.search.results",
    "SearchResult": "pixsearch.search.results",
}

__all__ = [
    "FILTER_FIELDS",
    "BundleMismatchError",
    "CheckReport",
    "DatabaseError",
    "DatabaseLockedError",
    "DatabaseNotFoundError",
    "DatabaseStats",
    "Filter",
    "ImageDecodeError",
    "ImageSearch",
    "IndexReport",
    "InvalidInputError",
    "MissingExtraError",
    "ModelBundleError",
    "PhotoId",
    "PixsearchError",
    "QueryPart",
    "SchemaVersionError",
    "SearchResponse",
    "SearchResult",
    "clean_query",
    "parse_filter",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pixsearch.search' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from pixsearch.db.check import CheckReport
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
    from pixsearch.db.filters import FILTER_FIELDS, Filter, parse_filter
    from pixsearch.indexer.errors import ImageDecodeError, ModelBundleError
    from pixsearch.indexer.report import IndexReport
    from pixsearch.search.engine import ImageSearch, clean_query
    from pixsearch.search.query import PhotoId, QueryPart
    from pixsearch.search.results import DatabaseStats, SearchResponse, SearchResult
