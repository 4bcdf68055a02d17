"""Typed exceptions of the indexer layer: the model bundle and photo decoding.

>>> issubclass(ModelBundleError, PixsearchError), issubclass(ImageDecodeError, PixsearchError)
(True, True)
"""

from __future__ import annotations

from pixsearch.db.errors import PixsearchError


class ModelBundleError(PixsearchError):
    """A model bundle file is missing, changed or unreadable."""


class ImageDecodeError(PixsearchError):
    """One photo could not be read or decoded (the indexer records it and goes on)."""


class PhotoChangedError(ImageDecodeError):
    """A photo file is gone or holds other bytes than were indexed: its pixels are not shown
    (what the content policy judged is what was indexed). ``pixsearch index`` refreshes it."""
