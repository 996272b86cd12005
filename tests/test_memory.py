"""The allocator setting the program applies: fewer page faults per batch."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from skorchlite.cli import program

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


GLIBC = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's thresholds are glibc's")


def _run(script: str, *args: str) -> list[int]:
    done = subprocess.run([sys.executable, "-c", script, *args], check=True, capture_output=True, text=True)
    return [int(word) for word in done.stdout.split()]


@GLIBC
def test_keeping_freed_memory_saves_the_page_faults_of_each_batch():
    faults = {mode: _run(FAULTS_OF_A_BATCH, mode)[0] for mode in ("default", "keep")}
    assert faults["keep"] * 10 < faults["default"], faults


# The estimator's own transform, in a fresh process that never tuned its
# allocator: page faults inside each forward pass of one transform (hooks on
# its network), against a bare forward pass of the same network.
FAULTS_OF_A_TRANSFORM = """
import resource, torch, numpy as np
from skorchlite import PretrainedFeatureExtractor
torch.set_num_threads(1)
X = np.random.default_rng(0).integers(0, 256, (48, 224, 224, 3), dtype=np.uint8)
extractor = PretrainedFeatureExtractor(cache=False, batch_size=16).fit()
network = extractor._network(torch.device("cpu"))
batch = torch.rand(16, 3, 224, 224).contiguous(memory_format=torch.channels_last)
def minflt():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
with torch.inference_mode():
    network(batch)
    before = minflt()
    network(batch)
    bare = minflt() - before
marks = []
network.register_forward_pre_hook(lambda *args: marks.append(minflt()))
network.register_forward_hook(lambda *args: marks.append(minflt()))
extractor.transform(X)
print(bare, *[end - start for start, end in zip(marks[::2], marks[1::2])])
"""


@GLIBC
def test_the_estimators_get_the_allocator_speed_without_the_program():
    bare, *batches = _run(FAULTS_OF_A_TRANSFORM)
    assert len(batches) == 3
    # The first batch grows the heap; the later ones reuse it, as under keep_freed_memory.
    assert max(batches[1:]) * 10 < bare, (bare, batches)


# After the engine's block: the memory it kept is returned, the raised
# thresholds are gone (a 200 MB block is mapped again and given back when
# freed), and a caller's mid-size allocations page-fault no more than in a
# process that never ran it (glibc's adaptive threshold after a forward pass).
AFTER_THE_BLOCK = """
import ctypes, ctypes.util, resource, sys
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()
def touch(n):
    p = libc.malloc(n); libc.memset(p, 1, n); libc.free(p)
def faults_of(n, times):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(times):
        touch(n)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
import torch
from skorchlite.memory import freed_memory_kept
from skorchlite import PretrainedFeatureExtractor
network = PretrainedFeatureExtractor(cache=False).fit()._network(torch.device("cpu"))
batch = torch.rand(16, 3, 224, 224).contiguous(memory_format=torch.channels_last)
base = rss()
if sys.argv[1] == "block":
    with freed_memory_kept(), torch.inference_mode():
        network(batch)
        touch(200 << 20)
        kept = rss() - base
else:
    with torch.inference_mode():
        network(batch)
    kept = 0
after = rss() - base
touch(200 << 20)
print(kept >> 20, after >> 20, (rss() - base) >> 20, faults_of(16 << 20, 20))
"""


@GLIBC
def test_the_block_leaves_the_callers_allocator_as_its_own_rules_would():
    kept, after, after_big, faults = _run(AFTER_THE_BLOCK, "block")
    _, _, plain_big, plain_faults = _run(AFTER_THE_BLOCK, "plain")
    assert kept >= 150, kept  # inside the block, freed memory stays with the process
    assert after < 100 and after_big < 100, (after, after_big)  # given back, and no longer kept
    assert after_big <= plain_big + 50
    # 20 blocks of 16 MiB: the plain process reuses the heap its forward pass left
    # (none fault), ours faults the first block in (4,096 pages: we gave that memory
    # back), then reuses it: the thresholds let the heap serve them, as glibc's would.
    assert faults <= plain_faults + 4096 + 500, (faults, plain_faults)


def test_blocks_nest_and_keep_the_programs_setting(monkeypatch):
    from skorchlite import memory

    calls = []
    monkeypatch.setattr(memory, "_set_thresholds", lambda m, t: calls.append((m, t)) or True)
    monkeypatch.setattr(memory, "_process_setting", None)
    with memory.freed_memory_kept():
        with memory.freed_memory_kept():
            pass
        assert calls == [(memory.KEEP_MMAP_THRESHOLD, memory.KEEP_TRIM_THRESHOLD)]
    assert calls[1:] == [(memory.GLIBC_ADAPTIVE_CEILING, 2 * memory.GLIBC_ADAPTIVE_CEILING)]
    calls.clear()
    monkeypatch.setattr(memory, "_process_setting", (1, 2))  # keep_freed_memory ran: leave it be
    with memory.freed_memory_kept():
        pass
    assert calls == []


def test_the_program_tunes_its_allocator_then_runs(monkeypatch):
    calls = []
    monkeypatch.setattr(program, "keep_freed_memory", lambda: calls.append("keep") or True)
    monkeypatch.setattr(program, "main", lambda argv=None: calls.append("main") or 3)
    assert program.run() == 3
    assert calls == ["keep", "main"]


def test_python_dash_m_runs_the_program():
    done = subprocess.run(
        [sys.executable, "-m", "skorchlite", "backbones", "--offline"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "efficientnet_lite0" in done.stdout
