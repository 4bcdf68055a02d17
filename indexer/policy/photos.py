"""The policy's photo-side rules: when a photo is restricted, and which filter a profile needs.

Indexing, re-indexing, re-projection and serving all ask these two questions here, so the rule
exists once.

>>> photo_is_restricted(0.2, 0.5, "a dog on a beach")
False
>>> photo_is_restricted(0.7, 0.5, None), photo_is_restricted(0.1, 0.5, "my kids at the zoo")
(True, True)
>>> from pixsearch.indexer.policy.profiles import get_profile
>>> restriction_filters(get_profile("strict")), restriction_filters(get_profile("none"))
([Filter(field='restricted', op='=', value=False)], [])
"""

from __future__ import annotations

from pixsearch.db.filters import Filter
from pixsearch.indexer.policy.profiles import PolicyProfile
from pixsearch.indexer.policy.text import is_about_children

RESTRICTED_FIELD = "restricted"
"""The photos-table column that records the policy's verdict on a photo."""


def caption_about_children(caption: str | None) -> bool:
    """True when a user's caption of a photo is about children (the policy's text detector).

    >>> caption_about_children(None), caption_about_children("two toddlers")
    (False, True)
    """
    return bool(caption) and is_about_children(caption)


def photo_is_restricted(child_score: float, threshold: float, caption: str | None) -> bool:
    """A photo is restricted when the image classifier flags it or its caption is about children.

    ``threshold`` is the classifier's (``inf`` when the bundle has no classifier).
    """
    return bool(child_score >= threshold) or caption_about_children(caption)


def restriction_filters(profile: PolicyProfile) -> list[Filter]:
    """The filters a search under ``profile`` must add (none when it shows every photo)."""
    if profile.excludes_restricted_photos:
        return [Filter(RESTRICTED_FIELD, "=", False)]
    return []
