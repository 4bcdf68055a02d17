"""Thumbnails embedded in the exporter's HTML reports as ``data:`` URIs (one self-contained file).

The reports (EDA, training examples, evaluation) show the training data itself; the runtime's
gallery thumbnails (with the content policy) are :mod:`pixsearch.search.thumbnails`.

>>> import tempfile
>>> from pathlib import Path
>>> from PIL import Image
>>> folder = Path(tempfile.mkdtemp())
>>> Image.new("RGB", (400, 200), "red").save(folder / "red.png")
>>> thumbnail_uri(folder / "red.png").startswith("data:image/jpeg;base64,")
True
>>> thumbnail_uri(folder / "missing.jpg", missing_ok=True) is None
True
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Literal, overload


@overload
def thumbnail_uri(
    path: str | Path, size: int = ..., *, missing_ok: Literal[False] = ...
) -> str: ...
@overload
def thumbnail_uri(path: str | Path, size: int = ..., *, missing_ok: bool) -> str | None: ...
def thumbnail_uri(path: str | Path, size: int = 160, *, missing_ok: bool = False) -> str | None:
    """A JPEG thumbnail (longest side ``size``) of the photo at ``path`` as a ``data:`` URI.

    With ``missing_ok`` an unreadable photo gives ``None`` instead of raising ``OSError``.
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((size, size))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=80)
    except OSError:
        if missing_ok:
            return None
        raise
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
