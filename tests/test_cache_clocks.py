"""Issue 24, class 4: every wait on a claim is bounded whatever the claim
files' timestamps say (another host's clock, a shared filesystem, a clock
that jumps). CLAIM_TIMEOUT is made small here, so each case takes well under
a second; a wait that never ends fails the test instead of hanging it."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from skorchlite import PretrainedFeatureExtractor
from skorchlite.cache import EmbeddingCache, claims
from skorchlite.cache import namespace as namespace_module
from skorchlite.images import check_images, content_key

TIMEOUT = 0.3
# What a bounded wait may take beyond TIMEOUT on a loaded machine.
SLACK = 2.0
FOREIGN = "a-host-with-another-clock 4242 777\n"
REAL_TIME = time.time


@pytest.fixture(autouse=True)
def _small_timeout(monkeypatch):
    monkeypatch.setattr(claims, "CLAIM_TIMEOUT", TIMEOUT)
    monkeypatch.setattr(namespace_module, "_POLL_SECONDS", 0.01)


def key_of(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def foreign_claim(ns, key: str, mtime: float) -> Path:
    """A claim written by a process of another host, stamped ``mtime`` by its
    clock; a new file each time (replacing any claim there)."""
    path = ns.path / key[:2] / f"{key}.claim"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".new-{threading.get_ident()}")
    tmp.write_text(FOREIGN)
    os.utime(tmp, (mtime, mtime))
    os.replace(tmp, path)
    return path


def bounded(call, limit: float):
    """``call()``'s result, failing (not hanging) if it takes longer than ``limit`` seconds."""
    result, error = [], []

    def run():
        try:
            result.append(call())
        except BaseException as err:  # noqa: BLE001 - re-raised in the test's thread
            error.append(err)

    thread = threading.Thread(target=run, daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"still waiting after {limit} s"
    if error:
        raise error[0]
    return result[0], time.monotonic() - start


# Seconds the claim's timestamp is off from this host's clock: far future
# (another host's clock set ahead), far past, and near now.
offsets = st.one_of(
    st.floats(min_value=-1e9, max_value=1e9, allow_nan=False),
    st.floats(min_value=-2 * TIMEOUT, max_value=2 * TIMEOUT, allow_nan=False),
)
# This host's wall clock jumping while it waits (NTP steps, a suspended VM):
# the offset of time.time() from the real clock at each of its calls.
jumps = st.lists(st.floats(min_value=-1e8, max_value=1e8, allow_nan=False), min_size=1, max_size=5)

FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def jumping_clock(monkeypatch, steps: list[float]) -> None:
    calls = [0]

    def now() -> float:
        calls[0] += 1
        return REAL_TIME() + steps[calls[0] % len(steps)]

    monkeypatch.setattr(time, "time", now)


@FAST
@given(offset=offsets, steps=jumps)
def test_a_foreign_claim_is_waited_for_at_most_the_timeout_whatever_its_timestamp(
    tmp_path_factory, monkeypatch, offset, steps
):
    ns = EmbeddingCache(tmp_path_factory.mktemp("cache")).namespace({"backbone": "toy"})
    key = key_of(0)
    foreign_claim(ns, key, max(0.0, REAL_TIME() + offset))
    with monkeypatch.context() as patch:
        jumping_clock(patch, steps)
        claimed_at_once = ns.claim(key)
        if not claimed_at_once:
            (result,), took = bounded(lambda: ns.wait([key], dim=4), TIMEOUT + SLACK)
            assert result is None  # nobody wrote it: ours to compute
            assert took < TIMEOUT + SLACK
            # The claim is now abandoned by this process's clock: taken over.
            assert ns.claim(key) is True
    assert (ns.path / key[:2] / f"{key}.claim").read_text().split()[1] == str(os.getpid())
    ns.release(key)


@FAST
@given(offset=offsets)
def test_an_entry_written_by_the_foreign_holder_is_the_result(tmp_path_factory, offset):
    ns = EmbeddingCache(tmp_path_factory.mktemp("cache")).namespace({"backbone": "toy"})
    key, vector = key_of(1), np.arange(4, dtype=np.float32)
    path = foreign_claim(ns, key, max(0.0, REAL_TIME() + offset))
    # The other host writes the entry, then releases its claim, while this process waits.
    writer = threading.Timer(TIMEOUT / 3, lambda: (ns.put(key, vector), path.unlink(missing_ok=True)))
    writer.start()
    (result,), _ = bounded(lambda: ns.wait([key], dim=4), TIMEOUT + SLACK)
    writer.join()
    # Before the writer: the claim was taken over (an old timestamp) and the
    # caller computes; else the holder's entry is read.
    assert result is None or np.array_equal(result, vector)


def test_a_claim_that_keeps_being_replaced_bounds_the_wait(tmp_path):
    """A new claim file (new inode) every few milliseconds, each stamped in
    the future: no single claim grows old, yet the wait ends."""
    ns = EmbeddingCache(tmp_path / "cache").namespace({"backbone": "toy"})
    key = key_of(2)
    stop = threading.Event()

    def flap():
        while not stop.wait(0.02):
            foreign_claim(ns, key, REAL_TIME() + 1e6)

    foreign_claim(ns, key, REAL_TIME() + 1e6)
    flapper = threading.Thread(target=flap, daemon=True)
    flapper.start()
    try:
        (result,), took = bounded(lambda: ns.wait([key], dim=4), TIMEOUT + SLACK)
    finally:
        stop.set()
        flapper.join()
    assert result is None and took >= TIMEOUT


class Half(nn.Module):
    """A small network, so that the extractor tests run in milliseconds."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x) / 2


TINY = {"size": 16, "resize_size": 16, "mean": (0.5,) * 3, "std": (0.25,) * 3}
IMAGES = np.random.default_rng(0).integers(0, 256, size=(4, 16, 16, 3), dtype=np.uint8)


@pytest.mark.parametrize("offset", [1e9, 3600.0, -1e9, 0.0])
@pytest.mark.parametrize("flapping", [False, True])
def test_transform_ends_and_is_right_when_a_foreign_host_claims_its_images(tmp_path, offset, flapping):
    torch.manual_seed(0)
    net = Half().eval()
    extractor = PretrainedFeatureExtractor(net, preprocessing=TINY, cache=tmp_path / "cache").fit()
    expected = PretrainedFeatureExtractor(net, preprocessing=TINY, cache=False).fit().transform(IMAGES)
    ns = EmbeddingCache(tmp_path / "cache").namespace(extractor.fingerprint_)
    keys = [content_key(sample, i) for i, sample in enumerate(check_images(IMAGES))]
    stop = threading.Event()

    def claim_all():
        for key in keys[1:]:
            foreign_claim(ns, key, REAL_TIME() + offset)

    def keep_claiming():  # each claim replaced by a new one every 20 ms
        while flapping and not stop.wait(0.02):
            claim_all()

    claim_all()
    flapper = threading.Thread(target=keep_claiming, daemon=True)
    flapper.start()
    try:
        out, _ = bounded(lambda: extractor.transform(IMAGES), 2 * TIMEOUT + SLACK)
    finally:
        stop.set()
        flapper.join()
    np.testing.assert_allclose(out, expected, atol=1e-6)
