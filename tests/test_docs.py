"""Every code block of the README and docs runs, on a tiny stand-in for BUSI.

The blocks read ``../shared/data/busi`` as a user would; each test runs in a
temporary ``main/`` folder beside a ``shared/data/busi`` of a few small
images, so the examples are exercised exactly as written, quickly.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skorchlite import cli
from skorchlite.cli import evaluate as cli_evaluate

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
# The README's set-up line is the one command not run here: .ci/run runs it.
SETUP = 'python3 -m venv .venv && .venv/bin/pip install -e ".[dev]" && .venv/bin/python -m pytest'


def blocks(page: Path, language: str) -> list[str]:
    return [code for lang, code in BLOCK.findall(page.read_text()) if lang == language]


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    """``main/`` as the working directory, ``shared/data/busi`` beside it."""
    rng = np.random.default_rng(0)
    for label, count, (low, high) in [("benign", 12, (0, 80)), ("malignant", 8, (90, 170)), ("normal", 8, (180, 256))]:
        folder = tmp_path / "shared" / "data" / "busi" / label
        folder.mkdir(parents=True)
        for i in range(1, count + 1):
            pixels = rng.integers(low, high, (48, 48), dtype=np.uint8)
            Image.fromarray(pixels).convert("RGB").save(folder / f"{label} ({i}).png")
    work = tmp_path / "main"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_the_pages_have_code():
    assert sum(len(blocks(p, "python")) for p in PAGES) >= 8
    assert all(lang in ("python", "bash") for p in PAGES for lang, _ in BLOCK.findall(p.read_text()))


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "python")], ids=lambda p: p.name)
def test_python_blocks_run(page, stand_in):
    if "skorchlite.dask" in page.read_text() and importlib.util.find_spec("distributed") is None:
        pytest.skip('needs the optional extra: pip install "skorchlite[dask]"')
    namespace: dict = {"__name__": "__docs__"}
    for code in blocks(page, "python"):
        exec(compile(code, f"{page.name}", "exec"), namespace)  # noqa: S102 - our own docs


def _commands(page: Path) -> list[str]:
    return [line.strip() for code in blocks(page, "bash") for line in code.splitlines() if line.strip()]


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "bash")], ids=lambda p: p.name)
def test_shell_blocks_run(page, stand_in, capsys, monkeypatch):
    for command in _commands(page):
        if command == SETUP:
            continue
        words = shlex.split(command)
        # As the README's set-up leaves them: a bare "skorchlite" needs an activated venv.
        prefix = (
            [".venv/bin/skorchlite"] if words[0] == ".venv/bin/skorchlite" else [".venv/bin/python", "-m", "skorchlite"]
        )
        assert words[: len(prefix)] == prefix, f"{page.name}: a command the tests do not run as written: {command}"
        args = words[len(prefix) :]
        if args == ["evaluate"]:
            # The README's main job on the bundled digits: a subset keeps it quick.
            images, labels = cli_evaluate._digits()
            keep = np.concatenate([np.flatnonzero(labels == d)[:5] for d in ("0", "1", "2")])
            monkeypatch.setattr(
                cli_evaluate, "_digits", lambda images=images, labels=labels, keep=keep: (images[keep], labels[keep])
            )
        assert cli.main(args) == 0, f"{command}: {capsys.readouterr().err}"


def test_readme_opens_with_the_two_commands():
    commands = _commands(ROOT / "README.md")[:2]
    assert commands == [SETUP, ".venv/bin/python -m skorchlite evaluate"]


def test_backbone_table_matches_the_registry():
    from torchvision.models import get_model, get_model_weights

    from skorchlite.backbones import get_backbone
    from skorchlite.backbones.layers import last_linear

    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in (ROOT / "docs" / "backbones.md").read_text().splitlines()
        if line.startswith("| ") and not line.startswith("| backbone")
    ]
    assert len(rows) >= 10
    for name, dim, params, size, weights, _ in rows:
        if name.startswith("efficientnet_lite"):
            backbone = get_backbone(name)
            model, found_dim = backbone.model, backbone.embedding_dim
            found_size, found_weights = backbone.preprocessing.crop_size, backbone.weights.id
            count = sum(p.numel() for p in model.parameters())
        else:
            model = get_model(name, weights=None)
            head = model.get_submodule(last_linear(model))
            found_dim = head.in_features
            count = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in head.parameters())
            default = get_model_weights(name).DEFAULT
            found_size, found_weights = default.transforms().crop_size[0], repr(default)
        assert (int(dim), int(params.replace(",", "")), int(size), weights) == (
            found_dim,
            count,
            found_size,
            found_weights,
        ), name


def test_docs_build_strictly(tmp_path):
    # mkdocs comes with the dev extra, beside this interpreter.
    mkdocs = Path(sys.executable).parent / "mkdocs"
    result = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "index.html").read_text().count("PretrainedFeatureExtractor") > 3
