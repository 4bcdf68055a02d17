"""``pixsearch export``: rebuild the ONNX model bundle from the PyTorch models.

Importing this module is cheap: torch, transformers and optimum are imported inside the command.
Errors reach the CLI typed: a missing ``[train]`` extra is a ``MissingExtraError`` (exit 7), a
model that drifts from PyTorch a ``ParityError`` and a damaged bundle a ``ModelBundleError``
(exit 6).

>>> import typer
>>> app = typer.Typer()
>>> register(app)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pixsearch.search.commands import RESEARCH_PANEL


def default_out_dir() -> Path:
    """The package's bundle folder (``indexer/bundle/``), which the runtime loads by default."""
    return Path(__file__).resolve().parents[1] / "indexer" / "bundle"


def register(app: typer.Typer) -> None:
    """Add the ``export`` command to the pixsearch CLI."""

    @app.command("export", rich_help_panel=RESEARCH_PANEL)
    def export(
        out: Annotated[
            Path | None,
            typer.Option(
                "--out",
                metavar="FOLDER",
                help="Folder to write the bundle to [default: the package's bundle folder].",
            ),
        ] = None,
        parity: Annotated[
            bool,
            typer.Option(
                "--parity/--no-parity", help="Refuse to write a model that drifts from PyTorch."
            ),
        ] = True,
        text_encoder_only: Annotated[
            bool,
            typer.Option(
                "--text-encoder-only",
                help="Only export the text encoder and tokenizer again, into an existing bundle "
                "(keeps the trained heads, reranker and child classifier).",
            ),
        ] = False,
    ) -> None:
        """Export the ONNX model bundle from the PyTorch models (needs the train extra)."""
        import os

        from pixsearch.exporter.workflow_cli import require_train_extra

        require_train_extra("torch", "transformers", "optimum", "onnx")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every weight ships in a package
        from pixsearch.exporter.export_bundle import export_bundle, replace_text_encoder

        folder = out or default_out_dir()
        if text_encoder_only:
            manifest = replace_text_encoder(folder, check_parity=parity, log=typer.echo)
        else:
            manifest = export_bundle(folder, check_parity=parity, log=typer.echo)
        typer.echo(f"bundle_id {manifest['bundle_id']}")
