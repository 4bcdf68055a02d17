"""Structured filters: (field, operator, value), validated against the schema.

User strings are never pasted into SQL: the field must be one of ``FILTER_FIELDS``, the operator
one of ``OPERATORS``, and the value is converted to the field's type and quoted as a literal.

>>> Filter("width", ">=", 1000).to_sql()
'width >= 1000'
>>> parse_filter("format=jpeg").to_sql()
"format = 'JPEG'"
>>> parse_filter("format=jpg").to_sql()
"format = 'JPEG'"
>>> parse_filter("path~it's").to_sql()
"lower(path) LIKE '%it''s%' ESCAPE '\\\\'"
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pixsearch.db.errors import InvalidInputError

FILTER_FIELDS: dict[str, type] = {
    "path": str,
    "format": str,
    "caption": str,
    "content_hash": str,
    "width": int,
    "height": int,
    "size": int,
    "mtime_ns": int,
    "child_score": float,
    "restricted": bool,
}
"""Fields a filter may name, with the Python type of their values."""

ENUMERATED_FIELDS: dict[str, dict[str, str]] = {"format": {"JPG": "JPEG", "TIF": "TIFF"}}
"""Fields holding one of a few names, stored upper-case (Pillow's format names: JPEG, PNG,
WEBP...): a value is compared case-insensitively (upper-cased, common aliases mapped)."""

OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "~")
"""``~`` means "contains" (case-insensitive) and applies to text fields only."""

_ORDER_OPERATORS = {"<", "<=", ">", ">="}
_PARSE = re.compile(r"^\s*([A-Za-z_]+)\s*(!=|<=|>=|=|<|>|~)\s*(.*?)\s*$", re.DOTALL)


@dataclass(frozen=True)
class Filter:
    """One condition on a photo's metadata, e.g. ``Filter("format", "=", "PNG")``."""

    field: str
    op: str
    value: Any

    def __post_init__(self) -> None:
        if self.field not in FILTER_FIELDS:
            raise InvalidInputError(
                f"unknown filter field {self.field!r}; valid fields: {', '.join(FILTER_FIELDS)}"
            )
        if self.op not in OPERATORS:
            raise InvalidInputError(
                f"unknown filter operator {self.op!r}; valid operators: {' '.join(OPERATORS)}"
            )
        kind = FILTER_FIELDS[self.field]
        if self.op == "~" and kind is not str:
            raise InvalidInputError(f"'~' (contains) works on text fields, not on {self.field!r}")
        if self.op in _ORDER_OPERATORS and kind is bool:
            raise InvalidInputError(f"{self.field!r} is true/false: use = or !=")
        object.__setattr__(self, "value", _coerce(self.field, kind, self.value))
        _check_range(self.field, self.value)

    def to_sql(self) -> str:
        """The condition as a LanceDB (DataFusion SQL) predicate with a quoted literal."""
        if self.op == "~":
            pattern = _escape_like(str(self.value).lower())
            return f"lower({self.field}) LIKE {_quote(f'%{pattern}%')} ESCAPE '\\'"
        return f"{self.field} {self.op} {_literal(self.value)}"


def _coerce(field: str, kind: type, value: Any) -> Any:
    if isinstance(value, str) and "\x00" in value:
        raise InvalidInputError(f"filter value for {field!r} contains a NUL character")
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "1", "yes"):
                return True
            if text in ("false", "0", "no"):
                return False
            raise ValueError(value)
        if kind is int:
            if isinstance(value, bool):
                raise ValueError(value)
            return int(str(value).strip()) if isinstance(value, str) else int(value)
        if kind is float:
            number = float(value)
            if number != number:  # NaN
                raise ValueError(value)
            return number
        if field in ENUMERATED_FIELDS:
            name = str(value).strip().upper()
            return ENUMERATED_FIELDS[field].get(name, name)
        return str(value)
    except (TypeError, ValueError) as error:
        raise InvalidInputError(
            f"filter value {value!r} for {field!r} is not a valid {kind.__name__}"
        ) from error


_INT_RANGES = {
    "width": (-(2**31), 2**31 - 1),
    "height": (-(2**31), 2**31 - 1),
    "size": (-(2**63), 2**63 - 1),
    "mtime_ns": (-(2**63), 2**63 - 1),
}
"""Values the integer columns can hold (``int32`` / ``int64`` in ``db/schema.py``)."""


def _check_range(field: str, value: Any) -> None:
    """Refuse a number its column cannot hold (the database would fail on it) or a non-finite one.

    >>> Filter("width", "<", 3_000_000_000)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pixsearch.db.errors.InvalidInputError: filter value 3000000000 for 'width' is out of range: ...
    >>> Filter("child_score", "<", "inf")
    Traceback (most recent call last):
    ...
    pixsearch.db.errors.InvalidInputError: filter value inf for 'child_score' is not a finite number
    """
    if field in _INT_RANGES and isinstance(value, int):
        low, high = _INT_RANGES[field]
        if not low <= value <= high:
            raise InvalidInputError(
                f"filter value {value} for {field!r} is out of range: it holds whole numbers "
                f"from {low} to {high}"
            )
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInputError(f"filter value {value} for {field!r} is not a finite number")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return _quote(str(value))


def parse_filter(text: str) -> Filter:
    """Parse ``FIELD OP VALUE`` as written on the command line (``--where "width>=800"``)."""
    match = _PARSE.match(text)
    if not match:
        raise InvalidInputError(
            f"cannot read filter {text!r}: write FIELD OP VALUE, e.g. 'width>=800' or "
            f"'path~holiday'; operators: {' '.join(OPERATORS)}; fields: {', '.join(FILTER_FIELDS)}"
        )
    field, op, value = match.groups()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return Filter(field, op, value)


def combine(filters: Iterable[Filter | str], *extra_sql: str) -> str | None:
    """AND together filters (objects or CLI strings) and trusted internal predicates."""
    parts = [(f if isinstance(f, Filter) else parse_filter(f)).to_sql() for f in filters]
    parts.extend(extra_sql)
    if not parts:
        return None
    return " AND ".join(f"({part})" for part in parts)
