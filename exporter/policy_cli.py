"""CLI command ``pixsearch train-policy``: train the child-photo classifier, add it to the bundle.

Importing this module is cheap: typer and the typed errors only; numpy, scikit-learn and
onnx are imported when the command runs (:mod:`pixsearch.exporter.child_classifier`).

>>> import typer
>>> app = typer.Typer()
>>> register(app)
>>> [c.name for c in app.registered_commands]
['train-policy']
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pixsearch.search.commands import RESEARCH_PANEL


def train_policy(
    data: Annotated[
        Path, typer.Argument(help="data folder holding flickr8k/ and practicum/ (captions, photos)")
    ],
    bundle: Annotated[
        Path | None,
        typer.Option(
            "--bundle", help="bundle folder to add the classifier to (default: installed)"
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="folder for model_card.md and metrics.json")
    ] = Path("policy-report"),
    recall: Annotated[
        float,
        typer.Option("--recall", min=0.5, max=1.0, help="recall the threshold keeps on validation"),
    ] = 0.95,
    person_recall: Annotated[
        float,
        typer.Option(
            "--person-recall",
            min=0.5,
            max=1.0,
            help="recall of the person gate on the validation photos with people",
        ),
    ] = 0.99,
    person_gate: Annotated[
        bool,
        typer.Option(
            "--person-gate/--no-person-gate",
            help="restrict only photos that pass the person gate (--no-person-gate: child alone)",
        ),
    ] = True,
    seed: Annotated[int, typer.Option(help="seed of the grouped split and the MLPs")] = 42,
    cache_dir: Annotated[
        Path | None, typer.Option(help="feature cache (default ~/.cache/pixsearch/features)")
    ] = None,
    write_bundle: Annotated[
        bool,
        typer.Option("--write-bundle/--no-write-bundle", help="add the model to the bundle"),
    ] = True,
) -> None:
    """Train the child-photo classifier of the content policy and add it to the model bundle.

    Labels: a photo shows a child when at least 2 of its 5 captions are about children, a
    person when a caption names one. Rule: restricted = person_present AND child_score >= t; the
    person gate keeps --person-recall of the validation photos with people, and t is the highest
    that keeps --recall of the combined rule on a validation split grouped by photo.
    """
    from pixsearch.exporter.workflow_cli import require_train_extra

    require_train_extra("sklearn", "onnx")
    from pixsearch.exporter.child_classifier import run_train_policy

    report = run_train_policy(
        data,
        bundle_dir=bundle,
        out_dir=out,
        target_recall=recall,
        seed=seed,
        cache_dir=cache_dir,
        write_bundle=write_bundle,
        person_recall=person_recall if person_gate else None,
        log=lambda line: typer.echo(line, err=True),
    )
    c, v = report.classifier, report.classifier.validation
    typer.echo(
        f"{c.name}: threshold {c.threshold:.6f}; validation ROC-AUC {v['roc_auc']:.4f}, "
        f"recall {v['recall']:.3f}, false-positive rate {v['false_positive_rate']:.3f}; "
        f"customer photos flagged {report.customer['flagged']}/{report.customer['photos']}"
    )
    if c.person:
        g = c.person
        typer.echo(
            f"person gate: {g['model']} at recall {g['target_recall']:g} (probability "
            f"{g['person_threshold']:.6f}), child probability {g['child_threshold']:.6f}"
        )
    if report.bundle_id:
        typer.echo(f"bundle {report.bundle_dir}: id {report.bundle_id} (run `pixsearch reindex`)")
    typer.echo(f"wrote {report.card_path}")


def register(app: typer.Typer) -> None:
    """Add ``train-policy`` to the ``pixsearch`` app."""
    app.command("train-policy", rich_help_panel=RESEARCH_PANEL)(train_policy)
