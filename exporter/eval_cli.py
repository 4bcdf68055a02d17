"""CLI command ``pixsearch eval``: Recall@1/5/10, median rank and nDCG@10 of real searches.

Importing this module is cheap (typer and the typed errors only).

>>> import typer
>>> app = typer.Typer()
>>> register(app)
>>> [c.name for c in app.registered_commands]
['eval']
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pixsearch.db.errors import InvalidInputError
from pixsearch.search.commands import RESEARCH_PANEL


def eval_command(
    queries: Annotated[
        Path, typer.Option("--queries", help="test_queries.csv-format file (|-separated)")
    ],
    images: Annotated[Path, typer.Option("--images", help="folder of the photos to search")],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    policy: Annotated[
        str, typer.Option("--policy", help="content policy: strict (default) or none")
    ] = "strict",
    show: Annotated[
        int, typer.Option("--show", help="write N random queries' best photos to --html")
    ] = 0,
    html: Annotated[Path | None, typer.Option("--html", help="page for --show")] = None,
    pairs: Annotated[
        Path | None,
        typer.Option(
            "--pairs",
            help="also: RMSE of the relevance score on a CSV "
            "image,query_text,score (photos in --images)",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="seed that picks the --show queries")] = 42,
) -> None:
    """Index the photos into a temporary database and measure text -> photo search."""
    if policy not in ("strict", "none"):
        raise InvalidInputError(f"--policy must be strict or none, not {policy!r}")
    if show and html is None:
        raise InvalidInputError("--show N needs --html OUT (the page to write)")
    from pixsearch.exporter.evaluate import (
        evaluate_search,
        score_pairs_rmse,
        write_show_html,
    )

    result = evaluate_search(
        queries,
        images,
        policy=policy,
        show=show,
        seed=seed,
        log=lambda message: typer.echo(message, err=True),
    )
    metrics = dict(result.metrics)
    if pairs is not None:
        scored = score_pairs_rmse(pairs, images)
        metrics.update(
            rmse=scored["rmse"],
            ece=scored["ece"],
            n_pairs=scored["n_pairs"],
            scorer=scored["scorer"],
        )
    if show and html is not None:
        page = write_show_html(result, html, images, show, seed)
        typer.echo(f"wrote {page}", err=True)
    if as_json:
        typer.echo(json.dumps(metrics))
        return
    rows = [
        ("queries (measured)", metrics["n_queries"]),
        ("photos", metrics["n_images"]),
        (f"blocked by policy {policy}", metrics["blocked"]),
        ("Recall@1 %", metrics["recall@1"]),
        ("Recall@5 %", metrics["recall@5"]),
        ("Recall@10 %", metrics["recall@10"]),
        ("median rank", metrics["median_rank"]),
        ("nDCG@10", metrics["ndcg@10"]),
    ]
    if "rmse" in metrics:
        rows += [("relevance RMSE", metrics["rmse"]), ("relevance ECE", metrics["ece"])]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        typer.echo(f"{name:<{width}}  {value}")


def register(app: typer.Typer) -> None:
    """Add the ``eval`` command to ``app``."""
    app.command("eval", rich_help_panel=RESEARCH_PANEL)(eval_command)
