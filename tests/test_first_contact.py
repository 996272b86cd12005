"""First contact, as a new user meets the project (issue 27, point 8): the
README's snippet runs as a script, grouped, and prints what ``skorchlite
evaluate`` prints; the first examples split with groups; the CI script
installs Chromium lean and works without root."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_docs import ROOT, blocks, stand_in  # noqa: F401 - stand_in is a fixture used below

from skorchlite import cli

SCORE = re.compile(r"balanced accuracy (\d\.\d{3} ± \d\.\d{3})")


def test_readme_snippet_runs_as_a_script_and_prints_what_evaluate_prints(stand_in, capsys):  # noqa: F811
    code = blocks(ROOT / "README.md", "python")[0]
    # Grouped folds, as the README's "honest evaluation" asks: never the leaky plain cv=5.
    assert "find_duplicates" in code and "StratifiedGroupKFold" in code and "groups=groups" in code
    assert not re.search(r"\bcv=\d", code)
    script = stand_in / "snippet.py"
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, str(script)], cwd=stand_in, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    printed = SCORE.search(result.stdout)
    assert printed, f"the snippet printed {result.stdout!r}"

    assert cli.main(["evaluate", "../shared/data/busi", "--verbose", "0"]) == 0
    assert SCORE.search(capsys.readouterr().out).group(1) == printed.group(1)


def test_the_docs_front_page_shows_the_readme_s_snippet():
    assert blocks(ROOT / "docs" / "index.md", "python")[0] == blocks(ROOT / "README.md", "python")[0]


def test_the_first_split_of_the_medical_page_keeps_copies_together():
    code = blocks(ROOT / "docs" / "medical.md", "python")[0]
    assert "find_duplicates" in code and re.search(r"train_val_test_split\([^)]*groups=groups", code)


def test_the_readme_says_how_to_install_torch_without_cuda():
    text = (ROOT / "README.md").read_text()
    assert "--index-url https://download.pytorch.org/whl/cpu" in text
    assert ".venv/bin/skorchlite" in text


# ------------------------------------------------------------------ .ci/chromium
def _fake_bin(tmp_path: Path, *, uid: int, tools: tuple[str, ...], apt_fails: bool = False) -> tuple[Path, Path]:
    """A PATH of fake commands that log how they were called."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    fakes = {
        "id": f"echo {uid}",
        "sudo": f'echo "sudo $*" >> {log}; exec "$@"',
        "apt-get": f'echo "apt-get $*" >> {log}; exit {1 if apt_fails else 0}',
        "chromium": "exit 0",
    }
    for name in tools:
        (bin_dir / name).write_text(f"#!/bin/sh\n{fakes[name]}\n")
        (bin_dir / name).chmod(0o755)
    (bin_dir / "env").symlink_to("/usr/bin/env")
    return bin_dir, log


@pytest.mark.parametrize(
    "case, uid, tools, expected",
    [
        ("already installed", 1000, ("id", "chromium", "apt-get"), []),
        (
            "root",
            0,
            ("id", "apt-get"),
            ["apt-get update -qq", "apt-get install -y -qq --no-install-recommends chromium"],
        ),
        (
            "sudo",
            1000,
            ("id", "sudo", "apt-get"),
            [
                "sudo apt-get update -qq",
                "apt-get update -qq",
                "sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium",
                "apt-get install -y -qq --no-install-recommends chromium",
            ],
        ),
        ("neither root nor sudo", 1000, ("id", "apt-get"), []),
    ],
)
def test_ci_installs_chromium_lean_and_works_without_root(tmp_path, case, uid, tools, expected):
    bin_dir, log = _fake_bin(tmp_path, uid=uid, tools=tools)
    result = subprocess.run(
        ["/bin/bash", str(ROOT / ".ci" / "chromium")], env={"PATH": str(bin_dir)}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert (log.read_text().splitlines() if log.exists() else []) == expected
    assert ("needs root or sudo" in result.stderr) == (case == "neither root nor sudo")


def test_ci_goes_on_when_the_install_fails(tmp_path):
    bin_dir, _ = _fake_bin(tmp_path, uid=0, tools=("id", "apt-get"), apt_fails=True)
    result = subprocess.run(
        ["/bin/bash", str(ROOT / ".ci" / "chromium")], env={"PATH": str(bin_dir)}, capture_output=True, text=True
    )
    assert result.returncode == 0 and "installing chromium with apt-get failed" in result.stderr


def test_ci_run_uses_the_lean_install():
    run = (ROOT / ".ci" / "run").read_text()
    assert ".ci/chromium" in run and "apt-get" not in run
