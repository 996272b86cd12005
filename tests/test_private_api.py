"""Dependencies told honestly (issue 27, point 6): every private name of
scikit-learn, torch and torchvision comes through skorchlite/private_api.py,
which lists them; every package the code imports is declared."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import keyword
import re
import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import skorchlite
from skorchlite import private_api

PACKAGE = Path(skorchlite.__file__).parent
PYPROJECT = PACKAGE.parent / "pyproject.toml"
LOWEST = PACKAGE.parent / ".ci" / "lowest.txt"
LIBRARIES = ("sklearn", "torch", "torchvision")


def _private(parts: list[str]) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in parts)


def private_uses(source: str) -> list[tuple[int, str]]:
    """(line, dotted name) of each private name of :data:`LIBRARIES` that
    ``source`` imports or reaches as an attribute of an imported module."""
    tree = ast.parse(source)
    modules: dict[str, str] = {}  # local name -> the library module or name it is bound to
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in LIBRARIES:
                    modules[alias.asname or alias.name.split(".")[0]] = (
                        alias.name if alias.asname else alias.name.split(".")[0]
                    )
                    if _private(alias.name.split(".")):
                        found.append((node.lineno, alias.name))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] in LIBRARIES:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                modules[alias.asname or alias.name] = name
                if _private(name.split(".")):
                    found.append((node.lineno, name))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, base = [], node
            while isinstance(base, ast.Attribute):
                chain.insert(0, base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id in modules and _private(chain[:1]):
                found.append((node.lineno, ".".join([modules[base.id], chain[0]])))
    return sorted(set(found))


@pytest.mark.parametrize(
    "source",
    [
        "from sklearn.base import _fit_context",
        "from sklearn.utils._param_validation import Interval",
        "import torch.nn.modules.module as m\nm._global_forward_hooks",
        "from torch.nn.modules import module\nmodule._global_forward_hooks",
        "import torch\ntorch._dynamo.reset()",
        "import sklearn.utils._param_validation",
        "from torchvision.transforms import _presets",
    ],
)
def test_the_scan_finds_private_names_however_they_are_reached(source):
    assert private_uses(source)


@given(name=st.from_regex(r"[a-z][a-z_]{0,10}", fullmatch=True).filter(lambda n: not keyword.iskeyword(n)))
def test_the_scan_leaves_public_names_alone(name):
    source = f"import torch\nfrom sklearn.base import {name}\ntorch.{name}\nfrom torch import nn\nnn.{name}"
    assert private_uses(source) == []


def test_only_private_api_imports_private_names_of_scikit_learn_torch_and_torchvision():
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line} uses {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "private_api.py"
        for line, name in private_uses(path.read_text(encoding="utf-8"))
    ]
    assert not found, "import these through skorchlite/private_api.py:\n" + "\n".join(found)


def test_private_api_lists_each_private_name_it_uses_and_they_all_resolve():
    source = Path(private_api.__file__).read_text(encoding="utf-8")
    used = {name for _, name in private_uses(source)}
    assert used, "private_api.py uses no private name"
    # A name of a private module is listed by that module's name.
    listed = [".".join(name.split(".")[:i]) for name in used for i in range(2, name.count(".") + 2)]
    missing = [
        name
        for name in used
        if not any(
            f"``{p}``" in (private_api.__doc__ or "") for p in listed if name.startswith(p) and _private(p.split("."))
        )
    ]
    assert not missing, f"not in private_api's table: {missing}"
    for name in private_api.__all__:
        assert getattr(private_api, name) is not None
    assert "torch" not in private_api.__dict__  # torch's names on first use only


def _declared() -> tuple[set[str], set[str]]:
    """The distributions pyproject.toml declares: as dependencies, and in any extra."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]

    def names(requirements: list[str]) -> set[str]:
        out = set()
        for requirement in requirements:
            match = re.match(r"([A-Za-z0-9_.-]+)(?:\[([^\]]*)\])?", requirement)
            # "dask[distributed]" declares the distribution its extra installs.
            out |= {match[1].lower(), *(e.strip().lower() for e in (match[2] or "").split(",") if e.strip())}
        return {name.replace("_", "-") for name in out}

    extras = set().union(*(names(group) for group in project["optional-dependencies"].values()))
    return names(project["dependencies"]), extras


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(top-level name, imported when the module is) of each absolute import of ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    at_import = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], id(node) in at_import) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
            found.append(((node.module or "").split(".")[0], id(node) in at_import))
    return [(name, eager) for name, eager in found if name not in sys.stdlib_module_names and name != "skorchlite"]


def test_every_package_the_code_imports_is_declared():
    """A module's own imports need a dependency; one inside a function, one of any extra."""
    required, optional = _declared()
    distributions = importlib.metadata.packages_distributions()
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for name, eager in _imports(path):
            dists = {d.lower().replace("_", "-") for d in distributions.get(name, [name])}
            if eager and not dists & required:
                problems.append(f"{path.relative_to(PACKAGE.parent)} imports {name} as it loads: not a dependency")
            elif not dists & (required | optional):
                problems.append(f"{path.relative_to(PACKAGE.parent)} imports {name}: declared nowhere")
    assert not problems, "\n".join(sorted(set(problems)))


def test_the_lower_bounds_are_installed_or_older():
    """What CI installs (the newest releases, then the lowest) satisfies the declared bounds."""
    for text in _project()["dependencies"]:
        requirement = Requirement(text)
        installed = importlib.metadata.version(requirement.name)
        assert requirement.specifier.contains(installed, prereleases=True), (text, installed)


def lower_bounds(requirements: list[str]) -> dict[str, Version | None]:
    """Each requirement's distribution and its ``>=`` bound (None without one)."""
    bounds: dict[str, Version | None] = {}
    for text in requirements:
        requirement = Requirement(text)
        lows = [Version(spec.version) for spec in requirement.specifier if spec.operator == ">="]
        bounds[canonicalize_name(requirement.name)] = max(lows, default=None)
    return bounds


def drift(project: dict, lowest: str) -> list[str]:
    """How the ``name==version`` lines of ``lowest`` (comments aside) miss
    pyproject's ``project`` table: a dependency not pinned at its lower bound,
    or a pin of an extra's package that is not its bound there."""
    pinned: dict[str, Version] = {}
    problems = []
    for line in lowest.splitlines():
        line = line.partition("#")[0].strip()
        if line:
            requirement = Requirement(line)
            specs = list(requirement.specifier)
            if [spec.operator for spec in specs] != ["=="]:
                problems.append(f"{line}: not one pinned release")
            else:
                pinned[canonicalize_name(requirement.name)] = Version(specs[0].version)
    required = lower_bounds(project["dependencies"])
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    declared = {**lower_bounds(extras), **required}
    for name, bound in declared.items():
        if name in required and bound is None:
            problems.append(f"{name}: a dependency without a lower bound")
        elif (name in required or name in pinned) and pinned.get(name) != bound:
            problems.append(f"{name}: pinned at {pinned.get(name)}, the lower bound is {bound}")
    problems += [f"{name}: pinned, not declared" for name in pinned.keys() - declared.keys()]
    return problems


def _project() -> dict:
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]


def test_ci_installs_each_lower_bound_exactly():
    """.ci/run's second stage installs .ci/lowest.txt, every dependency at its
    lower bound: a bound that drifts from what that stage tests fails here."""
    assert drift(_project(), LOWEST.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("numpy==", "# numpy=="),  # a dependency left out
        ("torch==2.3.0", "torch==2.3.1"),  # not the bound
        ("torch==2.3.0", "torch>=2.3"),  # not a pin
        ("pandas==2.0.0", "pandas==1.5.3"),  # an extra's package below its bound
        ("tqdm==", "requests==2.0\ntqdm=="),  # not declared
    ],
)
def test_the_lowest_check_catches_drift(old, new):
    lowest = LOWEST.read_text(encoding="utf-8")
    assert old in lowest
    assert drift(_project(), lowest.replace(old, new, 1))


def test_private_api_is_importable_without_torch_loaded_by_it():
    code = "import sys, skorchlite.private_api, skorchlite.validation; assert 'torch' not in sys.modules"
    module = importlib.import_module("subprocess")
    result = module.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env())
    assert result.returncode == 0, result.stderr


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
