"""How the package's modules depend on each other."""

from __future__ import annotations

import ast
import dataclasses
import enum
import importlib
from pathlib import Path

import skorchlite

PACKAGE = Path(skorchlite.__file__).parent


def test_no_module_imports_another_modules_private_names():
    """What several modules need is public in its owner (issue 17, point 4)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            ours = node.level > 0 or (node.module or "").split(".")[0] == "skorchlite"
            private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
            if ours and private:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} imports {', '.join(private)}")
    assert not found, "\n".join(found)


def _imports(path: Path) -> list[tuple[int, int, str]]:
    """(line, level, absolute dotted name) of each module of the package that
    the file at ``path`` imports, as ``from M import n`` names both M and
    M.n (n may be a module)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    package = parts[:-1]  # a package's __init__ is in the package, as its modules are
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            found += [(node.lineno, node.level, name) for name in [module] + [f"{module}.{a.name}" for a in node.names]]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, 0, alias.name) for alias in node.names]
    return [(line, level, name) for line, level, name in found if name.split(".")[0] == "skorchlite"]


def test_no_module_imports_another_packages_private_module():
    """A private module (``_name.py``) is its package's own: ``skorchlite.cli``
    may not import ``skorchlite.inspect._model`` (issue 25, point 4)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
        for line, _, name in _imports(path):
            parts = name.split(".")
            for i, part in enumerate(parts):
                owner = ".".join(parts[:i])
                private = part.startswith("_") and not part.startswith("__")
                if private and importer != owner and not importer.startswith(owner + "."):
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}, private to {owner}")
    assert not found, "\n".join(found)


def test_the_package_imports_itself_by_relative_imports_only():
    """As every package of skorchlite does (issue 25, point 4: inspect/ did not)."""
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, level, _ in _imports(path)
        if level == 0
    ]
    assert not found, "absolute imports of skorchlite in:\n" + "\n".join(sorted(set(found)))


def _stateful(value: object) -> bool:
    """An instance of a class of the package that holds state: not a class,
    function or module, not a frozen dataclass, an enum member or a named tuple."""
    if isinstance(value, (type, enum.Enum, tuple)) or not type(value).__module__.startswith("skorchlite"):
        return False
    return not (dataclasses.is_dataclass(value) and type(value).__dataclass_params__.frozen)  # type: ignore[attr-defined]


def test_no_module_shares_a_stateful_global_with_another():
    """What a module keeps (a memo of built backbones, say) is written and
    read by that module alone, through functions (issue 25, point 4:
    backbones/loading.py's BUILT was written by resolve.py)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, _, name in _imports(path):
            module, _, attribute = name.rpartition(".")
            if not module:
                continue
            try:
                value = getattr(importlib.import_module(module), attribute, None)
            except ImportError:  # the name of a module, or an optional dependency's
                continue
            if _stateful(value):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}, a {type(value).__name__}")
    assert not found, "\n".join(found)


def test_one_memo_mechanism():
    """Per-process memos are skorchlite.memo.Memo objects, not lru_caches
    beside them (issue 25, point 4)."""
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if (isinstance(node, ast.Name) and node.id == "lru_cache")
        or (isinstance(node, ast.Attribute) and node.attr == "lru_cache")
    ]
    assert not found, found


def test_the_imports_stack_at_most_ten_levels_from_the_command_line():
    """Issue 25, point 6: 13 levels and 122 import edges before it (python tests/import_graph.py)."""
    from import_graph import chain, graph

    assert len(chain("cli")) <= 10, " -> ".join(chain("cli"))
    assert sum(map(len, graph().values())) < 122
