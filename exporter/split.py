"""Seeded train/validation split grouped by photo: no photo lies in both parts.

Grouping by image matters: a model that saw a photo with other captions in training would be
scored on memory of that photo, not on matching new text to new photos.

>>> import pandas as pd
>>> df = pd.DataFrame({"image": list("aabbccddee"), "y": range(10)})
>>> train, val = grouped_split(df, test_size=0.2, seed=0)
>>> set(df.image[train]).isdisjoint(df.image[val]), len(train) + len(val)
(True, 10)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

DEFAULT_SEED = 42
DEFAULT_TEST_SIZE = 0.2


def grouped_split(
    frame: pd.DataFrame,
    *,
    group: str = "image",
    test_size: float = DEFAULT_TEST_SIZE,
    seed: int = DEFAULT_SEED,
) -> tuple[np.ndarray, np.ndarray]:
    """Row positions ``(train, validation)`` from scikit-learn ``GroupShuffleSplit``.

    ``test_size`` is the share of *groups* (photos) held out, so the share of rows is close to
    it but not exact.
    """
    from sklearn.model_selection import GroupShuffleSplit

    if frame.empty:
        raise ValueError("cannot split an empty table")
    splitter = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
    train, val = next(splitter.split(frame, groups=frame[group].to_numpy()))
    return train, val
