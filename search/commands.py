"""The registry of ``pixsearch`` commands that live outside ``search/cli.py``.

The core CLI never names the modules that add commands (the exporter sits above it): each
declares itself in an entry-point group, as sqlite-utils' ``register_commands`` hook does::

    [project.entry-points."pixsearch.commands"]
    serve = "pixsearch.search.serve_cli:register"

``register(app)`` adds its commands with ``app.command(...)`` and must stay cheap (import typer
and the typed errors only; heavy dependencies are imported inside the command, which raises
:class:`pixsearch.db.errors.MissingExtraError` naming the extra when they are missing). A
research command passes ``rich_help_panel=RESEARCH_PANEL`` so that ``pixsearch --help`` lists a
user's commands first. After adding an entry point, run ``pip install -e .`` so that the
package metadata lists it.

>>> import typer
>>> app = typer.Typer()
>>> load_commands(app)
[]
>>> "serve" in [command.name for command in app.registered_commands]
True
"""

from __future__ import annotations

from typing import Any

ENTRY_POINT_GROUP = "pixsearch.commands"
RESEARCH_PANEL = 'Research commands (pip install "pixsearch[train]")'
"""The help section of training, export and evaluation commands."""


def load_commands(app: Any) -> list[str]:
    """Call every registered ``register(app)``; returns the entries that failed to load."""
    from importlib.metadata import entry_points

    entries = entry_points(group=ENTRY_POINT_GROUP)
    if not entries:  # pixsearch itself declares some: the installed metadata is stale
        return [
            f"no {ENTRY_POINT_GROUP!r} entry points are installed (serve, export, ...): "
            "reinstall pixsearch (pip install -e .)"
        ]
    problems = []
    for entry in entries:
        try:
            register = entry.load()
            register(app)
        except Exception as error:  # one broken plug-in must not take the whole CLI down
            problems.append(f"{entry.name} = {entry.value}: {type(error).__name__}: {error}")
    return problems
