"""Where the database lives when the caller does not say.

Order: the ``db`` argument (``--db PATH`` on the CLI), else ``$PIXSEARCH_DB``, else the
per-user default ``$XDG_DATA_HOME/pixsearch/db`` (``~/.local/share/pixsearch/db``).

>>> import os
>>> os.environ["PIXSEARCH_DB"] = "/tmp/photos.db"
>>> resolve_db("/data/mine")
'/data/mine'
>>> resolve_db(None)
'/tmp/photos.db'
>>> del os.environ["PIXSEARCH_DB"]
"""

from __future__ import annotations

import os
from pathlib import Path

DB_ENV = "PIXSEARCH_DB"


def data_home() -> Path:
    """pixsearch's per-user data folder (``$XDG_DATA_HOME/pixsearch``)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "pixsearch"


def resolve_db(db: str | os.PathLike[str] | None) -> str:
    """The database URI to use: the argument, else ``$PIXSEARCH_DB``, else the default."""
    if db:
        return str(db)
    return os.environ.get(DB_ENV) or str(data_home() / "db")
