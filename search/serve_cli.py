"""The ``pixsearch serve`` command (FastAPI and uvicorn are imported only when it runs).

>>> import typer
>>> app = typer.Typer()
>>> register(app)
>>> [command.name for command in app.registered_commands]
['serve']
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

from pixsearch.db.errors import InvalidInputError, MissingExtraError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def is_loopback(host: str) -> bool:
    """True when ``host`` is only reachable from this machine.

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            metavar="PATH",
            help="Database folder or URI [default: $PIXSEARCH_DB, else "
            "~/.local/share/pixsearch/db].",
            show_default=False,
        ),
    ] = None,
    host: Annotated[
        str,
        typer.Option("--host", help="Address to listen on (127.0.0.1: this machine only)."),
    ] = DEFAULT_HOST,
    port: Annotated[int, typer.Option("--port", help="Port to listen on.", min=0)] = DEFAULT_PORT,
    policy: Annotated[
        str | None,
        typer.Option(
            "--policy",
            metavar="PROFILE",
            help="Content-policy profile the server applies: strict or none [default: the "
            "database's (pixsearch policy), else strict].",
            show_default=False,
        ),
    ] = None,
    allow_policy_override: Annotated[
        bool,
        typer.Option(
            "--allow-policy-override",
            help="Let visitors choose any policy, also a laxer one (?policy=none). Without it "
            "they may only choose a stricter one.",
        ),
    ] = False,
    lock_policy: Annotated[
        bool,
        typer.Option(
            "--lock-policy", help="Visitors cannot choose another policy, not even a stricter one."
        ),
    ] = False,
) -> None:
    """Serve a local search page and JSON API over a database (needs pixsearch[serve]).

    Open http://127.0.0.1:8765/ for the search page; GET /api/search?q=a+cat&k=5 answers with
    the shape of `pixsearch search --json`; /openapi.json documents the API. The server applies
    the database's default policy; visitors cannot lower it (403) unless
    --allow-policy-override is given.

    Example: pixsearch serve --db ~/photos.db --port 8765
    """
    if lock_policy and allow_policy_override:
        raise InvalidInputError("--lock-policy and --allow-policy-override contradict: give one")
    try:
        import uvicorn

        from pixsearch.search.serve import LOOPBACK_HOSTS, create_app
    except ImportError as error:
        raise MissingExtraError(
            f'pixsearch serve needs {error.name or "fastapi"}: pip install "pixsearch[serve]"'
        ) from error
    from pixsearch.search.engine import ImageSearch

    engine = ImageSearch(db, policy=policy)
    local = is_loopback(host)
    app = create_app(
        engine,
        policies=[engine.default_policy] if lock_policy else None,
        allow_override=allow_policy_override,
        allowed_hosts=[host, *LOOPBACK_HOSTS] if local else None,
    )
    if not local:
        typer.secho(
            f"warning: listening on {host}: anyone who can reach this machine can search and "
            "view your photos",
            err=True,
            fg=typer.colors.YELLOW,
        )
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"pixsearch: serving {engine.uri} at http://{shown}:{port}/ (Ctrl-C stops)")
    lowered = "any policy" if allow_policy_override else "no laxer policy"
    typer.echo(f"policy {engine.default_policy}: visitors may choose {lowered}")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to the ``pixsearch`` CLI."""
    app.command("serve")(serve)
