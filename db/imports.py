"""Import a module with pandas kept out: what a cold ``pixsearch search`` does not need.

``import lance`` imports ``pyarrow.dataset``, whose extension module asks pyarrow's pandas
shim whether pandas is installed, which imports pandas: ~36 MB of resident memory and
~0.3 s of a cold search, though nothing on the read path uses pandas (docs/performance.md,
fifth round). Inside :func:`import_without_pandas`, ``import pandas`` raises ``ImportError``
(pyarrow then works without its pandas integration, as when pandas is not installed);
``importlib.util.find_spec("pandas")`` still finds it, so libraries that import pandas
lazily (``lance.dependencies``) import it on first use, after the block is gone.

Only a process that never converts to or from pandas should use this (the CLI's ``search``);
pyarrow's cheap "is this a pandas object?" checks stay off in it once pandas was refused.

>>> import sys
>>> _ = import_without_pandas("json")
>>> "json" in sys.modules
True
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType

_BLOCKED = "pandas"


class _Refusal(importlib.abc.Loader):
    """A loader that refuses to load: the import raises ``ImportError``."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        raise ImportError(f"{spec.name} is kept out of this import (pixsearch.db.imports)")

    def exec_module(self, module: ModuleType) -> None:  # pragma: no cover - never reached
        raise ImportError(f"{module.__name__} is kept out of this import")


class _NoPandas(importlib.abc.MetaPathFinder):
    """Finds pandas with a loader that refuses (so ``find_spec`` still says it is there)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _BLOCKED:
            return None
        return importlib.util.spec_from_loader(fullname, _Refusal())


def import_without_pandas(name: str) -> ModuleType:
    """Import module ``name`` (and everything it imports) while pandas cannot be imported.

    Nothing changes when pandas is already imported. After the call pandas imports as usual.
    """
    if _BLOCKED in sys.modules:
        return importlib.import_module(name)
    blocker = _NoPandas()
    sys.meta_path.insert(0, blocker)
    try:
        return importlib.import_module(name)
    finally:
        sys.meta_path.remove(blocker)
