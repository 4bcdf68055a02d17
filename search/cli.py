"""The ``pixsearch`` command line (typer). Only this module prints and picks exit codes."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from pixsearch.db.errors import PixsearchError

EXIT_BLOCKED = 10
"""Exit code of a search whose query the content policy blocked (the disclaimer is printed)."""

app = typer.Typer(
    name="pixsearch",
    help=(
        "Search your photos in plain words, offline.\n\n"
        "Examples:\n\n"
        "  pixsearch index ~/Pictures\n\n"
        '  pixsearch search "a dog catches a frisbee" -k 5\n\n'
        '  pixsearch search "a red car" --where "width>=1000" --json'
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database folder or URI [default: $PIXSEARCH_DB, else ~/.local/share/pixsearch/db].",
        show_default=False,
    ),
]
WaitOption = Annotated[
    float, typer.Option("--wait", help="Seconds to wait for another writer to finish.")
]


def _fail(error: PixsearchError) -> typer.Exit:
    typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
    return typer.Exit(error.exit_code)


def _engine(db: str | None, policy: str | None = None) -> Any:
    from pixsearch.search.engine import ImageSearch

    return ImageSearch(db, policy=policy)


class _Progress:
    """A progress bar on stderr (silent when stderr is not a terminal or --quiet)."""

    def __init__(self, label: str, enabled: bool):
        self.label = label
        self.enabled = enabled and sys.stderr.isatty()
        self._bar: Any = None
        self._task: Any = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            from rich.progress import Progress

            self._bar = Progress(transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=total)
        self._bar.update(self._task, completed=done, total=total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _print_report(report: Any, as_json: bool, verbose: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report.to_dict(), ensure_ascii=False))
        return
    typer.echo(report.summary())
    for path, reason in report.failed:
        typer.echo(f"  failed  {path}: {reason}", err=True)
    if verbose:
        for path, reason in report.skipped:
            typer.echo(f"  skipped {path}: {reason}", err=True)
    elif report.skipped:
        typer.echo(f"  ({len(report.skipped)} skipped; --verbose lists them)", err=True)


@app.command()
def index(
    path: Annotated[Path, typer.Argument(help="Folder (or photo file) to index.")],
    db: DbOption = None,
    include_hidden: Annotated[
        bool, typer.Option("--include-hidden", help="Also index hidden files and folders.")
    ] = False,
    keep_missing: Annotated[
        bool, typer.Option("--keep-missing", help="Keep rows of files no longer on disk.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List skipped files.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    wait: WaitOption = 0.0,
) -> None:
    """Index the photos under PATH (incremental: unchanged files are skipped).

    Example: pixsearch index ~/Pictures --db ~/photos.db
    """
    progress = _Progress("indexing", not quiet and not as_json)
    try:
        report = _engine(db).index(
            path,
            remove_missing=not keep_missing,
            include_hidden=include_hidden,
            progress=progress,
            wait_seconds=wait,
        )
    except PixsearchError as error:
        raise _fail(error) from error
    finally:
        progress.close()
    _print_report(report, as_json, verbose)


@app.command()
def search(
    text: Annotated[str, typer.Argument(help="What the photo shows, in plain words.")],
    db: DbOption = None,
    k: Annotated[int, typer.Option("-k", "--k", help="How many results.", min=1)] = 10,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where",
            "-w",
            help="Filter FIELD OP VALUE, repeatable (AND): e.g. 'width>=1000', 'format=PNG', "
            "'path~holiday' (~ = contains). Fields: path format caption content_hash width "
            "height size mtime_ns child_score restricted.",
        ),
    ] = None,
    policy: Annotated[
        str | None,
        typer.Option(
            "--policy",
            help="Content-policy profile: strict or none [default: the database's, else strict].",
            show_default=False,
        ),
    ] = None,
    min_score: Annotated[
        float | None, typer.Option("--min-score", help="Drop results scoring below this.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    paths_only: Annotated[
        bool, typer.Option("--paths-only", help="Print only the paths, one per line.")
    ] = False,
    html: Annotated[
        Path | None,
        typer.Option("--html", help="Also write a self-contained HTML gallery to this file."),
    ] = None,
    open_page: Annotated[
        bool, typer.Option("--open", help="Open the HTML gallery in the default browser.")
    ] = False,
) -> None:
    """Find the photos that best match TEXT, best first.

    Example: pixsearch search "a dog leaps to catch a frisbee" -k 5 --html dogs.html --open
    """
    try:
        response = _engine(db, policy).search(
            text, k=k, filters=where or [], policy=policy, min_score=min_score
        )
        if html is not None or open_page:
            from pixsearch.search.gallery import open_in_browser, save_gallery, temporary_page

            page = save_gallery(response, html or temporary_page())
            typer.echo(f"gallery: {page}", err=True)
            if open_page:
                open_in_browser(page)
    except PixsearchError as error:
        raise _fail(error) from error
    for warning in response.warnings:
        typer.secho(f"warning: {warning}", err=True, fg=typer.colors.YELLOW)
    if as_json:
        typer.echo(json.dumps(response.to_dict(), ensure_ascii=False))
    elif response.blocked:
        typer.secho(response.message, err=True, fg=typer.colors.YELLOW)
    elif paths_only:
        for result in response.results:
            typer.echo(result.path)
    elif not response.results:
        typer.echo("no photos match", err=True)
    else:
        for rank, result in enumerate(response.results, start=1):
            typer.echo(f"{rank:>3}  {result.score:6.3f}  {result.path}")
    if response.blocked:
        raise typer.Exit(EXIT_BLOCKED)


@app.command()
def info(
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show what a database holds and which model bundle made its vectors."""
    try:
        stats = _engine(db).stats()
    except PixsearchError as error:
        raise _fail(error) from error
    if as_json:
        typer.echo(json.dumps(stats.to_dict(), ensure_ascii=False))
        return
    for key, value in stats.to_dict().items():
        typer.echo(f"{key:>15}: {value}")


@app.command("policy")
def policy_default(
    profile: Annotated[
        str | None, typer.Argument(help="Make this profile (strict or none) the default.")
    ] = None,
    db: DbOption = None,
) -> None:
    """Show, or set, the database's default content-policy profile.

    Example: pixsearch policy strict --db ~/photos.db
    """
    try:
        engine = _engine(db)
        name = engine.set_default_policy(profile) if profile else engine.default_policy
    except PixsearchError as error:
        raise _fail(error) from error
    typer.echo(f"default policy of {engine.uri}: {name}")


@app.command()
def reindex(
    path: Annotated[
        str | None,
        typer.Argument(help="(Re)index the photos under this folder or s3:// prefix."),
    ] = None,
    db: DbOption = None,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="Where photos are encoded: local (this process) or ray (Ray Data workers; "
            'pip install "pixsearch[ray]", RAY_ADDRESS joins a cluster).',
        ),
    ] = "local",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines.")] = False,
    wait: WaitOption = 0.0,
) -> None:
    """Re-encode the database with the installed model bundle (after an upgrade), as a batch job.

    With PATH the photos under it are (re)indexed, else those already in the database. A new
    bundle is built in a staging table and replaces the old one when the job completes; an
    interrupted job resumes. Example: pixsearch reindex s3://bucket/photos/ --db s3://bucket/db
    --engine ray
    """
    import time

    shown = [0.0]

    def status(state: Any) -> None:
        if quiet or as_json:
            return
        if state.done >= state.total or time.monotonic() - shown[0] >= 2.0:
            shown[0] = time.monotonic()
            typer.echo(state.line(), err=True)

    try:
        report = _engine(db).reindex(path, engine=engine, status=status, wait_seconds=wait)
    except PixsearchError as error:
        raise _fail(error) from error
    _print_report(report, as_json, verbose=False)


@app.command()
def remove(
    paths: Annotated[list[Path], typer.Argument(help="Photos or folders to forget.")],
    db: DbOption = None,
) -> None:
    """Remove photos (or everything under folders) from the database; files are untouched."""
    try:
        removed = _engine(db).remove(paths)
    except PixsearchError as error:
        raise _fail(error) from error
    typer.echo(f"removed {removed} photos")


@app.command()
def demo(
    db: Annotated[
        str | None,
        typer.Option(
            "--db", help="Database for the demo [default: ~/.local/share/pixsearch/demo/db]."
        ),
    ] = None,
) -> None:
    """Index scikit-image's sample photos and run a few example searches (offline)."""
    from pixsearch.search.demo import DEMO_QUERIES, prepare_demo_photos
    from pixsearch.search.locations import data_home

    try:
        photos = prepare_demo_photos(data_home() / "demo" / "photos")
        # The demo shows ranking, so it searches without the content policy; the line at the
        # end says what the default `strict` profile would hide of these photos.
        engine = _engine(db or str(data_home() / "demo" / "db"), "none")
        report = engine.index(photos)
        typer.echo(f"indexed {photos}: {report.summary()}")
        typer.echo(f"database: {engine.uri}\n")
        for query, _expected in DEMO_QUERIES:
            response = engine.search(query, k=3)
            typer.echo(f'pixsearch search "{query}" --policy none')
            for rank, result in enumerate(response.results, start=1):
                typer.echo(f"  {rank}. {result.score:6.3f}  {Path(result.path).name}")
        hidden = engine.store.count("restricted = true")
        typer.echo(
            f"\nUnder the default policy `strict`, {hidden} of these {engine.store.count()} "
            "photos would be hidden: the child-photo classifier is tuned for 95% recall and "
            "flags many photos without children (docs/policy.md). Set a database's default "
            "with `pixsearch policy strict|none`."
        )
        typer.echo('Try your own: pixsearch index ~/Pictures && pixsearch search "a red car"')
    except PixsearchError as error:
        raise _fail(error) from error


_COMMAND_MODULES = (
    "pixsearch.exporter.export_cli",
    "pixsearch.exporter.workflow_cli",
    "pixsearch.exporter.policy_cli",
    "pixsearch.exporter.space_cli",
    "pixsearch.exporter.eval_cli",
    "pixsearch.search.serve_cli",
)
"""Modules that add commands with ``register(app)``; they import torch only when run."""

for _module_name in _COMMAND_MODULES:
    try:
        _module = importlib.import_module(_module_name)
    except ModuleNotFoundError as _error:
        if _error.name != _module_name:
            raise
    else:
        _module.register(app)


def main() -> None:
    """Console-script entry point."""
    app()
