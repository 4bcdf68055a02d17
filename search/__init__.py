"""pixsearch's public Python API: search a photo folder by text, offline.

>>> from pixsearch.search import ImageSearch, Filter
>>> engine = ImageSearch(db="/tmp/my-photos.db")              # doctest: +SKIP
>>> engine.index("~/Pictures")                                # doctest: +SKIP
>>> engine.search("a red car", k=5, filters=[Filter("width", ">=", 800)])  # doctest: +SKIP
"""

from pixsearch.db.errors import (
    BundleMismatchError,
    DatabaseError,
    DatabaseLockedError,
    ImageDecodeError,
    InvalidInputError,
    MissingExtraError,
    ModelBundleError,
    PixsearchError,
    SchemaVersionError,
)
from pixsearch.db.filters import FILTER_FIELDS, Filter, parse_filter
from pixsearch.indexer.pipeline import IndexReport
from pixsearch.search.engine import ImageSearch, clean_query
from pixsearch.search.results import DatabaseStats, SearchResponse, SearchResult

__all__ = [
    "FILTER_FIELDS",
    "BundleMismatchError",
    "DatabaseError",
    "DatabaseLockedError",
    "DatabaseStats",
    "Filter",
    "ImageDecodeError",
    "ImageSearch",
    "IndexReport",
    "InvalidInputError",
    "MissingExtraError",
    "ModelBundleError",
    "PixsearchError",
    "SchemaVersionError",
    "SearchResponse",
    "SearchResult",
    "clean_query",
    "parse_filter",
]
