"""How the package's modules depend on each other."""

from __future__ import annotations

import ast
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
