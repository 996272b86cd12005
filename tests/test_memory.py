"""The allocator setting the program applies: fewer page faults per batch."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from skorchlite import cli

# Page faults of a CPU batch after the first, fewest of three (the heap may
# still grow once), in a fresh process: the pytest process's allocator may
# already have been tuned.
FAULTS_OF_A_BATCH = """
import resource, sys, torch
if sys.argv[1] == "keep":
    from skorchlite.memory import keep_freed_memory
    assert keep_freed_memory()
from skorchlite import PretrainedFeatureExtractor
torch.set_num_threads(1)
network = PretrainedFeatureExtractor(cache=False).fit()._network(torch.device("cpu"))
batch = torch.rand(16, 3, 224, 224).contiguous(memory_format=torch.channels_last)
faults = []
with torch.inference_mode():
    network(batch)
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        network(batch)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(min(faults))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's thresholds are glibc's")
def test_keeping_freed_memory_saves_the_page_faults_of_each_batch():
    faults = {
        mode: int(subprocess.run([sys.executable, "-c", FAULTS_OF_A_BATCH, mode], check=True,
                                 capture_output=True, text=True).stdout)
        for mode in ("default", "keep")
    }
    assert faults["keep"] * 10 < faults["default"], faults


def test_the_program_tunes_its_allocator_then_runs(monkeypatch):
    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append("keep") or True)
    monkeypatch.setattr(cli, "main", lambda argv=None: calls.append("main") or 3)
    assert cli.run() == 3
    assert calls == ["keep", "main"]


def test_python_dash_m_runs_the_program():
    done = subprocess.run([sys.executable, "-m", "skorchlite", "backbones", "--offline"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "efficientnet_lite0" in done.stdout
