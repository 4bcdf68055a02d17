"""CLI command ``pixsearch train-policy``: train the policy's classifiers, add them to the bundle.

The child-photo classifier (image features) and the query classifier (text embeddings, the
lexicon's learned second opinion); ``--only photos`` / ``--only queries`` trains one of them.

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
    only: Annotated[
        str | None,
        typer.Option(
            "--only",
            help="train only 'photos' (child-photo classifier) or 'queries' (query classifier)",
        ),
    ] = None,
    query_fpr: Annotated[
        float,
        typer.Option(
            "--query-fpr",
            min=0.0,
            max=0.5,
            help="share of each kind of validation texts not about children the query "
            "classifier may flag",
        ),
    ] = 0.003,
) -> None:
    """Train the content policy's classifiers and add them to the model bundle.

    The query classifier (--only queries): a second opinion on the query's text embedding,
    trained on the Flickr8k captions labelled by the lexicon, reworded copies and near misses;
    its threshold flags at most --query-fpr of each kind of validation texts not about
    children. The child-photo classifier (--only photos): a photo shows a child when at least
    2 of its 5 captions are about children, a person when a caption names one. Rule:
    restricted = person_present AND child_score >= t; the person gate keeps --person-recall of
    the validation photos with people, and t is the highest that keeps --recall of the
    combined rule on a validation split grouped by photo.
    """
    from pixsearch.exporter.workflow_cli import require_train_extra

    if only not in (None, "photos", "queries"):
        raise typer.BadParameter(f"use 'photos' or 'queries', not {only!r}", param_hint="--only")
    require_train_extra("sklearn", "onnx")
    if only != "queries":
        _train_photos(
            data, bundle, out, recall, person_recall, person_gate, seed, cache_dir, write_bundle
        )
    if only != "photos":
        _train_queries(data, bundle, out, query_fpr, seed, cache_dir, write_bundle)


def _train_queries(
    data: Path,
    bundle: Path | None,
    out: Path,
    query_fpr: float,
    seed: int,
    cache_dir: Path | None,
    write_bundle: bool,
) -> None:
    from pixsearch.exporter.query_classifier import run_train_queries

    report = run_train_queries(
        data,
        bundle_dir=bundle,
        out_dir=out,
        target_fpr=query_fpr,
        seed=seed,
        cache_dir=cache_dir,
        write_bundle=write_bundle,
        log=lambda line: typer.echo(line, err=True),
    )
    v = report.metrics["validation"]["all"]
    typer.echo(
        f"query classifier {report.name}: threshold {report.threshold:.6f}; validation recall "
        f"{v['recall']:.3f}, false-positive rate {v['false_positive_rate']:.3f}"
    )
    if report.bundle_id:
        typer.echo(f"bundle {report.bundle_dir}: id {report.bundle_id} (run `pixsearch reindex`)")
    typer.echo(f"wrote {report.card_path}")


def _train_photos(
    data: Path,
    bundle: Path | None,
    out: Path,
    recall: float,
    person_recall: float,
    person_gate: bool,
    seed: int,
    cache_dir: Path | None,
    write_bundle: bool,
) -> None:
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
