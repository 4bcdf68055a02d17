"""PyTorch for the exporter: imported on demand, seeded, with a fixed thread count.

>>> with seeded_torch(seed=0, threads=1) as torch:   # doctest: +SKIP
...     torch.rand(1)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from pixsearch.db.errors import MissingExtraError


def require_torch() -> Any:
    """The ``torch`` module, or ``MissingExtraError`` naming the extra to install."""
    try:
        import torch
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise MissingExtraError('training needs PyTorch: pip install "pixsearch[train]"') from error
    return torch


@contextlib.contextmanager
def seeded_torch(*, seed: int, threads: int) -> Iterator[Any]:
    """Seed torch and fix its CPU threads (so results repeat bit for bit); restore threads after."""
    torch = require_torch()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    try:
        yield torch
    finally:
        torch.set_num_threads(old_threads)
