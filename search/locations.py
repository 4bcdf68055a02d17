"""Where the database lives when the caller does not say.

Order: the ``db`` argument (``--db PATH`` on the CLI), else ``$PIXSEARCH_DB``, else the
per-user default ``$XDG_DATA_HOME/pixsearch/db`` (``~/.local/share/pixsearch/db``).

>>> import os
>>> from pixsearch.db.environment import reload_environment
>>> os.environ["PIXSEARCH_DB"] = "/tmp/photos.db"
>>> _ = reload_environment()
>>> resolve_db("/data/mine")
'/data/mine'
>>> resolve_db(None)
'/tmp/photos.db'
>>> del os.environ["PIXSEARCH_DB"]
>>> _ = reload_environment()
"""

from __future__ import annotations

import os
from pathlib import Path

from pixsearch.db.environment import DB_ENV as _DB_ENV
from pixsearch.db.environment import environment

DB_ENV = _DB_ENV


def data_home() -> Path:
    """pixsearch's per-user data folder (``$XDG_DATA_HOME/pixsearch``)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "pixsearch"


def resolve_db(db: str | os.PathLike[str] | None) -> str:
    """The database URI to use: the argument, else ``$PIXSEARCH_DB``, else the default."""
    if db:
        return str(db)
    return environment().db or str(data_home() / "db")
