"""CLI commands ``pixsearch train-tower`` and ``pixsearch retrain`` (issue #13).

``train-tower DATA`` fine-tunes EfficientNet-Lite0's last blocks (multi-task: joint space,
child head, ImageNet distillation; :mod:`pixsearch.exporter.tower_train`) and installs the
result as the bundle's image encoder. ``retrain DATA`` rebuilds every learned part of the
bundle that reads image features, from the shared data and one seed: the image tower, then the
joint space with its label-bridge mix and calibrator (``train-space``), then the child-photo
classifier (``train-policy --only photos``). The bundle id changes; ``pixsearch reindex``
upgrades a database made with the old one.

Importing this module is cheap (typer only); torch is imported when a command runs.

>>> import typer
>>> app = typer.Typer()
>>> register(app)
>>> [c.name for c in app.registered_commands]
['train-tower', 'retrain']
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from pixsearch.exporter.space_cli import require_data_folder
from pixsearch.search.commands import RESEARCH_PANEL

DataArgument = Annotated[Path, typer.Argument(help="data folder holding flickr8k/ and practicum/")]
BundleOption = Annotated[
    Path | None,
    typer.Option(
        "--bundle",
        help="bundle folder to train from and install into "
        "[default: the packaged bundle, or $PIXSEARCH_BUNDLE]",
    ),
]
SeedOption = Annotated[int, typer.Option(help="seed of the splits and the training")]
EpochsOption = Annotated[int | None, typer.Option(help="fine-tuning epochs [default: 8]")]
WiseOption = Annotated[
    float | None,
    typer.Option(
        help="WiSE-FT: ship alpha * fine-tuned + (1 - alpha) * ImageNet weights "
        "[default: the shipped setting]"
    ),
]
CacheOption = Annotated[
    Path | None,
    typer.Option(help="feature and activation cache (default ~/.cache/pixsearch/features)"),
]


def _log(message: str) -> None:
    typer.echo(message, err=True)


def _fine_tune(
    data: Path,
    bundle: Path | None,
    seed: int,
    epochs: int | None,
    cache: Any,
    wise_alpha: float | None = None,
) -> None:
    from pixsearch.exporter.workflow_cli import require_train_extra

    require_data_folder(data)
    require_train_extra("torch", "onnx")
    from pixsearch.exporter.tower_run import run_train_tower
    from pixsearch.exporter.tower_train import TowerConfig

    config = TowerConfig(seed=seed)
    if epochs is not None:
        config.epochs = epochs
    if wise_alpha is not None:
        config.wise_alpha = wise_alpha
    run_train_tower(data, bundle_dir=bundle, cache_dir=cache, config=config, log=_log)


def train_tower(
    data: DataArgument,
    bundle: BundleOption = None,
    seed: SeedOption = 42,
    epochs: EpochsOption = None,
    wise_alpha: WiseOption = None,
    cache_dir: CacheOption = None,
) -> None:
    """Fine-tune the image encoder's last blocks and install it (then run train-space and
    train-policy, or use retrain, which runs all three)."""
    _fine_tune(data, bundle, seed, epochs, cache_dir, wise_alpha)


def retrain(
    data: DataArgument,
    bundle: BundleOption = None,
    out: Annotated[
        Path, typer.Option("--out", help="folder for the model cards (space/, policy/)")
    ] = Path("retrain-report"),
    seed: SeedOption = 42,
    epochs: EpochsOption = None,
    wise_alpha: WiseOption = None,
    cache_dir: CacheOption = None,
) -> None:
    """Rebuild every learned part that reads photos: image tower, joint space, child classifier."""
    from pixsearch.exporter.policy_cli import train_policy
    from pixsearch.exporter.space_cli import train_space

    _fine_tune(data, bundle, seed, epochs, cache_dir, wise_alpha)
    train_space(data, bundle=bundle, out=out / "space", seed=seed, cache_dir=cache_dir)
    train_policy(
        data, bundle=bundle, out=out / "policy", seed=seed, cache_dir=cache_dir, only="photos"
    )


def register(app: typer.Typer) -> None:
    """Add ``train-tower`` and ``retrain`` to ``app``."""
    app.command("train-tower", rich_help_panel=RESEARCH_PANEL)(train_tower)
    app.command("retrain", rich_help_panel=RESEARCH_PANEL)(retrain)
