"""``pixsearch train-tower``: data -> trunk activations -> fine-tuning -> export -> install.

The fine-tuning always starts from the ImageNet checkpoint (never from an installed fine-tuned
encoder), so the same data and seed give the same encoder.

>>> from pixsearch.exporter.tower_train import TowerConfig
>>> run_train_tower("../shared/data", config=TowerConfig(epochs=1))   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pixsearch.exporter.tower_train import TowerConfig, TrainedTower

Log = Callable[[str], None]


def run_train_tower(
    data_dir: str | Path,
    *,
    bundle_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    config: TowerConfig | None = None,
    install: bool = True,
    log: Log = lambda m: None,
) -> tuple[TrainedTower, dict[str, Any] | None]:
    """Fine-tune the image tower on the shared data; install it unless ``install`` is False.

    Returns the trained weights and the new manifest (``None`` without ``install``)."""
    from pixsearch.exporter import _sources as sources
    from pixsearch.exporter.tower_eval import prepare
    from pixsearch.exporter.tower_export import install_tower
    from pixsearch.exporter.tower_train import train_tower
    from pixsearch.indexer.models import ModelBundle

    config = config or TowerConfig()
    bundle = ModelBundle.load(bundle_dir)
    prepared = prepare(data_dir, bundle, cache_dir=cache_dir, seed=config.seed, log=log)
    trained = train_tower(sources.load_image_model(), prepared.tower_data, config, log=log)
    log(f"fine-tuned in {trained.seconds:.0f} s")
    manifest = install_tower(trained, bundle.path, log=log) if install else None
    return trained, manifest
