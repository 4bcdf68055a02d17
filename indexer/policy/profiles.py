"""Policy profiles: what the law of a market forbids, and the disclaimer shown instead.

``strict`` (the default) applies the law: a query about children returns no photos and the
disclaimer, and photos flagged as showing children are kept out of results. ``none`` applies
no restriction. The disclaimer text is configurable: build a profile with another text, pass
``disclaimer=`` to :func:`get_profile`, or set the ``PIXSEARCH_DISCLAIMER`` environment variable
to replace the default text.

>>> decision = check_query("two kids on a swing", get_profile("strict"))
>>> decision.blocked, decision.terms
(True, ['kids'])
>>> check_query("two kids on a swing", get_profile("none")).blocked
False
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from pixsearch.db.environment import DISCLAIMER_ENV as _DISCLAIMER_ENV
from pixsearch.db.environment import environment
from pixsearch.db.errors import InvalidInputError
from pixsearch.indexer.policy.text import find_child_terms

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DEFAULT_DISCLAIMER",
    "DEFAULT_PROFILE",
    "DISCLAIMER_ENV",
    "PROFILES",
    "PolicyDecision",
    "PolicyProfile",
    "QueryScorer",
    "check_query",
    "default_disclaimer",
    "get_profile",
]

#: The disclaimer shown instead of photos, unless ``PIXSEARCH_DISCLAIMER`` is set.
DEFAULT_DISCLAIMER = "This content is unavailable in your country due to local law"
#: The environment variable whose (non-blank) value replaces the default disclaimer.
DISCLAIMER_ENV = _DISCLAIMER_ENV
#: The profile used when none is chosen: the law applies.
DEFAULT_PROFILE = "strict"


def default_disclaimer() -> str:
    """The default disclaimer: ``$PIXSEARCH_DISCLAIMER`` when set and not blank, else the text.

    >>> default_disclaimer() == DEFAULT_DISCLAIMER or DISCLAIMER_ENV in os.environ
    True
    """
    return environment().disclaimer or DEFAULT_DISCLAIMER


@dataclass(frozen=True)
class PolicyProfile:
    """What a market's law requires.

    >>> PolicyProfile("strict-de", True, True, "In Ihrem Land nicht verfügbar").disclaimer
    'In Ihrem Land nicht verfügbar'
    """

    name: str
    blocks_child_queries: bool
    excludes_restricted_photos: bool
    disclaimer: str = DEFAULT_DISCLAIMER


@dataclass(frozen=True)
class PolicyDecision:
    """The outcome of :func:`check_query`: whether to block, what to show, and why.

    ``terms`` are the lexicon's findings; ``learned_score`` is the query classifier's score
    when it was asked (a strict profile, no term found, an embedding given), else ``None``.
    """

    blocked: bool
    message: str | None = None
    terms: list[str] = field(default_factory=list)
    learned_score: float | None = None


class QueryScorer(Protocol):
    """What :func:`check_query` needs of the learned detector
    (:class:`pixsearch.indexer.models.QueryClassifier`)."""

    threshold: float

    def scores(self, features: np.ndarray) -> np.ndarray: ...


#: The built-in profiles, by name, with the built-in disclaimer text (use :func:`get_profile`
#: to get them with ``PIXSEARCH_DISCLAIMER`` applied).
PROFILES: dict[str, PolicyProfile] = {
    "strict": PolicyProfile("strict", blocks_child_queries=True, excludes_restricted_photos=True),
    "none": PolicyProfile("none", blocks_child_queries=False, excludes_restricted_photos=False),
}


def get_profile(name: str = DEFAULT_PROFILE, *, disclaimer: str | None = None) -> PolicyProfile:
    """The profile called ``name`` (case and surrounding spaces ignored).

    Its disclaimer is ``disclaimer`` when given, else ``$PIXSEARCH_DISCLAIMER`` when set,
    else :data:`DEFAULT_DISCLAIMER`.

    >>> get_profile("Strict").blocks_child_queries
    True
    >>> get_profile("none", disclaimer="Not here").disclaimer
    'Not here'
    >>> get_profile("lenient")
    Traceback (most recent call last):
    ...
    pixsearch.db.errors.InvalidInputError: unknown policy profile 'lenient': use one of none, strict
    """
    key = name.strip().lower()
    if key not in PROFILES:
        valid = ", ".join(sorted(PROFILES))
        raise InvalidInputError(f"unknown policy profile {name!r}: use one of {valid}")
    profile = PROFILES[key]
    text = disclaimer if disclaimer is not None else _resolve(profile.disclaimer)
    return dataclasses.replace(profile, disclaimer=text)


def _resolve(disclaimer: str) -> str:
    """The built-in text is replaced by the environment's; a custom text is kept."""
    return default_disclaimer() if disclaimer == DEFAULT_DISCLAIMER else disclaimer


def check_query(
    text: str,
    profile: PolicyProfile,
    *,
    embedding: np.ndarray | None = None,
    classifier: QueryScorer | None = None,
) -> PolicyDecision:
    """Decide whether a search query may run under ``profile``.

    A blocked query must return no photos; ``message`` is the disclaimer to show instead.
    ``terms`` lists the child terms found, also when the profile lets the query run. With the
    query's text ``embedding`` (``[384]`` or ``[1,384]``, the one search computes) and the
    bundle's query ``classifier``, a query the lexicon lets through is also blocked when the
    classifier's score reaches its threshold (the learned second opinion; ``docs/policy.md``).

    >>> check_query("a dog on a beach", get_profile("strict"))
    PolicyDecision(blocked=False, message=None, terms=[], learned_score=None)
    >>> check_query("a CHILD", PolicyProfile("de", True, True, "Nicht verfügbar"))
    PolicyDecision(blocked=True, message='Nicht verfügbar', terms=['child'], learned_score=None)
    """
    terms = find_child_terms(text)
    blocks = profile.blocks_child_queries
    score, learned = None, False
    if blocks and not terms and embedding is not None and classifier is not None:
        score = float(classifier.scores(embedding.reshape(1, -1))[0])
        learned = score >= classifier.threshold
    if blocks and (terms or learned):
        message = _resolve(profile.disclaimer)
        return PolicyDecision(blocked=True, message=message, terms=terms, learned_score=score)
    return PolicyDecision(blocked=False, message=None, terms=terms, learned_score=score)
