"""CLI commands of the research workflow: ``pixsearch eda`` and ``pixsearch train``.

Importing this module is cheap: it imports only typer and the typed errors; pandas,
matplotlib, scikit-learn and torch are imported inside the commands. The commands join the CLI
through the ``pixsearch.commands`` entry-point group; the CLI prints their errors and picks the
exit codes.

>>> import typer
>>> app = typer.Typer()
>>> register(app)
>>> sorted(c.name for c in app.registered_commands)
['eda', 'train']
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated

import typer

from pixsearch.db.errors import MissingExtraError
from pixsearch.search.commands import RESEARCH_PANEL

TRAIN_EXTRA = 'pip install "pixsearch[train]"'


def require_train_extra(*modules: str) -> None:
    """Raise ``MissingExtraError`` naming the extra if one of ``modules`` is not installed."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtraError(f"{', '.join(missing)} not installed; run: {TRAIN_EXTRA}")


def eda(
    data: Annotated[Path, typer.Argument(help="data folder holding practicum/ (and flickr8k/)")],
    out: Annotated[Path, typer.Option("--out", help="folder for eda.html")] = Path("eda-report"),
    seed: Annotated[int, typer.Option(help="seed for the sample photos")] = 42,
) -> None:
    """Validate the customer's data and write an HTML report with plots."""
    require_train_extra("pandas", "matplotlib")
    from pixsearch.exporter.workflow import run_eda

    path = run_eda(data, out, seed=seed)
    typer.echo(f"wrote {path}")


def train(
    data: Annotated[Path, typer.Argument(help="data folder holding practicum/ (and flickr8k/)")],
    out: Annotated[Path, typer.Option("--out", help="folder for the model card")] = Path(
        "train-report"
    ),
    seed: Annotated[int, typer.Option(help="seed of the split and the MLP")] = 42,
    test_size: Annotated[float, typer.Option(help="share of photos held out")] = 0.2,
    cache_dir: Annotated[
        Path | None, typer.Option(help="feature cache (default ~/.cache/pixsearch/features)")
    ] = None,
    crowd_only: Annotated[
        bool, typer.Option("--crowd-only/--no-crowd-only", help="also train on crowd-only pairs")
    ] = False,
    max_images: Annotated[int | None, typer.Option(help="use a seeded subset of photos")] = None,
) -> None:
    """Train constant / linear / MLP relevance models and compare them on RMSE."""
    require_train_extra("pandas", "sklearn", "torch", "matplotlib")
    from pixsearch.exporter.regression import results_markdown
    from pixsearch.exporter.workflow import run_train

    result = run_train(
        data,
        out,
        seed=seed,
        test_size=test_size,
        cache_dir=cache_dir,
        include_crowd_only=crowd_only,
        max_images=max_images,
        log=lambda message: typer.echo(message, err=True),
    )
    typer.echo(results_markdown(result.results))
    typer.echo(f"wrote {result.card}")


def register(app: typer.Typer) -> None:
    """Add the ``eda`` and ``train`` commands to ``app``."""
    app.command("eda", rich_help_panel=RESEARCH_PANEL)(eda)
    app.command("train", rich_help_panel=RESEARCH_PANEL)(train)
