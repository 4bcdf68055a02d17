"""The ``pixsearch`` command line (typer): a thin layer over :class:`ImageSearch`.

Only the CLI prints and picks exit codes: errors are caught once, in :class:`PixsearchGroup`,
and mapped by the table in :mod:`pixsearch.search.exit_codes`. Commands defined elsewhere
(``serve``, the exporter's research commands) join through the ``pixsearch.commands``
entry-point group (:mod:`pixsearch.search.commands`), so this module never names them.
Output rules (escaped names on terminals, exact bytes in pipes, progress) live in
:mod:`pixsearch.search.cli_output`.
"""

from __future__ import annotations

import logging
import sys
import traceback
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from pixsearch.db.errors import DatabaseError, InvalidInputError, PixsearchError
from pixsearch.db.imports import import_without_pandas
from pixsearch.db.memory import return_memory_promptly
from pixsearch.search import exit_codes
from pixsearch.search.cli_output import Progress, dumps_json, emit
from pixsearch.search.commands import load_commands

EXIT_BLOCKED = exit_codes.BLOCKED
"""Exit code of a search whose query the content policy blocked (the disclaimer is printed)."""

_USER_PANEL = "Commands"


class PixsearchGroup(TyperGroup):
    """The top-level command group: one place that turns errors into messages and exit codes,
    and a help page that lists a user's commands before the research ones."""

    def invoke(self, ctx: Any) -> Any:
        _quiet_library_warnings()
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except PixsearchError as error:
            emit(f"error: {error}", err=True, color="red")
            raise typer.Exit(exit_codes.exit_code_for(error)) from error
        except KeyboardInterrupt as error:
            emit("interrupted", err=True)
            raise typer.Exit(exit_codes.INTERRUPTED) from error
        except OSError as error:  # the environment refused (a file, a disk): no traceback
            emit(f"error: {error}", err=True, color="red")
            raise typer.Exit(exit_codes.exit_code_for(error)) from error
        except Exception as error:  # a bug: say so once, with the traceback to report
            traceback.print_exc()
            emit(
                f"error: unexpected {type(error).__name__} (a bug in pixsearch: please report "
                "it with the traceback above)",
                err=True,
                color="red",
            )
            raise typer.Exit(exit_codes.exit_code_for(error)) from error

    def get_command(self, ctx: Any, name: str) -> Any:
        command = super().get_command(ctx, name)
        if command is not None:
            _name_option_values(command)
        return command

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        sections: dict[str, list[tuple[str, str]]] = {_USER_PANEL: []}
        commands = [(name, self.get_command(ctx, name)) for name in self.list_commands(ctx)]
        commands = [(name, cmd) for name, cmd in commands if cmd is not None and not cmd.hidden]
        if not commands:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in commands)
        for name, cmd in commands:
            panel = getattr(cmd, "rich_help_panel", None) or _USER_PANEL
            sections.setdefault(panel, []).append((name, cmd.get_short_help_str(limit)))
        for panel, rows in sections.items():
            if rows:
                with formatter.section(panel):
                    formatter.write_dl(rows)


def _name_option_values(command: Any) -> None:
    """Options that take a value show its name in help (``--seed SEED``, ``--host HOST``), as
    click and sqlite-utils do, not typer's type label (``--seed <int>``): a command's own
    ``metavar`` (``--where FILTER``) wins."""
    for param in getattr(command, "params", ()):
        takes_value = param.param_type_name == "option" and not (param.is_flag or param.count)
        if takes_value and param.metavar is None and param.name:
            param.metavar = param.name.upper()


def _quiet_library_warnings() -> None:
    """Problems are reported once, by the CLI: the library's log records do not fall through to
    Python's last-resort stderr handler (a configured root logger still gets them), and Pillow's
    warning about very large photos (which are indexed normally) is not shown."""
    logger = logging.getLogger("pixsearch")
    if not any(isinstance(handler, logging.NullHandler) for handler in logger.handlers):
        logger.addHandler(logging.NullHandler())
    warnings.filterwarnings("ignore", message=r"Image size \(\d+ pixels\) exceeds limit")


app = typer.Typer(
    name="pixsearch",
    cls=PixsearchGroup,
    help=(
        "Search your photos in plain words, offline.\n\n"
        "\b\nExamples:\n"
        "  pixsearch index ~/Pictures\n"
        '  pixsearch search "a dog catches a frisbee" -k 5\n'
        '  pixsearch search "a red car" --where "width>=1000" --json'
    ),
    epilog="\b\n" + exit_codes.help_text(),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: rich markup would eat "[default: ...]" and "pixsearch[serve]".
    rich_markup_mode=None,
)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="PATH",
        help="Database folder or URI [default: $PIXSEARCH_DB, else ~/.local/share/pixsearch/db].",
        show_default=False,
    ),
]
WaitOption = Annotated[
    float,
    typer.Option("--wait", metavar="SECONDS", help="Seconds to wait for another writer to finish."),
]


def _engine(db: str | None, policy: str | None = None, *, keep_models: bool = True) -> Any:
    from pixsearch.search.engine import ImageSearch

    return ImageSearch(db, policy=policy, keep_models=keep_models)


def _print_report(
    report: Any, as_json: bool, verbose: bool, extra: dict[str, Any] | None = None
) -> None:
    if as_json:
        emit(dumps_json({**report.to_dict(), **(extra or {})}))
        return
    emit(report.summary())
    for path, reason in report.failed:
        emit(f"  failed  {path}: {reason}", err=True)
    if verbose:
        for path, reason in report.skipped:
            emit(f"  skipped {path}: {reason}", err=True)
    elif report.skipped:
        emit(f"  ({len(report.skipped)} skipped; --verbose lists them)", err=True)


def _finish_report(report: Any, as_json: bool, verbose: bool, engine: Any | None = None) -> None:
    """Print the report (and, given the engine, what the policy hides); exit 1 on failures."""
    cost = _policy_cost(engine) if engine is not None else None
    _print_report(report, as_json, verbose, {"hidden_by_strict": cost[0]} if cost else None)
    if cost and not as_json:
        emit(cost[1])
    if report.failed:
        raise typer.Exit(exit_codes.NOTHING_FOUND)


def _interrupted(progress: Progress, saved: str) -> typer.Exit:
    progress.close()
    where = f" after {progress.done}/{progress.total} photos" if progress.total else ""
    emit(
        f"interrupted{where}: {saved}; run the same command again to resume "
        "(saved photos are skipped)",
        err=True,
    )
    return typer.Exit(exit_codes.INTERRUPTED)


def _policy_cost(engine: Any) -> tuple[int, str] | None:
    """How many photos ``strict`` hides, and a line saying so (None without a database)."""
    total = _photo_count(engine)
    if not total:
        return None
    hidden = engine.hidden_by("strict")
    policy = engine.default_policy
    if policy == "strict":
        line = f"policy strict (this database's default) hides {hidden} of {total} photos"
    else:
        line = (
            f"policy {policy} (this database's default) hides none; strict would hide "
            f"{hidden} of {total} photos"
        )
    return hidden, (
        f"{line}: flagged as showing children (docs/policy.md; `pixsearch policy` sets the default)"
    )


def _photo_count(engine: Any) -> int | None:
    try:
        return engine.store.count()
    except Exception:  # no table yet (a first run), or it cannot be read: say nothing wrong
        return None


def _saved_photos(engine: Any, before: int) -> str:
    after = _photo_count(engine)
    if after is None:
        return "photos committed before the interrupt are saved"
    return f"{after - before} new photos saved, the database holds {after} (committed in batches)"


WorkersOption = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=1,
        metavar="N",
        help="Ray actors (--engine ray; default one per CPU of the cluster) or reader threads "
        "(local; default CPUs + 2, at most 8).",
    ),
]
WriteBatchOption = Annotated[
    int | None,
    typer.Option(
        "--write-batch",
        min=1,
        metavar="ROWS",
        help="Rows per commit (default $PIXSEARCH_WRITE_BATCH or 512); a killed run loses at "
        "most this many; raise it on big jobs (fewer table versions).",
    ),
]


@app.command()
def index(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="Folder (or photo file) to index.")],
    db: DbOption = None,
    include_hidden: Annotated[
        bool, typer.Option("--include-hidden", help="Also index hidden files and folders.")
    ] = False,
    keep_missing: Annotated[
        bool, typer.Option("--keep-missing", help="Keep rows of files no longer on disk.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List skipped files.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    wait: WaitOption = 0.0,
    workers: WorkersOption = None,
    write_batch: WriteBatchOption = None,
) -> None:
    """Index the photos under PATH (incremental: unchanged files are skipped).

    Progress (photos done/total, photos/s, time left) goes to stderr. Ctrl-C keeps what was
    committed; the same command resumes. Exit 1 when some photos could not be read.

    Example: pixsearch index ~/Pictures --db ~/photos.db
    """
    progress = Progress("indexing", enabled=not quiet and not as_json)
    progress.start(f"scanning {path}")
    engine = _engine(db)
    before = _photo_count(engine)
    try:
        report = engine.index(
            path,
            remove_missing=not keep_missing,
            include_hidden=include_hidden,
            progress=progress,
            wait_seconds=wait,
            workers=workers,
            write_batch=write_batch,
        )
    except KeyboardInterrupt as error:
        raise _interrupted(progress, _saved_photos(engine, before or 0)) from error
    finally:
        progress.close()
    _finish_report(report, as_json, verbose, engine)


@app.command()
def search(
    text: Annotated[
        str | None,
        typer.Argument(
            metavar="TEXT",
            help="What the photo shows, in plain words (optional with --like).",
            show_default=False,
        ),
    ] = None,
    db: DbOption = None,
    like: Annotated[
        str | None,
        typer.Option(
            "--like",
            metavar="PHOTO",
            help="Find photos like this one: a photo file, or an indexed photo's id (--json "
            "shows ids). An indexed photo comes first itself; TEXT, if given, is added to it.",
        ),
    ] = None,
    add: Annotated[
        list[str] | None,
        typer.Option(
            "--add",
            "-a",
            metavar="PART",
            help="Add a concept, repeatable: a text or a photo file, with an optional weight "
            "(e.g. 'sunset', 'snow:0.5', ~/cat.jpg).",
        ),
    ] = None,
    sub: Annotated[
        list[str] | None,
        typer.Option(
            "--sub",
            "-s",
            metavar="PART",
            help="Subtract a concept, repeatable, as --add (e.g. 'people', 'grass:0.5').",
        ),
    ] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="How many results.", min=1)] = 10,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where",
            "-w",
            metavar="FILTER",
            help="Filter FIELD OP VALUE, repeatable (AND): e.g. 'width>=1000', 'format=jpeg', "
            "'path~holiday' (~ = contains). Fields: path format caption content_hash width "
            "height size mtime_ns child_score restricted.",
        ),
    ] = None,
    policy: Annotated[
        str | None,
        typer.Option(
            "--policy",
            metavar="PROFILE",
            help="Content-policy profile: strict or none [default: the database's, else strict].",
            show_default=False,
        ),
    ] = None,
    min_score: Annotated[
        float | None,
        typer.Option(
            "--min-score",
            metavar="SCORE",
            help="Drop results scoring below this. The score (0-1) estimates how relevant a "
            "judge would rate the photo; it ranks within a collection and is no yes/no line "
            "(README, Ranking quality).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    paths_only: Annotated[
        bool,
        typer.Option("--paths-only", help="Print only the paths, one per line, exactly."),
    ] = False,
    null: Annotated[
        bool,
        typer.Option(
            "--null", "-0", help="Print only the paths, each ended by a NUL byte (xargs -0)."
        ),
    ] = False,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html", metavar="FILE", help="Also write a self-contained HTML gallery to FILE."
        ),
    ] = None,
    open_page: Annotated[
        bool, typer.Option("--open", help="Open the HTML gallery in the default browser.")
    ] = False,
) -> None:
    """Find the photos that best match TEXT (or look like --like PHOTO), best first.

    --add/--sub refine the query as rclip does; each text passes the content policy. A query
    with --like, --add or --sub is scored by cosine similarity. Exit 1 when no photo
    matches, 10 when the content policy blocks the query (or the --like photo).

    Example: pixsearch search "a dog leaps to catch a frisbee" -k 5 --html dogs.html --open

    Example: pixsearch search "a beach" --add sunset --sub "people:0.5"
    """
    # One search per process: big freed blocks go back to the OS at once (-15 MB peak), and
    # pandas, which `import lance` pulls in (~36 MB, ~0.3 s), is never needed.
    return_memory_promptly()
    import_without_pandas("pixsearch.search.engine")
    from pixsearch.search.query import QueryPart

    options: dict[str, Any] = {
        "k": k,
        "add": add or [],
        "sub": sub or [],
        "filters": where or [],
        "policy": policy,
        "min_score": min_score,
    }
    # One search per process: the models go before the vector index is read.
    engine = _engine(db, policy, keep_models=False)
    if like is not None:
        if text is not None:
            options["add"] = [QueryPart.of_text(text), *options["add"]]
        response = engine.search_like(like, **options)
    elif text is not None:
        response = engine.search(text, **options)
    else:
        raise InvalidInputError("give TEXT to search for, or --like PHOTO")
    if html is not None or open_page:
        _gallery(response, html, open_page, engine.uri)
    for warning in response.warnings:
        emit(f"warning: {warning}", err=True, color="yellow")
    if as_json:
        emit(dumps_json(response.to_dict()))
    elif response.blocked:
        emit(response.message, err=True, color="yellow")
    elif paths_only or null:
        for result in response.results:
            emit(result.path, end="\0" if null else "\n")
    elif not response.results:
        emit("no photos match", err=True)
    else:
        for rank, result in enumerate(response.results, start=1):
            emit(f"{rank:>3}  {result.score:6.3f}  {result.path}")
    if response.blocked:
        raise typer.Exit(exit_codes.BLOCKED)
    if not response.results:
        raise typer.Exit(exit_codes.NOTHING_FOUND)


def _gallery(response: Any, html: Path | None, open_page: bool, db: str | None = None) -> None:
    import webbrowser

    from pixsearch.search.gallery import save_gallery, temporary_page

    page = save_gallery(response, html or temporary_page(), db=db)
    emit(f"gallery: {page}", err=True)
    if open_page and not webbrowser.open(page.as_uri()):
        emit(
            f"no web browser could be started here; the gallery is at {page} "
            "(copy it to a machine with a browser, or open it there)",
            err=True,
            color="yellow",
        )


@app.command()
def info(
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show what a database holds and which model bundle made its vectors."""
    stats = _engine(db).stats()
    if as_json:
        emit(dumps_json(stats.to_dict()))
        return
    fields = stats.to_dict()
    width = max(len(key) for key in fields)
    for key, value in fields.items():
        emit(f"{key:>{width}}: {value}")


@app.command()
def check(
    db: DbOption = None,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair", help="Re-encode damaged rows from their photos, rebuild missing indexes."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Verify the database: schema, model bundle, indexes, every row; exit 3 if anything is wrong.

    Example: pixsearch check --repair --db ~/photos.db
    """
    report = _engine(db).check(repair=repair)
    emit(dumps_json(report.to_dict()) if as_json else report.summary())
    if not report.ok:
        raise typer.Exit(exit_codes.exit_code_for(DatabaseError()))  # 3: the database is damaged


@app.command("policy")
def policy_default(
    profile: Annotated[
        str | None,
        typer.Argument(metavar="PROFILE", help="Make this profile (strict or none) the default."),
    ] = None,
    db: DbOption = None,
) -> None:
    """Show, or set, the database's default content-policy profile.

    Example: pixsearch policy strict --db ~/photos.db
    """
    engine = _engine(db)
    name = engine.set_default_policy(profile) if profile else engine.default_policy
    emit(f"default policy of {engine.uri}: {name}")


@app.command()
def reindex(
    path: Annotated[
        str | None,
        typer.Argument(
            metavar="PATH", help="(Re)index the photos under this folder or s3:// prefix."
        ),
    ] = None,
    db: DbOption = None,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            metavar="ENGINE",
            help="Where photos are encoded: local (this process) or ray (Ray workers; "
            'pip install "pixsearch[ray]", RAY_ADDRESS joins a cluster).',
        ),
    ] = "local",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    wait: WaitOption = 0.0,
    workers: WorkersOption = None,
    shard_size: Annotated[
        int | None,
        typer.Option(
            "--shard-size",
            min=1,
            metavar="PHOTOS",
            help="Photos per worker call, and per fragment a Ray worker writes (default 64; "
            "larger on big clusters: fewer tasks and files).",
        ),
    ] = None,
    write_batch: WriteBatchOption = None,
) -> None:
    """Re-encode the database with the installed model bundle (after an upgrade), as a batch job.

    With PATH the photos under it are (re)indexed, else those already in the database. A new
    bundle is built in a staging table and replaces the old one when the job completes; an
    interrupted job resumes. Exit 1 when some photos could not be read.

    Example: pixsearch reindex s3://bucket/photos/ --db s3://bucket/db --engine ray
    """
    progress = Progress(f"reindex [{engine}]", enabled=not quiet and not as_json)
    progress.start("listing photos")
    search_engine = _engine(db)
    try:
        report = search_engine.reindex(
            path,
            engine=engine,
            progress=progress,
            wait_seconds=wait,
            workers=workers,
            shard_size=shard_size,
            write_batch=write_batch,
        )
    except KeyboardInterrupt as error:
        saved = "every photo encoded so far is saved (in the job's staging table)"
        raise _interrupted(progress, saved) from error
    finally:
        progress.close()
    _finish_report(report, as_json, verbose=False)


@app.command()
def remove(
    paths: Annotated[
        list[Path], typer.Argument(metavar="PATH", help="Photos or folders to forget.")
    ],
    db: DbOption = None,
) -> None:
    """Remove photos (or everything under folders) from the database; files are untouched."""
    removed = _engine(db).remove(paths)
    emit(f"removed {removed} photos")


@app.command()
def demo(
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            metavar="PATH",
            help="Database for the demo [default: ~/.local/share/pixsearch/demo/db].",
        ),
    ] = None,
) -> None:
    """Index scikit-image's sample photos and run a few example searches (offline)."""
    from pixsearch.db.errors import BundleMismatchError
    from pixsearch.search.demo import DEMO_QUERIES, prepare_demo_photos
    from pixsearch.search.locations import data_home

    photos = prepare_demo_photos(data_home() / "demo" / "photos")
    # The demo shows ranking, so it searches without the content policy; the line at the
    # end says what the default `strict` profile would hide of these photos.
    engine = _engine(db or str(data_home() / "demo" / "db"), "none")
    try:
        report = engine.index(photos)
    except BundleMismatchError:
        if db is not None:  # the user's own database: re-encoding it is their call
            raise
        # the demo's own database, made by an older pixsearch: bring it up to date
        emit("the demo database was made with another model bundle: re-encoding it")
        engine.reindex()
        report = engine.index(photos)
    emit(f"indexed {photos}: {report.summary()}")
    emit(f"database: {engine.uri}\n")
    for query, _expected in DEMO_QUERIES:
        response = engine.search(query, k=3)
        emit(f'pixsearch search "{query}" --policy none')
        for rank, result in enumerate(response.results, start=1):
            emit(f"  {rank}. {result.score:6.3f}  {Path(result.path).name}")
    hidden = engine.hidden_by("strict")
    emit(
        f"\nUnder the default policy `strict`, {hidden} of these {engine.store.count()} "
        "photos would be hidden: the child-photo classifier is tuned for 95% recall and "
        "flags many photos without children (docs/policy.md). Set a database's default "
        "with `pixsearch policy strict|none`."
    )
    emit('Try your own: pixsearch index ~/Pictures && pixsearch search "a red car"')


for _problem in load_commands(app):
    print(f"warning: a pixsearch command could not be loaded: {_problem}", file=sys.stderr)


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["EXIT_BLOCKED", "PixsearchGroup", "app", "main"]
