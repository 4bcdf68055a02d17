"""Typed search results and their stable JSON shape.

>>> response = SearchResponse(query="a cat", blocked=False, message=None, results=[])
>>> response.to_dict()["results"]
[]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pixsearch.indexer.fingerprint import Fingerprint
from pixsearch.indexer.policy.profiles import DEFAULT_PROFILE


@dataclass(frozen=True)
class SearchResult:
    """One photo found: where it is, how well it matches, and its stored metadata."""

    path: str
    score: float
    """How well the photo matches (higher is better): the reranker's calibrated relevance in
    [0, 1] when the bundle has one, else the cosine similarity in the search space."""
    id: str
    width: int
    height: int
    format: str
    size: int
    modified: datetime
    indexed_at: datetime
    restricted: bool = False
    child_score: float = 0.0
    caption: str | None = None
    similarity: float | None = None
    """Cosine similarity in the search space (set when a reranker made ``score``)."""
    content_hash: str = field(default="", repr=False)
    """SHA-256 of the file's bytes when indexed: outputs that show the photo check the file
    against it (:attr:`fingerprint`). Not part of :meth:`to_dict`."""

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> SearchResult:
        """Build from a store row (as returned by ``PhotoStore.search``)."""
        return cls(
            path=row["path"],
            score=float(row["score"]),
            id=row["id"],
            width=int(row["width"]),
            height=int(row["height"]),
            format=row["format"],
            size=int(row["size"]),
            modified=datetime.fromtimestamp(row["mtime_ns"] / 1e9, tz=UTC),
            indexed_at=row["indexed_at"],
            restricted=bool(row["restricted"]),
            child_score=float(row["child_score"]),
            caption=row.get("caption"),
            similarity=row.get("similarity"),
            content_hash=row.get("content_hash") or "",
        )

    @property
    def fingerprint(self) -> Fingerprint:
        """What the index says about the file's bytes (check with ``open_indexed``)."""
        return Fingerprint(self.content_hash, self.size)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary: ``path`` and ``score`` first, then the metadata."""
        return {
            "path": self.path,
            "score": round(self.score, 6),
            "id": self.id,
            "width": self.width,
            "height": self.height,
            "format": self.format,
            "size": self.size,
            "modified": self.modified.isoformat(),
            "indexed_at": self.indexed_at.isoformat(),
            "restricted": self.restricted,
            "child_score": round(self.child_score, 6),
            "caption": self.caption,
            "similarity": None if self.similarity is None else round(self.similarity, 6),
        }


@dataclass(frozen=True)
class SearchResponse:
    """The answer to one query: results best first, or ``blocked`` with a message."""

    query: str
    blocked: bool
    message: str | None
    results: list[SearchResult]
    policy: str = DEFAULT_PROFILE
    warnings: list[str] = field(default_factory=list)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    @property
    def paths(self) -> list[str]:
        """Paths of the results, best first."""
        return [result.path for result in self.results]

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape of ``pixsearch search --json``."""
        return {
            "query": self.query,
            "blocked": self.blocked,
            "message": self.message,
            "results": [result.to_dict() for result in self.results],
            "policy": self.policy,
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class DatabaseStats:
    """What a database holds and how its vectors were made."""

    uri: str
    photos: int
    restricted: int
    hidden_by_strict: int
    """Photos a search under ``strict`` never returns (the policy's cost)."""
    bundle_id: str | None
    space: str | None
    vector_dim: int | None
    schema_version: int | None
    table_version: int
    formats: dict[str, int]
    indexes: dict[str, str] = field(default_factory=dict)
    """Each index the table should have -> ``present``, ``missing`` or ``stale`` (the next
    ``index`` or ``reindex`` builds what is not present)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return dict(self.__dict__)
