"""Composed queries: texts and photos, added and subtracted with weights (as rclip does).

A query is a list of :class:`QueryPart`; each part is a text or a photo (a path or an indexed
photo's id) with a signed weight. Its vector is the weighted sum of the parts' unit vectors in
the search space, made unit length again: ``"a beach" + "sunset" - "people"``.

>>> parse_part("snow:0.5")
QueryPart(text='snow', photo=None, weight=0.5)
>>> parse_part("people", sign=-1)
QueryPart(text='people', photo=None, weight=-1.0)
>>> parse_part("at 10:30").text            # a colon between digits is no weight
'at 10:30'
>>> describe([QueryPart.of_text("a beach"), parse_part("snow:0.5"), parse_part("people", -1)])
'a beach + snow:0.5 - people'
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from pixsearch.db.errors import InvalidInputError
from pixsearch.indexer.preprocess import SUPPORTED_SUFFIXES

_WEIGHT = re.compile(r"^(?P<part>.*[^\d\s:]):(?P<weight>[0-9]*\.?[0-9]+)$", re.DOTALL)
"""``PART:WEIGHT`` where PART does not end in a digit (``10:30`` stays a text)."""
MIN_NORM = 1e-3
"""A combined query shorter than this (parts that cancel out) has no direction to search."""


class PhotoId(str):
    """An indexed photo's row id, never read as a file path (what a server passes on).

    >>> PhotoId("33760b6078e9613f")
    PhotoId('33760b6078e9613f')
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"PhotoId({str(self)!r})"


@dataclass(frozen=True)
class QueryPart:
    """A text or a photo (path or indexed photo id) in a query, with a signed weight.

    >>> QueryPart.of_photo("/p/cat.jpg", -0.5).label
    'photo:/p/cat.jpg:0.5'
    """

    text: str | None = None
    photo: str | None = None
    weight: float = 1.0

    def __post_init__(self) -> None:
        if (self.text is None) == (self.photo is None):
            raise InvalidInputError("a query part is either a text or a photo")
        if not (isinstance(self.weight, int | float) and math.isfinite(self.weight)):
            raise InvalidInputError(f"a weight must be a number, not {self.weight!r}")
        if self.weight == 0:
            raise InvalidInputError("a weight of 0 adds nothing: leave the part out")

    @classmethod
    def of_text(cls, text: str, weight: float = 1.0) -> QueryPart:
        """A text part."""
        return cls(text=text, weight=weight)

    @classmethod
    def of_photo(cls, photo: str | os.PathLike[str], weight: float = 1.0) -> QueryPart:
        """A photo part: a file path, or the id of an indexed photo (a :class:`PhotoId` is
        only looked up as an id)."""
        return cls(photo=photo if isinstance(photo, PhotoId) else os.fspath(photo), weight=weight)

    @property
    def label(self) -> str:
        """How the part reads in a query description (without its sign)."""
        name = self.text if self.text is not None else f"photo:{self.photo}"
        size = abs(self.weight)
        return name if size == 1 else f"{name}:{size:g}"


PartLike = str | os.PathLike[str] | tuple[str | os.PathLike[str], float] | QueryPart
"""What ``add=``/``sub=`` take: a text, a photo path, a ``(value, weight)`` pair or a part."""


def is_photo_file(value: str) -> bool:
    """True when ``value`` names an existing photo file (a supported suffix).

    >>> is_photo_file("a beach"), is_photo_file(__file__)
    (False, False)
    """
    path = os.path.expanduser(value)
    return os.path.splitext(path)[1].lower() in SUPPORTED_SUFFIXES and os.path.isfile(path)


def parse_part(value: str | os.PathLike[str], sign: int = 1) -> QueryPart:
    """One ``--add``/``--sub`` value: ``TEXT``, ``TEXT:WEIGHT``, ``PHOTO`` or ``PHOTO:WEIGHT``
    (``PHOTO``: the path of an existing photo file). ``sign`` is 1 (add) or -1 (subtract)."""
    text = os.fspath(value)
    weight = 1.0
    if not is_photo_file(text):
        match = _WEIGHT.match(text)
        if match:
            text, weight = match["part"], float(match["weight"])
            if weight <= 0:
                raise InvalidInputError(f"a weight must be above 0 (in {value!r})")
    if is_photo_file(text):
        return QueryPart.of_photo(os.path.expanduser(text), sign * weight)
    return QueryPart.of_text(text, sign * weight)


def as_parts(items: Iterable[PartLike] | PartLike | None, sign: int) -> list[QueryPart]:
    """``add=``/``sub=`` of the Python API as parts: strings as :func:`parse_part` reads them,
    ``(value, weight)`` pairs, or :class:`QueryPart` objects (their weight's size is used)."""
    if items is None:
        return []
    if isinstance(items, str | os.PathLike | QueryPart) or _is_pair(items):
        items = [items]  # type: ignore[list-item]
    parts = []
    for item in items:
        if isinstance(item, QueryPart):
            parts.append(QueryPart(item.text, item.photo, sign * abs(item.weight)))
        elif _is_pair(item):
            value, weight = item
            if not isinstance(weight, int | float) or isinstance(weight, bool) or weight <= 0:
                raise InvalidInputError(f"a weight must be a number above 0, not {weight!r}")
            part = parse_part(value, sign)
            parts.append(QueryPart(part.text, part.photo, sign * float(weight)))
        elif isinstance(item, str | os.PathLike):
            parts.append(parse_part(item, sign))
        else:
            raise InvalidInputError(
                f"a query part is a text, a photo path or a (value, weight) pair, not {item!r}"
            )
    return parts


def _is_pair(item: object) -> bool:
    return (
        isinstance(item, tuple)
        and len(item) == 2
        and isinstance(item[1], int | float)
        and not isinstance(item[1], bool)
    )


def describe(parts: Sequence[QueryPart]) -> str:
    """The query as one line: ``a beach + sunset - people:0.5``."""
    line = ""
    for i, part in enumerate(parts):
        if i == 0:
            line = part.label if part.weight > 0 else f"- {part.label}"
        else:
            line += f" {'+' if part.weight > 0 else '-'} {part.label}"
    return line


def combine(vectors: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """The unit-length weighted sum of the parts' (unit) vectors.

    >>> [round(float(x), 3) for x in combine(np.eye(2, dtype=np.float32), [1.0, 1.0])]
    [0.707, 0.707]
    >>> combine(np.eye(2, dtype=np.float32)[[0, 0]], [1.0, -1.0])
    Traceback (most recent call last):
    ...
    pixsearch.db.errors.InvalidInputError: the query's parts cancel out: subtract less
    """
    units = np.asarray(vectors, dtype=np.float64)
    units = units / np.maximum(np.linalg.norm(units, axis=1, keepdims=True), 1e-12)
    total = (np.asarray(weights, dtype=np.float64)[:, None] * units).sum(axis=0)
    norm = float(np.linalg.norm(total))
    if norm < MIN_NORM:
        raise InvalidInputError("the query's parts cancel out: subtract less")
    return (total / norm).astype(np.float32)
