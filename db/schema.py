"""The photos table's explicit Arrow schema and the facts recorded in its metadata.

>>> schema = photo_schema(vector_dim=384, feature_dim=1280,
...                       bundle_id="b1", space="label-bridge")
>>> schema.field("vector").type
FixedSizeListType(fixed_size_list<item: float>[384])
>>> table_info(schema).bundle_id
'b1'
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from pixsearch.db.errors import DatabaseError

SCHEMA_VERSION = 2
"""Bumped on every incompatible change of the table layout; a newer one is refused, an older
one is upgraded in place by the next writer (:data:`UPGRADES`).

- 1: the first layout.
- 2: ``caption_source`` (fingerprint of the caption files a row's caption came from).
"""
TABLE_NAME = "photos"

_META_SCHEMA_VERSION = b"pixsearch.schema_version"
_META_BUNDLE_ID = b"pixsearch.bundle_id"
_META_SPACE = b"pixsearch.space"
_META_VECTOR_DIM = b"pixsearch.vector_dim"
_META_FEATURE_DIM = b"pixsearch.feature_dim"
_META_FEATURE_SOURCE = b"pixsearch.feature_source"


@dataclass(frozen=True)
class TableInfo:
    """What a table's metadata says about how its vectors were made."""

    schema_version: int
    bundle_id: str
    space: str
    vector_dim: int
    feature_dim: int
    feature_source: str = ""


def photo_schema(
    *, vector_dim: int, feature_dim: int, bundle_id: str, space: str, feature_source: str = ""
) -> pa.Schema:
    """The schema of the photos table, with the bundle that made its vectors in the metadata.

    ``feature_source`` identifies the image encoder that made the ``features`` column: while it
    is unchanged, a new embedding space re-projects stored features instead of decoding photos.
    """
    fields = [
        pa.field("id", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("content_hash", pa.string(), nullable=False),
        pa.field("size", pa.int64(), nullable=False),
        pa.field("mtime_ns", pa.int64(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("format", pa.string(), nullable=False),
        pa.field("vector", pa.list_(pa.float32(), vector_dim), nullable=False),
        # The image encoder's raw pooled features: a new head re-projects every row from them
        # without decoding a photo again. float16 halves their size; heads run in float32.
        pa.field("features", pa.list_(pa.float16(), feature_dim), nullable=False),
        pa.field("caption", pa.string()),
        # Which caption files the caption came from, with their size and mtime ("" without):
        # a caption added, edited or deleted re-evaluates the row without decoding the photo.
        pa.field("caption_source", pa.string(), nullable=False),
        pa.field("child_score", pa.float32(), nullable=False),
        pa.field("restricted", pa.bool_(), nullable=False),
        pa.field("indexed_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
    metadata = {
        _META_SCHEMA_VERSION: str(SCHEMA_VERSION).encode(),
        _META_BUNDLE_ID: bundle_id.encode(),
        _META_SPACE: space.encode(),
        _META_VECTOR_DIM: str(vector_dim).encode(),
        _META_FEATURE_DIM: str(feature_dim).encode(),
        _META_FEATURE_SOURCE: feature_source.encode(),
    }
    return pa.schema(fields, metadata=metadata)


UPGRADES: dict[int, dict[str, str]] = {2: {"caption_source": "CAST('' AS STRING)"}}
"""Columns each schema version added, with the SQL value old rows get (an empty caption key
makes the next run compare captions and re-evaluate those that have caption files)."""


def table_info(schema: pa.Schema) -> TableInfo:
    """Read the pixsearch facts from a table schema (a table without them is schema 0).

    Damaged facts raise ``DatabaseError``:

    >>> try:
    ...     table_info(pa.schema([], metadata={_META_SCHEMA_VERSION: b"abc"}))
    ... except DatabaseError as error:
    ...     print(str(error)[:79])
    the table's metadata is damaged: pixsearch.schema_version is 'abc', not a whole

    A table upgraded in place keeps its old schema metadata (LanceDB cannot rewrite it without
    copying the table); each upgrade marks its column's field metadata with its version.
    """
    meta = schema.metadata or {}

    def text(key: bytes, default: str = "") -> str:
        return meta.get(key, default.encode()).decode("utf-8", "replace")

    def number(key: bytes) -> int:
        value = text(key, "0")
        if not value.isascii() or not value.isdigit():
            raise DatabaseError(
                f"the table's metadata is damaged: {key.decode()} is {value!r}, not a whole "
                "number; `pixsearch check` reports what else is wrong; index the photos into a "
                "new database (--db) to start over"
            )
        return int(value)

    version = number(_META_SCHEMA_VERSION)
    for upgrade, columns in UPGRADES.items():
        for name in columns:
            field_meta = schema.field(name).metadata if name in schema.names else None
            if field_meta and field_meta.get(_META_SCHEMA_VERSION) == str(upgrade).encode():
                version = max(version, upgrade)
    return TableInfo(
        schema_version=version,
        bundle_id=text(_META_BUNDLE_ID),
        space=text(_META_SPACE),
        vector_dim=number(_META_VECTOR_DIM),
        feature_dim=number(_META_FEATURE_DIM),
        feature_source=text(_META_FEATURE_SOURCE),
    )


RESULT_COLUMNS = (
    "id",
    "path",
    "content_hash",
    "size",
    "mtime_ns",
    "width",
    "height",
    "format",
    "caption",
    "child_score",
    "restricted",
    "indexed_at",
)
"""Columns returned with a search result (everything but the vectors)."""
