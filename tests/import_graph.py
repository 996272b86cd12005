"""How deep skorchlite's modules stack: ``python tests/import_graph.py``.

A node is one top-level module of the package or one subpackage (its
modules taken together); an edge, one node importing another anywhere in
its files, inside functions too (a deferred import is still a dependency),
but not under ``if TYPE_CHECKING:``. Levels count the nodes on the longest
chain of imports from the command line (``cli``) down to a leaf.
"""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "skorchlite"


def node_of(module: str) -> str:
    """The node of a dotted module name inside the package: ``backbones.weights`` -> ``backbones``."""
    return module.split(".")[0] or "skorchlite"


def imported(tree: ast.AST, module: str) -> set[str]:
    """The package's modules (dotted, relative to the package) that a file imports."""
    found = set()
    package = module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = [ast.Pass()]  # before ast.walk goes below it
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1] + (node.module.split(".") if node.module else [])
                # "from . import versioning" imports the module versioning, not the package.
                found |= {".".join(base)} if node.module else {".".join([*base, alias.name]) for alias in node.names}
            elif node.module and node.module.split(".")[0] == "skorchlite":
                found.add(node.module.partition(".")[2])
        elif isinstance(node, ast.Import):
            found |= {alias.name.partition(".")[2] for alias in node.names if alias.name.split(".")[0] == "skorchlite"}
    return found


@cache
def graph() -> dict[str, frozenset[str]]:
    """Each node's imports of other nodes."""
    edges: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        module = ".".join(parts)  # package/__init__ keeps "__init__" so that relative imports resolve
        source = node_of(module) if module != "__init__" else "skorchlite"
        targets = {node_of(target) for target in imported(ast.parse(path.read_text(encoding="utf-8")), module)}
        edges.setdefault(source, set()).update(targets - {source})
    return {node: frozenset(targets) for node, targets in edges.items()}


def chain(start: str = "cli") -> list[str]:
    """The longest chain of imports from ``start``; a cycle raises ``ValueError``."""
    edges = graph()

    @cache
    def longest(node: str, seen: frozenset[str] = frozenset()) -> tuple[str, ...]:
        if node in seen:
            raise ValueError(f"import cycle through {node}")
        below = [longest(target, seen | {node}) for target in sorted(edges.get(node, ()))]
        return (node, *max(below, key=len, default=()))

    return list(longest(start))


if __name__ == "__main__":
    links = chain(sys.argv[1] if len(sys.argv) > 1 else "cli")
    edges = sum(map(len, graph().values()))
    print(f"{len(graph())} nodes, {edges} import edges; {len(links)} levels: {' -> '.join(links)}")
