"""The legal filter: no text about children reaches training, evaluation or examples.

One rule (:func:`pixsearch.indexer.policy.is_about_children`) for training and search; the
filter drops the pairs whose query text it flags and counts what it removed.

>>> import pandas as pd
>>> pairs = pd.DataFrame({"image": ["a.jpg", "a.jpg", "b.jpg"], "query_id": ["q1", "q2", "q2"],
...                       "query_text": ["a boy runs", "a dog", "a dog"], "score": [1.0, 0.0, 1.0]})
>>> kept, report = apply_legal_filter(pairs, predicate=lambda text: "boy" in text)
>>> len(kept), report.pairs_removed, report.queries_removed, report.images_removed
(2, 1, 1, 0)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pixsearch.db.errors import PixsearchError

if TYPE_CHECKING:
    import pandas as pd

Predicate = Callable[[str], bool]


DEFAULT_DISCLAIMER = (
    "This image is unavailable in your country in compliance with local legislation."
)


def children_predicate() -> Predicate:
    """``pixsearch.indexer.policy.is_about_children`` (the one rule training and search share)."""
    try:
        from pixsearch.indexer.policy import is_about_children
    except ImportError as error:
        raise PixsearchError(
            "the content policy pixsearch.indexer.policy is not installed in this checkout; "
            "update pixsearch (the legal filter cannot be skipped)"
        ) from error
    return is_about_children


def policy_disclaimer() -> str:
    """The policy's disclaimer text, or a default while the policy module has none."""
    try:
        from pixsearch.indexer import policy
    except ImportError:
        return DEFAULT_DISCLAIMER
    for name in ("default_disclaimer", "DEFAULT_DISCLAIMER", "DISCLAIMER"):
        value = getattr(policy, name, None)
        if isinstance(value, str):
            return value
        if callable(value):
            try:
                return str(value())
            except TypeError:
                continue
    return DEFAULT_DISCLAIMER


@dataclass
class LegalFilterReport:
    """What the legal filter removed (pairs whose text is about children)."""

    pairs_before: int = 0
    pairs_removed: int = 0
    queries_before: int = 0
    queries_removed: int = 0
    images_before: int = 0
    images_removed: int = 0
    """Photos left with no pair at all after the filter."""
    images_touched: int = 0
    """Photos that lost at least one pair."""
    mean_score_before: float = float("nan")
    mean_score_after: float = float("nan")
    images_with_child_captions: int = 0
    """Kept photos whose own captions are mostly about children (counted, not removed)."""
    examples: list[str] = field(default_factory=list)

    def to_markdown(self) -> str:
        """A small Markdown table: before, removed, after."""
        rows = [
            ("pairs", self.pairs_before, self.pairs_removed),
            ("queries", self.queries_before, self.queries_removed),
            ("images", self.images_before, self.images_removed),
        ]
        lines = ["| | before | removed | after |", "|---|---|---|---|"]
        lines += [f"| {name} | {b} | {r} | {b - r} |" for name, b, r in rows]
        return "\n".join(lines)


def apply_legal_filter(
    pairs: pd.DataFrame,
    predicate: Predicate | None = None,
    *,
    captions: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, LegalFilterReport]:
    """Drop pairs whose ``query_text`` is about children; count pairs, queries and images removed.

    ``predicate`` defaults to :func:`children_predicate`. With ``captions`` (query_id, image,
    caption) the report also counts kept photos whose own captions are mostly about children
    (the brief removes texts; those photos stay and are only counted).
    """
    predicate = predicate or children_predicate()
    verdict = {text: bool(predicate(text)) for text in pairs["query_text"].unique()}
    about = pairs["query_text"].map(verdict).astype(bool)
    kept = pairs[~about].reset_index(drop=True)
    report = LegalFilterReport(
        pairs_before=len(pairs),
        pairs_removed=int(about.sum()),
        queries_before=int(pairs["query_id"].nunique()),
        queries_removed=int(pairs["query_id"].nunique() - kept["query_id"].nunique()),
        images_before=int(pairs["image"].nunique()),
        images_removed=int(pairs["image"].nunique() - kept["image"].nunique()),
        images_touched=int(pairs.loc[about, "image"].nunique()),
        examples=[t for t, v in verdict.items() if v][:5],
    )
    if "score" in pairs:
        report.mean_score_before = float(pairs["score"].mean())
        report.mean_score_after = float(kept["score"].mean()) if len(kept) else float("nan")
    if captions is not None and len(captions):
        own = captions[captions["image"].isin(set(kept["image"]))]
        flags = own["caption"].map(lambda t: bool(predicate(t)))
        share = flags.groupby(own["image"]).mean()
        report.images_with_child_captions = int((share > 0.5).sum())
    return kept, report
