"""The layers stack one way: db <- indexer <- search, exporter on top; no torch in the runtime.

Every module's imports are read with ``ast`` (no module is imported): top-level imports,
imports inside functions and ``if TYPE_CHECKING`` blocks, and module names written as strings
(``importlib.import_module("pixsearch.exporter.x")`` or a tuple of such names), so a lower layer
cannot reach up by name either.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("db", "indexer", "search", "exporter")
"""Lowest first: a layer may import the layers before it, never one after it."""
RUNTIME = ("db", "indexer", "search")
TRAINING_ONLY = ("torch", "torchvision", "transformers", "optimum", "sklearn", "pandas")
"""Third-party packages only the exporter may import (the ``train`` extra)."""
_MODULE_NAME = re.compile(r"pixsearch(\.\w+)+")


@dataclass(frozen=True)
class Import:
    module: str
    """The importing module, e.g. ``pixsearch.indexer.models``."""
    target: str
    """What it imports (absolute), e.g. ``pixsearch.db.errors`` or ``torch.nn``."""
    line: int
    how: str
    """``import`` (a statement, at any depth) or ``string`` (a module name in a string)."""

    def __str__(self) -> str:
        return f"{self.module} -> {self.target} ({self.how}, line {self.line})"


def module_name(path: Path, root: Path = ROOT) -> str:
    """``indexer/policy/__init__.py`` -> ``pixsearch.indexer.policy``.

    >>> module_name(ROOT / "indexer" / "policy" / "__init__.py")
    'pixsearch.indexer.policy'
    """
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["pixsearch", *parts])


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (prose may name modules freely)."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def imports_of(source: str, module: str, *, is_package: bool = False) -> list[Import]:
    """Every import of ``source`` (the text of ``module``), at any depth, and module names in
    strings.

    >>> code = "import os\\ndef f():\\n    from torch import nn\\n    return nn\\n"
    >>> [str(i) for i in imports_of(code, "pixsearch.db.x")]
    ['pixsearch.db.x -> os (import, line 1)', 'pixsearch.db.x -> torch (import, line 3)']
    >>> [i.target for i in imports_of('M = ("pixsearch.exporter.cli",)', "pixsearch.db.x")]
    ['pixsearch.exporter.cli']
    >>> [i.target for i in imports_of("from ..db import store", "pixsearch.search.y")]
    ['pixsearch.db', 'pixsearch.db.store']
    """
    tree = ast.parse(source)
    docstrings = _docstrings(tree)
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, node.lineno, "import") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append(Import(module, target, node.lineno, "import"))
            # ``from pixsearch.db import store`` imports the submodule too
            found += [
                Import(module, f"{target}.{alias.name}", node.lineno, "import")
                for alias in node.names
                if target.startswith("pixsearch") and alias.name != "*"
            ]
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and _MODULE_NAME.fullmatch(node.value)
        ):
            found.append(Import(module, node.value, node.lineno, "string"))
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and not node.args[0].value.startswith("pixsearch")
        ):
            found.append(Import(module, node.args[0].value, node.lineno, "string"))
    return found


def all_imports(root: Path = ROOT) -> list[Import]:
    found = []
    for layer in LAYERS:
        for path in sorted((root / layer).rglob("*.py")):
            found += imports_of(
                path.read_text(encoding="utf-8"),
                module_name(path, root),
                is_package=path.name == "__init__.py",
            )
    return found


def layer_of(name: str) -> str | None:
    """The pixsearch layer a module name belongs to (``None`` for anything else).

    >>> layer_of("pixsearch.indexer.models"), layer_of("pixsearch"), layer_of("torch.nn")
    ('indexer', None, None)
    """
    parts = name.split(".")
    if len(parts) >= 2 and parts[0] == "pixsearch" and parts[1] in LAYERS:
        return parts[1]
    return None


def upward(imports: list[Import]) -> list[Import]:
    """Imports of a layer from a higher one.

    >>> [str(i) for i in upward(imports_of("import pixsearch.search.engine", "pixsearch.db.a"))]
    ['pixsearch.db.a -> pixsearch.search.engine (import, line 1)']
    """
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    bad = []
    for imp in imports:
        here, there = layer_of(imp.module), layer_of(imp.target)
        if here and there and rank[there] > rank[here]:
            bad.append(imp)
    return bad


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    found = all_imports()
    assert len({i.module for i in found}) > 40, "the walk found too few modules: wrong root?"
    return found


def test_the_walk_sees_function_level_and_string_imports(imports: list[Import]) -> None:
    """The walk must see what the rules are about, or the rules below pass vacuously."""
    hows = {(i.module, i.target.split(".")[0], i.how) for i in imports}
    # torch is imported only inside functions in the exporter
    assert ("pixsearch.exporter._torch", "torch", "import") in hows
    assert any(i.target.startswith("pixsearch.db") for i in imports if i.module.endswith("store"))


def test_lower_layers_never_import_higher_ones(imports: list[Import]) -> None:
    bad = [str(i) for i in upward(imports)]
    assert not bad, "a lower layer imports a higher one:\n" + "\n".join(bad)


@pytest.mark.parametrize("layer", RUNTIME)
def test_the_runtime_never_imports_training_packages(imports: list[Import], layer: str) -> None:
    bad = [
        str(i)
        for i in imports
        if layer_of(i.module) == layer and i.target.split(".")[0] in TRAINING_ONLY
    ]
    assert not bad, f"{layer} imports a training-only package:\n" + "\n".join(bad)


def test_one_import_namespace(imports: list[Import]) -> None:
    """First-party code is imported as ``pixsearch.<layer>``, never as a bare top-level folder."""
    bad = [str(i) for i in imports if i.how == "import" and i.target.split(".")[0] in LAYERS]
    assert not bad, "\n".join(bad)


def test_the_rules_catch_what_they_are_about() -> None:
    """Each rule fails on a module that breaks it (so a pass above means something)."""
    lazy_torch = "def f():\n    import torch.nn\n"
    assert [i.target for i in imports_of(lazy_torch, "pixsearch.indexer.m")] == ["torch.nn"]
    by_name = "import importlib\nM = importlib.import_module('pixsearch.exporter.space_cli')\n"
    assert [str(i) for i in upward(imports_of(by_name, "pixsearch.search.cli"))] == [
        "pixsearch.search.cli -> pixsearch.exporter.space_cli (string, line 2)"
    ]
    relative_up = "from ..search import engine\n"
    assert len(upward(imports_of(relative_up, "pixsearch.indexer.pipeline"))) == 2
    typing_only = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pixsearch.search\n"
    )
    assert len(upward(imports_of(typing_only, "pixsearch.db.store"))) == 1
    prose = '"""See pixsearch.exporter.joint_space."""\n'
    assert imports_of(prose, "pixsearch.db.store") == []
