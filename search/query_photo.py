"""A photo as a query: its vector in the search space and the content policy's verdict on it.

A photo indexed and unchanged since (same size, mtime and caption files, the indexer's own
rule) reuses its stored row; any other photo file is read and encoded on the fly through the
indexer's one photo -> row path (``rows.read_photo`` then ``RowMaker``: bounded memory, the
caption and the child classifier give ``restricted``). An indexed photo can also be named by
its row id (as ``pixsearch search --json`` and ``serve`` show it).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from pixsearch.db.errors import InvalidInputError
from pixsearch.db.store import PhotoStore
from pixsearch.indexer.errors import ImageDecodeError
from pixsearch.search.query import PhotoId

ID_PATTERN = re.compile(r"[0-9a-f]{16}")
"""A row id as the indexer writes it (``rows.photo_id``)."""
_COLUMNS = ["id", "path", "vector", "restricted", "size", "mtime_ns", "caption_source"]


@dataclass(frozen=True)
class QueryPhoto:
    """A query photo: its unit vector, whether the policy restricts it, and where it came
    from (``id``: the indexed row it was read from, None when encoded on the fly)."""

    path: str
    vector: np.ndarray
    restricted: bool
    id: str | None = None


def resolve_photo(store: PhotoStore, bundle: Any, photo: str) -> QueryPhoto:
    """The :class:`QueryPhoto` for ``photo``: a file path or an indexed photo's id.

    A :class:`~pixsearch.search.query.PhotoId` is only looked up as an id. Raises
    ``InvalidInputError`` when it is neither, ``ImageDecodeError`` when the file cannot be
    read or decoded.
    """
    path = os.path.expanduser(photo)
    if not isinstance(photo, PhotoId) and os.path.exists(path):
        if not os.path.isfile(path):
            raise InvalidInputError(f"{path} is not a photo file: give one photo (or its id)")
        path = os.path.abspath(path)
        return _stored(store, path) or _encoded(bundle, path)
    if ID_PATTERN.fullmatch(photo):
        rows = store.rows_by_id([photo], _COLUMNS).to_pylist()
        if rows:
            return _from_row(rows[0])
    if isinstance(photo, PhotoId):
        raise InvalidInputError(f"no indexed photo has the id {str(photo)!r}")
    raise InvalidInputError(
        f"{photo!r} is neither a photo file nor the id of an indexed photo "
        "(`pixsearch search --json` shows ids)"
    )


def _stored(store: PhotoStore, path: str) -> QueryPhoto | None:
    """The stored row of this file, if it is indexed and unchanged since."""
    from pixsearch.indexer.rows import photo_id
    from pixsearch.indexer.scan import caption_key

    parent, name = os.path.split(path)
    names = {path, os.path.join(os.path.realpath(parent), name)}
    rows = store.rows_by_id(sorted(photo_id(n) for n in names), _COLUMNS).to_pylist()
    info = os.stat(path)
    for row in rows:
        if (
            row["path"] in names
            and row["size"] == info.st_size
            and row["mtime_ns"] == info.st_mtime_ns
            and row["caption_source"] == caption_key(row["path"])[1]
        ):
            return _from_row(row)
    return None


def _encoded(bundle: Any, path: str) -> QueryPhoto:
    """Read and encode a photo file as the indexer would (its caption files included)."""
    from pixsearch.indexer.rows import RowMaker, read_photo
    from pixsearch.indexer.scan import PhotoEntry, caption_key
    from pixsearch.indexer.sources import open_source

    info = os.stat(path)
    entry = PhotoEntry(path, info.st_size, info.st_mtime_ns, caption_key=caption_key(path)[1])
    read = read_photo(open_source(os.sep), entry, reusable=set())
    if read.error is not None:
        raise ImageDecodeError(f"cannot search by {path}: {read.error}")
    row = RowMaker(bundle).encode([read]).to_pylist()[0]
    return QueryPhoto(path, np.asarray(row["vector"], np.float32), bool(row["restricted"]))


def _from_row(row: dict[str, Any]) -> QueryPhoto:
    return QueryPhoto(
        row["path"], np.asarray(row["vector"], np.float32), bool(row["restricted"]), row["id"]
    )
