"""The import graph of a pixsearch checkout, read with ``ast`` (nothing is imported).

Prints the import count between layers (flagging any upward edge), the runtime import cycles
between modules (``if TYPE_CHECKING`` blocks excluded; module names written as strings count)
and the lines per module. Used for issue #16's before/after picture:

    python benchmarks/import_graph.py .                  # this checkout
    git worktree add /tmp/before eac5a69^ && python benchmarks/import_graph.py /tmp/before
"""

from __future__ import annotations

import argparse
import ast
import collections
import sys
from pathlib import Path

LAYERS = ("db", "indexer", "search", "exporter")
"""Lowest first: a layer may import the layers before it, never one after it."""


def modules(root: Path) -> dict[str, Path]:
    """``pixsearch.<layer>.<module>`` -> its file, for every module of every layer."""
    found = {}
    for layer in LAYERS:
        for path in (root / layer).rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(["pixsearch", *parts])] = path
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            inside |= {id(child) for child in ast.walk(node)}
    return inside


def _targets(node: ast.AST, package: str, known: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            kept = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join(kept + ([node.module] if node.module else []))
        submodules = [f"{base}.{alias.name}" for alias in node.names]
        return [name for name in submodules if name in known] or [base]
    value = node.value if isinstance(node, ast.Constant) else None
    if isinstance(value, str) and value.startswith("pixsearch.") and " " not in value:
        return [value]
    return []


def import_edges(known: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the pixsearch modules it imports at run time."""
    edges: dict[str, set[str]] = collections.defaultdict(set)
    for name, path in known.items():
        tree = ast.parse(path.read_text())
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        skipped = _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            for target in _targets(node, package, known):
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges[name].add(target)
    return edges


def cycles(edges: dict[str, set[str]], names: list[str]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for name in names:
        if name not in index:
            visit(name)
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, nargs="?", default=Path(__file__).parents[1])
    parser.add_argument("--largest", type=int, default=25, help="modules to list by size")
    args = parser.parse_args()
    known = modules(args.root)
    edges = import_edges(known)

    def layer(module: str) -> str:
        return module.split(".")[1]

    counts = collections.Counter(
        (layer(a), layer(b))
        for a, targets in edges.items()
        for b in targets
        if layer(a) != layer(b)
    )
    print("## layer edges (import count)")
    for (low_layer, high_layer), n in sorted(counts.items()):
        upward = LAYERS.index(high_layer) > LAYERS.index(low_layer)
        print(f"  {low_layer:9s} -> {high_layer:9s} {n:3d}{'   UPWARD' if upward else ''}")
    groups = cycles(edges, list(known))
    print(f"## import cycles (runtime imports; TYPE_CHECKING excluded): {len(groups)}")
    for group in groups:
        print("  ", " <-> ".join(m.removeprefix("pixsearch.") for m in group))
    sizes = sorted(((len(p.read_text().splitlines()), m) for m, p in known.items()), reverse=True)
    print(f"## modules: {len(known)}; lines: {sum(n for n, _ in sizes)}")
    print(f"## lines per module (largest {args.largest})")
    for n, module in sizes[: args.largest]:
        print(f"  {n:5d} {module.removeprefix('pixsearch.')}")


if __name__ == "__main__":
    main()
