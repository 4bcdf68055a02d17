"""CLI command ``pixsearch train-space``: train the joint space + reranker and install them.

Importing this module is cheap (typer and the typed errors only); torch is imported when the
command runs.

>>> import typer
>>> app = typer.Typer()
>>> register(app)
>>> [c.name for c in app.registered_commands]
['train-space']
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pixsearch.db.errors import InvalidInputError
from pixsearch.search.commands import RESEARCH_PANEL


def require_data_folder(data: Path) -> None:
    """``InvalidInputError`` unless ``data`` holds ``flickr8k/manifest.csv`` and its captions."""
    needed = [data / "flickr8k" / "manifest.csv", data / "flickr8k" / "captions.tsv"]
    missing = [str(path) for path in needed if not path.is_file()]
    if missing:
        raise InvalidInputError(
            f"{data} is not a data folder: {', '.join(missing)} missing (give the folder that "
            "holds flickr8k/ and practicum/)"
        )


def train_space(
    data: Annotated[Path, typer.Argument(help="data folder holding flickr8k/ and practicum/")],
    bundle: Annotated[
        Path | None,
        typer.Option(
            "--bundle",
            help="bundle folder to train from and install into "
            "[default: the packaged bundle, or $PIXSEARCH_BUNDLE]",
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="folder for the model card")] = Path(
        "space-report"
    ),
    seed: Annotated[int, typer.Option(help="seed of the split and the training")] = 42,
    n_val: Annotated[int, typer.Option(help="photos held out for validation")] = 900,
    epochs: Annotated[int | None, typer.Option(help="epochs of the joint towers")] = None,
    text_augment: Annotated[
        float | None,
        typer.Option(
            help="share of training captions embedded by the multilingual encoder instead "
            "of MiniLM (the path Russian queries take) [default: the shipped setting]"
        ),
    ] = None,
    top_n: Annotated[int, typer.Option(help="candidates the reranker rescores")] = 50,
    cache_dir: Annotated[
        Path | None, typer.Option(help="feature cache (default ~/.cache/pixsearch/features)")
    ] = None,
    max_images: Annotated[int | None, typer.Option(help="use a seeded subset of photos")] = None,
    install: Annotated[
        bool, typer.Option("--install/--no-install", help="add the models to the bundle")
    ] = True,
) -> None:
    """Train the joint text-image space and the relevance reranker; write the model card."""
    from pixsearch.exporter.workflow_cli import require_train_extra

    require_data_folder(data)
    require_train_extra("pandas", "sklearn", "torch", "onnx")
    from pixsearch.exporter.joint_space import JointConfig, results_table, run_train_space

    config = JointConfig(seed=seed)
    if epochs is not None:
        config.epochs = epochs
    if text_augment is not None:
        config.text_augment = text_augment
    result = run_train_space(
        data,
        out,
        bundle_dir=bundle,
        cache_dir=cache_dir,
        config=config,
        n_val=n_val,
        seed=seed,
        top_n=top_n,
        install=install,
        max_images=max_images,
        log=lambda message: typer.echo(message, err=True),
    )
    typer.echo(results_table(result.rows))
    m = result.reranker_metrics
    typer.echo(
        f"reranker: RMSE {m['rmse']:.4f}, ECE {m['ece']:.4f} on {m['judged_val_pairs']} "
        "held-out judged pairs"
    )
    typer.echo(f"wrote {result.card}")


def register(app: typer.Typer) -> None:
    """Add the ``train-space`` command to ``app``."""
    app.command("train-space", rich_help_panel=RESEARCH_PANEL)(train_space)
