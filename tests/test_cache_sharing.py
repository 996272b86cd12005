"""CacheNamespace.get_or_compute: the claim protocol as one cache method (issue 25, point 3).

The caller only says how to compute rows; reading, claiming, waiting for
other processes and storing are the cache's.
"""

from __future__ import annotations

import hashlib
import threading
import time

import numpy as np
import pytest
from cache_workers import claim_path
from hypothesis import given, settings
from hypothesis import strategies as st

from skorchlite.cache import EmbeddingCache, Filled, get_or_compute

FINGERPRINT = {"backbone": "demo", "layer": None}
DIM = 4


def key_of(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def vector_of(key: str) -> np.ndarray:
    return np.frombuffer(bytes.fromhex(key)[:DIM], dtype=np.uint8).astype(np.float32)


class Counting:
    """A compute function that records the rows it computed, in batches of 2."""

    def __init__(self, keys: list[str], changed: dict[int, str] | None = None, delay: float = 0.0):
        self.keys, self.changed, self.delay = keys, changed or {}, delay
        self.rows: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, rows):
        batch: list[int] = []
        for row in rows:
            batch.append(row)
            if len(batch) == 2:
                yield self._batch(batch)
                batch = []
        if batch:
            yield self._batch(batch)

    def _batch(self, rows: list[int]):
        time.sleep(self.delay)
        with self.lock:
            self.rows += rows
        computed = [self.changed.get(row, self.keys[row]) for row in rows]
        return rows, computed, np.stack([vector_of(key) for key in computed])


@pytest.fixture
def ns(tmp_path):
    return EmbeddingCache(tmp_path / "cache").namespace(FINGERPRINT)


@settings(max_examples=30, deadline=None)
@given(picks=st.lists(st.integers(0, 5), max_size=12), cached=st.booleans())
def test_each_distinct_key_is_computed_once_then_read(tmp_path_factory, picks, cached):
    namespace = EmbeddingCache(tmp_path_factory.mktemp("cache")).namespace(FINGERPRINT) if cached else None
    keys = [key_of(i) for i in picks]
    out = np.empty((len(keys), DIM), dtype=np.float32)
    compute = Counting(keys)
    filled = get_or_compute(namespace, keys, compute, out)
    assert sorted({keys[row] for row in compute.rows}) == sorted(set(keys))
    assert filled == Filled(cached=0, computed=len(set(keys)), shared=0)
    for key, row in zip(keys, out, strict=True):
        np.testing.assert_array_equal(row, vector_of(key))
    if namespace is not None:
        again = Counting(keys)
        assert namespace.get_or_compute(keys, again, out) == Filled(len(keys), 0, 0)
        assert again.rows == []  # compute is not even called
        assert list(namespace.path.rglob("*.claim")) == []


def test_a_row_whose_content_changed_is_stored_under_its_new_key_and_its_duplicates_computed_apart(ns):
    keys = [key_of(0), key_of(1), key_of(0)]
    compute = Counting(keys, changed={0: key_of(9)})  # row 0 now holds other bytes
    out = np.empty((3, DIM), dtype=np.float32)
    assert ns.get_or_compute(keys, compute, out) == Filled(cached=0, computed=3, shared=0)
    assert compute.rows == [0, 1, 2]
    np.testing.assert_array_equal(out, np.stack([vector_of(key_of(9)), vector_of(key_of(1)), vector_of(key_of(0))]))
    np.testing.assert_array_equal(ns.get(key_of(9)), vector_of(key_of(9)))


def test_threads_over_overlapping_keys_compute_each_key_once(ns):
    keys = [key_of(i) for i in range(12)]
    shares = [keys[:8], keys[:3:-1]]  # 4 keys in common, visited in opposite orders
    computes = [Counting(share, delay=0.05) for share in shares]
    outs = [np.empty((len(share), DIM), dtype=np.float32) for share in shares]
    filled: list[Filled] = []
    threads = [
        threading.Thread(target=lambda i=i: filled.append(ns.get_or_compute(shares[i], computes[i], outs[i])))
        for i in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(len(c.rows) for c in computes) == len(keys)
    assert sum(f.computed for f in filled) == len(keys) and sum(f.shared + f.cached for f in filled) == 4
    for share, out in zip(shares, outs, strict=True):
        np.testing.assert_array_equal(out, np.stack([vector_of(key) for key in share]))
    assert list(ns.path.rglob("*.claim")) == []


def test_a_failed_compute_releases_its_claims_and_stores_nothing(ns):
    keys = [key_of(i) for i in range(3)]
    claims_seen = []

    def failing(rows):
        rows = list(rows)  # every row claimed, as decoding would claim them
        claims_seen.extend(claim_path(ns, keys[row]).exists() for row in rows)
        raise ValueError("sample 2: cannot decode")
        yield  # a generator, as a real compute is

    with pytest.raises(ValueError, match="sample 2"):
        ns.get_or_compute(keys, failing, np.empty((3, DIM), dtype=np.float32))
    assert claims_seen == [True, True, True]
    assert list(ns.path.rglob("*.claim")) == [] and list(ns.path.rglob("*.emb")) == []


def test_out_must_have_a_row_per_key(ns):
    with pytest.raises(ValueError, match="one row per key"):
        ns.get_or_compute([key_of(0)], Counting([]), np.empty((2, DIM), dtype=np.float32))
