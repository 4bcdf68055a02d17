"""Photo -> row: the one place that turns a photo (or a stored row) into a photos-table row.

A row is computed from three things: the photo's bytes (hash, pixels -> features -> vector,
size facts), its caption (sidecar file, else the EXIF description) and the bundle's policy
(:func:`pixsearch.indexer.policy.photo_is_restricted`). :func:`read_photo` reads one photo
(in a worker thread); :class:`RowMaker` makes rows from what was read (encoding pixels),
from stored rows with the same content (a rename or copy: no decode), or from stored
features (a new embedding space: no decode), always as an Arrow table of the bundle's schema.

>>> import tempfile, os
>>> from PIL import Image
>>> from pixsearch.indexer.models import ModelBundle
>>> from pixsearch.indexer.sources import open_source
>>> folder = tempfile.mkdtemp()
>>> Image.new("RGB", (32, 24), "red").save(os.path.join(folder, "red.png"))
>>> source = open_source(folder)
>>> read = read_photo(source, source.list().files[0], reusable=set())
>>> rows = RowMaker(ModelBundle.load()).encode([read])
>>> rows.num_rows, rows.column("width").to_pylist(), rows.column("format").to_pylist()
(1, [32], ['PNG'])
"""

from __future__ import annotations

import hashlib
from collections.abc import Container, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa

from pixsearch.db.schema import photo_schema
from pixsearch.indexer import preprocess
from pixsearch.indexer.policy import photo_is_restricted
from pixsearch.indexer.preprocess import DecodedPhoto
from pixsearch.indexer.scan import PhotoEntry
from pixsearch.indexer.sources import PhotoSource


def schema_for_bundle(bundle: Any) -> pa.Schema:
    """The photos-table schema for vectors made by ``bundle`` (its id and dims in metadata)."""
    return photo_schema(
        vector_dim=bundle.vector_dim,
        feature_dim=bundle.feature_dim,
        bundle_id=bundle.id,
        space=bundle.space.name,
        feature_source=feature_source(bundle),
    )


def feature_source(bundle: Any) -> str:
    """Identity of the image encoder that makes the stored ``features`` (its file's sha256)."""
    try:
        return str(bundle.files[bundle.manifest["models"]["image_encoder"]["file"]])
    except (AttributeError, KeyError, TypeError):
        return str(bundle.id)


def photo_id(path: str) -> str:
    """Stable row id of a photo path (16 hex digits).

    >>> photo_id("/photos/cat.jpg")
    '33760b6078e9613f'
    """
    return hashlib.blake2b(path.encode("utf-8"), digest_size=8).hexdigest()


@dataclass
class PhotoRead:
    """One photo after a reader thread read it: its bytes' hash, its caption and, unless its
    content is already indexed (``reusable``), its decoded pixels; or why it failed."""

    entry: PhotoEntry
    content_hash: str = ""
    photo: DecodedPhoto | None = None
    caption: str | None = None
    """The caption the row gets: the sidecar's text, else the photo's EXIF description."""
    error: str | None = None


def read_photo(source: PhotoSource, entry: PhotoEntry, reusable: Container[str]) -> PhotoRead:
    """Read a photo once: hash its bytes, read its caption, decode it unless its hash is in
    ``reusable``. Unreadable and undecodable photos come back with ``error`` set."""
    read = PhotoRead(entry)
    try:
        handle, opened = source.open(entry.path)
        with handle:
            found = preprocess.read_photo(handle, reusable)
            description = _description(handle) if found.photo is None else None
    except OSError as error:
        read.error = f"cannot read: {getattr(error, 'strerror', None) or error}"
        return read
    # Keep the listed size/mtime (what the next run compares) unless the file changed since.
    if opened.size != entry.size or opened.mtime_ns not in (0, entry.mtime_ns):
        read.entry = replace(entry, size=opened.size, mtime_ns=opened.mtime_ns)
    read.content_hash, read.photo, read.error = found.content_hash, found.photo, found.error
    if read.error is None:
        sidecar = source.sidecar_caption(entry)
        photo_caption = read.photo.description if read.photo is not None else description
        read.caption = sidecar or photo_caption
    return read


def _description(handle: BinaryIO) -> str | None:
    """A photo's EXIF description from its header alone (no pixels decoded)."""
    from PIL import Image, UnidentifiedImageError

    from pixsearch.indexer.preprocess import _exif_description

    try:
        handle.seek(0)
        return _exif_description(Image.open(handle))
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None


class RowMaker:
    """Makes photos-table rows for one model bundle (schema, encoders, policy threshold)."""

    def __init__(self, bundle: Any) -> None:
        self.bundle = bundle
        self.schema = schema_for_bundle(bundle)
        classifier = getattr(bundle, "child_classifier", None)
        self._classifier = classifier
        self.threshold = float(classifier.threshold) if classifier is not None else float("inf")
        """Score at or above which a photo is restricted (inf without a classifier)."""

    def child_scores(self, features: np.ndarray) -> np.ndarray:
        """The bundle's child-photo classifier scores (zeros when the bundle has none)."""
        if self._classifier is None:
            return np.zeros(len(features), dtype=np.float32)
        return np.asarray(self._classifier.scores(features), dtype=np.float32)

    def encode(self, reads: list[PhotoRead]) -> pa.Table:
        """Rows for decoded photos: one forward pass of the image encoder for the batch."""
        if not reads:
            return self.schema.empty_table()
        pixels = np.stack([read.photo.pixels for read in reads if read.photo is not None])
        features, _logits = self.bundle.image_encoder.encode(pixels)
        vectors = self.bundle.space.image_vectors(features)
        scores = self.child_scores(features)
        now = datetime.now(UTC)
        rows = []
        for i, read in enumerate(reads):
            assert read.photo is not None
            rows.append(
                {
                    **_file_fields(read, now),
                    "width": read.photo.width,
                    "height": read.photo.height,
                    "format": read.photo.format,
                    "vector": vectors[i],
                    "features": features[i],
                    "child_score": float(scores[i]),
                    "restricted": photo_is_restricted(scores[i], self.threshold, read.caption),
                }
            )
        return self.to_arrow(rows)

    def reuse(self, reads: list[PhotoRead], stored: dict[str, dict[str, Any]]) -> pa.Table:
        """Rows for photos whose content is stored already (``stored``: content hash -> row):
        pixels facts and vectors are copied, the caption and its verdict are the photo's own."""
        now = datetime.now(UTC)
        rows = []
        for read in reads:
            source = stored[read.content_hash]
            verdict = photo_is_restricted(source["child_score"], self.threshold, read.caption)
            rows.append({**source, **_file_fields(read, now), "restricted": verdict})
        return self.to_arrow(rows)

    def reproject(self, rows: pa.Table) -> pa.Table:
        """Rows with new ``vector``, ``child_score`` and ``restricted`` from their ``features``
        (same image encoder, new embedding space or classifier: no photo decoded)."""
        features_column = rows.column("features").combine_chunks()
        width = features_column.type.list_size
        features = (
            features_column.values.to_numpy(zero_copy_only=False)
            .reshape(-1, width)
            .astype(np.float32)
        )
        vectors = np.asarray(self.bundle.space.image_vectors(features), dtype=np.float32)
        scores = self.child_scores(features)
        captions = rows.column("caption").to_pylist()
        restricted = [
            photo_is_restricted(score, self.threshold, caption)
            for score, caption in zip(scores, captions, strict=True)
        ]
        now = [datetime.now(UTC)] * rows.num_rows
        replacements = {
            "vector": pa.FixedSizeListArray.from_arrays(
                pa.array(vectors.ravel()), vectors.shape[1]
            ),
            "child_score": pa.array(scores, type=pa.float32()),
            "restricted": pa.array(restricted, type=pa.bool_()),
            "indexed_at": pa.array(now, type=pa.timestamp("us", "UTC")),
        }
        for name, column in replacements.items():
            index = rows.schema.get_field_index(name)
            rows = rows.set_column(index, self.schema.field(name), column)
        return rows.select(self.schema.names).cast(self.schema)

    def to_arrow(self, rows: Iterable[dict[str, Any]]) -> pa.Table:
        """Rows (dicts) as an Arrow table of the photos schema."""
        rows = list(rows)
        if not rows:
            return self.schema.empty_table()
        columns: dict[str, Any] = {}
        for name in self.schema.names:
            values = [row[name] for row in rows]
            kind = self.schema.field(name).type
            if name in ("vector", "features"):
                dtype = np.float16 if name == "features" else np.float32
                flat = np.asarray(
                    np.stack([np.asarray(v, dtype=np.float32) for v in values]), dtype=dtype
                ).ravel()
                columns[name] = pa.FixedSizeListArray.from_arrays(pa.array(flat), kind.list_size)
            else:
                columns[name] = pa.array(values, type=kind)
        return pa.table(columns, schema=self.schema)


def _file_fields(read: PhotoRead, now: datetime) -> dict[str, Any]:
    """The columns that describe the file (not its pixels): id, path, hash, size, caption."""
    return {
        "id": photo_id(read.entry.path),
        "path": read.entry.path,
        "content_hash": read.content_hash,
        "size": read.entry.size,
        "mtime_ns": read.entry.mtime_ns,
        "caption": read.caption,
        "caption_source": read.entry.caption_key,
        "indexed_at": now,
    }
