"""What the cache tests share: claim files and the work of child processes.

A spawned child imports its target by module name; test_extractor imports
``conftest``, which in a child resolves to the rootdir's conftest.py, so the
children's work lives here."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from skorchlite import PretrainedFeatureExtractor
from skorchlite.cache import CacheNamespace


def claim_path(namespace: CacheNamespace, key: str) -> Path:
    """Where the documented layout puts ``key``'s claim."""
    return namespace.path / key[:2] / f"{key}.claim"


def claim_of_a_dead_process(namespace: CacheNamespace, key: str) -> Path:
    """Leave ``key`` claimed by a process of this host that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    path = claim_path(namespace, key)
    path.parent.mkdir(parents=True)
    path.write_text(f"{socket.gethostname()} {child.pid}\n")
    return path


SHARED = np.random.default_rng(1).integers(0, 256, size=(48, 40, 40, 3), dtype=np.uint8)


def small_extractor(cache) -> PretrainedFeatureExtractor:
    return PretrainedFeatureExtractor(image_size=64, batch_size=4, cache=cache).fit()


def count_forward(extractor: PretrainedFeatureExtractor) -> list[int]:
    """A one-element list that counts the images through the extractor's network."""
    count = [0]
    network = extractor._network(torch.device("cpu"))
    network.register_forward_hook(lambda module, inputs, output: count.__setitem__(0, count[0] + len(inputs[0])))
    return count


def embed_rows(cache_dir: str, rows: list[int], barrier, results) -> None:
    torch.set_num_threads(1)
    extractor = small_extractor(cache_dir)
    count = count_forward(extractor)
    small_extractor(False).transform(SHARED[:4])  # build the network before the race
    count[0] = 0
    barrier.wait()
    out = extractor.transform(SHARED[rows])
    results.put((rows, count[0], out))
