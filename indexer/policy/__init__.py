"""Content policy: detect references to children and apply a market's profile.

Training's legal filter, indexing and querying all call these functions.

>>> from pixsearch.indexer.policy import check_query, get_profile
>>> decision = check_query("a toddler in a pool", get_profile())
>>> decision.blocked, decision.message == get_profile().disclaimer, decision.terms
(True, True, ['toddler'])
"""

from __future__ import annotations

from pixsearch.indexer.policy.photos import (
    caption_about_children,
    photo_is_restricted,
    restriction_filters,
)
from pixsearch.indexer.policy.profiles import (
    DEFAULT_DISCLAIMER,
    DEFAULT_PROFILE,
    DISCLAIMER_ENV,
    PROFILES,
    PolicyDecision,
    PolicyProfile,
    check_query,
    default_disclaimer,
    get_profile,
)
from pixsearch.indexer.policy.text import find_child_terms, is_about_children, normalize

__all__ = [
    "DEFAULT_DISCLAIMER",
    "DEFAULT_PROFILE",
    "DISCLAIMER_ENV",
    "PROFILES",
    "PolicyDecision",
    "PolicyProfile",
    "caption_about_children",
    "check_query",
    "default_disclaimer",
    "find_child_terms",
    "get_profile",
    "is_about_children",
    "normalize",
    "photo_is_restricted",
    "restriction_filters",
]
