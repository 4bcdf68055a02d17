"""One relevance score in [0, 1] out of three expert votes and a crowd share.

The rule (``merge_scores``):

1. expert part: the mean of the three votes mapped linearly from 1..4 to 0..1,
   ``(mean(e1, e2, e3) - 1) / 3``. The mean, not the majority, because on ~2% of pairs all three
   experts disagree and a majority does not exist; the mean also keeps the graded signal
   (2 = "partly describes") that a vote count would throw away.
2. crowd part: ``share_yes``, the share of (usually three) crowd workers who said "matches".
3. where both exist: ``0.6 * expert + 0.4 * crowd``. Experts answer a graded question and are
   trained; crowd workers answer yes/no and are more numerous but noisier, so the experts weigh
   more; the crowd still breaks ties between experts and corrects single outliers.
   Where only the experts voted: the expert part alone. Where only the crowd voted: the crowd
   share alone (such pairs are used only on request, see ``include_crowd_only``).

>>> expert_relevance(1, 1, 1), expert_relevance(4, 4, 4), round(expert_relevance(1, 2, 4), 4)
(0.0, 1.0, 0.4444)
>>> merge_one(e=(4, 4, 3), share_yes=1.0)
0.9333333333333333
>>> merge_one(e=(4, 4, 3), share_yes=None)
0.8888888888888888
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

EXPERT_MIN, EXPERT_MAX = 1, 4
EXPERT_WEIGHT = 0.6
"""Weight of the expert part where a crowd label exists too (the crowd gets the rest)."""


def expert_relevance(e1: float, e2: float, e3: float) -> float:
    """Mean of three 1..4 votes mapped to 0..1."""
    mean = (e1 + e2 + e3) / 3.0
    return (mean - EXPERT_MIN) / (EXPERT_MAX - EXPERT_MIN)


def merge_one(
    e: tuple[float, float, float] | None,
    share_yes: float | None,
    expert_weight: float = EXPERT_WEIGHT,
) -> float:
    """The merged score of one pair; ``None`` (or NaN) marks a missing part.

    >>> merge_one(None, 0.5)
    0.5
    """
    has_e = e is not None and not any(math.isnan(v) for v in e)
    has_c = share_yes is not None and not math.isnan(share_yes)
    if has_e and has_c:
        return expert_weight * expert_relevance(*e) + (1 - expert_weight) * share_yes
    if has_e:
        return expert_relevance(*e)
    if has_c:
        return float(share_yes)
    raise ValueError("a pair needs expert votes or a crowd share to get a score")


def merge_scores(
    pairs: pd.DataFrame,
    *,
    expert_weight: float = EXPERT_WEIGHT,
    include_crowd_only: bool = False,
) -> pd.DataFrame:
    """Add ``expert_score``, ``expert_spread`` and ``score`` columns (vectorised ``merge_one``).

    ``pairs`` needs ``e1, e2, e3, share_yes`` (NaN where absent). Pairs without expert votes
    are dropped unless ``include_crowd_only``; the returned frame says why in ``attrs``.

    >>> import pandas as pd
    >>> df = pd.DataFrame({"e1": [1, 4, None], "e2": [1, 4, None], "e3": [2, 3, None],
    ...                    "share_yes": [None, 1.0, 0.5]})
    >>> merge_scores(df)["score"].round(4).tolist()
    [0.1111, 0.9333]
    >>> merge_scores(df, include_crowd_only=True)["score"].round(4).tolist()
    [0.1111, 0.9333, 0.5]
    """
    import numpy as np

    if not 0.0 <= expert_weight <= 1.0:
        raise ValueError(f"expert_weight must lie in [0, 1], got {expert_weight}")
    votes = pairs[["e1", "e2", "e3"]].to_numpy(dtype=float)
    expert = (votes.mean(axis=1) - EXPERT_MIN) / (EXPERT_MAX - EXPERT_MIN)
    crowd = pairs["share_yes"].to_numpy(dtype=float)
    has_e, has_c = ~np.isnan(expert), ~np.isnan(crowd)
    score = np.where(
        has_e & has_c,
        expert_weight * expert + (1 - expert_weight) * np.nan_to_num(crowd),
        np.where(has_e, expert, crowd),
    )
    out = pairs.copy()
    out["expert_score"] = expert
    out["expert_spread"] = votes.max(axis=1) - votes.min(axis=1)
    out["score"] = score
    keep = has_e | (include_crowd_only & has_c)
    out = out[keep].reset_index(drop=True)
    out.attrs["dropped_crowd_only"] = int((~has_e & has_c).sum()) if not include_crowd_only else 0
    return out
