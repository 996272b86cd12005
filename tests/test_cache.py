"""The on-disk embedding cache: layout, format, damage handling, atomicity."""

from __future__ import annotations

import errno
import hashlib
import json
import multiprocessing
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from cache_workers import claim_of_a_dead_process, claim_path
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from skorchlite import cache as cache_module
from skorchlite.cache import CacheNamespace, CacheWarning, EmbeddingCache, default_cache_dir, resolve_cache

FINGERPRINT = {"backbone": "resnet18", "weights_sha256": "0" * 64, "layer": None, "pooling": "avg"}


def key_of(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def vector_of(i: int, dim: int = 64) -> np.ndarray:
    return np.random.default_rng(i).standard_normal(dim).astype(np.float32)


@pytest.fixture
def ns(tmp_path) -> CacheNamespace:
    return EmbeddingCache(tmp_path / "cache").namespace(FINGERPRINT)


# --- locations -------------------------------------------------------------


def test_default_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SKORCHLITE_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "skorchlite"

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "skorchlite"

    monkeypatch.setenv("SKORCHLITE_CACHE", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"

    # Empty means unset; a relative XDG path is invalid per the XDG spec.
    monkeypatch.setenv("SKORCHLITE_CACHE", "")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/xdg")
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "skorchlite"


def test_resolve_cache_forms(monkeypatch, tmp_path):
    monkeypatch.setenv("SKORCHLITE_CACHE", str(tmp_path / "default"))
    assert resolve_cache(False) is None
    assert resolve_cache(None) is None
    assert resolve_cache(True).root == tmp_path / "default"
    assert resolve_cache(str(tmp_path / "a")).root == tmp_path / "a"
    assert resolve_cache(tmp_path / "b").root == tmp_path / "b"
    assert not (tmp_path / "a").exists()  # resolving touches nothing


@pytest.mark.parametrize("bad", [1, 0, 1.5, b"/tmp/x", ["/tmp"], EmbeddingCache("/tmp/x")])
def test_resolve_cache_rejects_other_values(bad):
    message = (
        "The 'cache' parameter of resolve_cache must be an instance of 'bool', an instance of 'str', an instance of"
    )
    with pytest.raises(TypeError, match=message) as info:
        resolve_cache(bad)
    assert repr(bad) in str(info.value)


def test_resolve_cache_rejects_empty_path():
    with pytest.raises(ValueError, match="empty"):
        resolve_cache("")


def test_module_does_not_import_torch():
    code = "import sys, skorchlite.cache; assert 'torch' not in sys.modules, 'torch imported'"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


# --- round trip and format -------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    vector=hnp.arrays(np.float32, st.integers(1, 2048), elements=st.floats(width=32, allow_nan=True)),
)
def test_round_trip_is_exact(tmp_path_factory, vector):
    ns = EmbeddingCache(tmp_path_factory.mktemp("cache")).namespace(FINGERPRINT)
    key = hashlib.sha256(vector.tobytes()).hexdigest()
    ns.put(key, vector)
    got = ns.get(key, dim=vector.size)
    assert got.dtype == np.float32 and got.shape == vector.shape
    assert got.tobytes() == vector.tobytes()  # bit-exact, NaN payloads and -0.0 included


def test_put_converts_to_float32(ns):
    ns.put(key_of(0), [1, 2, 3])
    ns.put(key_of(1), np.arange(4, dtype=np.float64)[::-1])  # non-contiguous, float64
    assert ns.get(key_of(0)).tolist() == [1.0, 2.0, 3.0]
    assert ns.get(key_of(1)).tolist() == [3.0, 2.0, 1.0, 0.0]


def test_put_rejects_non_1d(ns):
    for bad in (np.zeros((2, 3)), np.float32(1.0)):
        with pytest.raises(ValueError, match="1-D"):
            ns.put(key_of(0), bad)


def test_returned_vector_is_read_only(ns):
    ns.put(key_of(0), vector_of(0))
    with pytest.raises(ValueError, match="read-only"):
        ns.get(key_of(0))[:] = 0


def test_get_many_keeps_order_and_reports_misses(ns):
    for i in (1, 3):
        ns.put(key_of(i), vector_of(i))
    got = ns.get_many([key_of(i) for i in range(5)], dim=64)
    assert [g is None for g in got] == [True, False, True, False, True]
    np.testing.assert_array_equal(got[1], vector_of(1))
    np.testing.assert_array_equal(got[3], vector_of(3))
    assert ns.get_many([]) == []


# Traversal, wrong case, wrong length, non-hex, trailing newline, not a str.
BAD_KEYS = [
    "../etc/passwd",
    "../" + "a" * 61,
    "A" * 64,
    "a" * 63,
    "a" * 65,
    "g" * 64,
    "a" * 64 + "\n",
    "",
    None,
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_invalid_keys_are_rejected(ns, key):
    with pytest.raises(ValueError, match="64 lowercase hex"):
        ns.get(key)
    with pytest.raises(ValueError, match="64 lowercase hex"):
        ns.put(key, [1.0])
    with pytest.raises(ValueError, match="64 lowercase hex"):
        ns.get_many([key_of(0), key])


def test_entry_file_layout(ns):
    key, vector = key_of(7), vector_of(7, dim=5)
    ns.put(key, vector)
    path = ns.path / key[:2] / f"{key}.emb"
    data = path.read_bytes()
    payload = vector.astype("<f4").tobytes()
    assert data[:8] == b"SKLEMB1\n"
    assert struct.unpack("<I", data[8:12]) == (5,)
    assert data[12:28] == hashlib.blake2b(payload, digest_size=16).digest()
    assert data[28:] == payload
    assert len(data) == 28 + 4 * 5


@pytest.mark.parametrize("dim", [0, 1, 5])
def test_every_prefix_of_an_entry_is_damaged_and_the_whole_decodes(dim):
    """Each cut is read as damaged (None), never as an error or a vector;
    the whole entry gives its vector back, an empty one included."""
    from skorchlite.cache import entries

    vector = np.arange(dim, dtype="<f4") + 0.5
    data = entries.encode(vector)
    for size in range(len(data)):
        assert entries.decode(data[:size]) is None, size
    decoded = entries.decode(data)
    assert decoded.dtype == np.float32 and decoded.shape == (dim,)
    np.testing.assert_array_equal(decoded, vector)


def test_a_namespace_that_cannot_be_created_warns_whole_and_computes_without_storing(tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_bytes(b"")
    root = blocker / "cache"
    with pytest.warns(CacheWarning) as caught:
        ns = EmbeddingCache(root).namespace(FINGERPRINT)
    [message] = [str(w.message) for w in caught]
    assert re.fullmatch(
        rf"The embedding cache {re.escape(str(root))} cannot be used: cannot create {re.escape(str(root))}\S* "
        rf"\({re.escape(str(blocker))} is a file, not a folder\)\. Embeddings are computed but not stored, which "
        r"is slower\. Set SKORCHLITE_CACHE \(or cache=\) to a writable folder, or pass cache=False to turn the "
        r"cache off\.",
        message,
    ), message
    ns.put(key_of(0), vector_of(0))  # not stored, and no second warning
    assert ns.get(key_of(0)) is None and not root.exists()


# --- damaged entries ---------------------------------------------------------


def _entry(ns: CacheNamespace, key: str) -> Path:
    return ns.path / key[:2] / f"{key}.emb"


def test_truncated_entry_is_a_miss_and_removed(ns):
    key = key_of(0)
    ns.put(key, vector_of(0))
    path = _entry(ns, key)
    for size in (path.stat().st_size - 1, 20, 0):
        path.write_bytes(path.read_bytes()[:size])
        assert ns.get(key) is None
        assert not path.exists()
        ns.put(key, vector_of(0))


def test_flipped_payload_byte_is_a_miss_and_removed(ns):
    key = key_of(0)
    ns.put(key, vector_of(0))
    path = _entry(ns, key)
    data = bytearray(path.read_bytes())
    data[40] ^= 0x01
    path.write_bytes(bytes(data))
    assert ns.get(key) is None
    assert not path.exists()


@settings(max_examples=25, deadline=None)
@given(
    stored=st.integers(1, 64),
    asked=st.integers(1, 64),
    read=st.sampled_from(["get", "get_many", "wait"]),
)
def test_an_entry_of_another_width_is_set_aside_with_a_warning_and_computed_again(
    tmp_path_factory, stored, asked, read
):
    """Issue 24, class 2: the cache only saves time, so a checksum-valid entry
    of another width (another model's, written by hand or by a bug) never
    fails a run: it is set aside, named in a warning, and computed again."""
    if stored == asked:
        return
    ns = EmbeddingCache(tmp_path_factory.mktemp("cache")).namespace(FINGERPRINT)
    key = key_of(0)
    ns.put(key, vector_of(0, dim=stored))
    reads = {"get": lambda: ns.get(key, dim=asked), "get_many": lambda: ns.get_many([key], dim=asked)[0]}
    reads["wait"] = lambda: ns.wait([key], dim=asked)[0]
    with pytest.warns(CacheWarning, match=rf"Cache entry {re.escape(str(_entry(ns, key)))} holds .*set aside"):
        assert reads[read]() is None
    assert not _entry(ns, key).exists()
    assert [p.name for p in _entry(ns, key).parent.iterdir()] == []  # nothing left aside
    ns.put(key, vector_of(0, dim=asked))  # the recomputed vector
    np.testing.assert_array_equal(ns.get(key, dim=asked), vector_of(0, dim=asked))


def test_setting_aside_never_loses_a_good_entry_written_at_the_same_moment(ns, monkeypatch):
    """A writer replaces the wrong-width entry with a good one between the
    read and the setting aside: the good entry stays (is put back)."""
    key, good = key_of(0), vector_of(0, dim=8)
    ns.put(key, vector_of(0, dim=5))
    real_rename = os.rename

    def writer_first(src, dst):
        ns.put(key, good)  # lands just before the rename
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", writer_first)
    with pytest.warns(CacheWarning, match="holds 5 values, not the 8"):
        assert ns.get(key, dim=8) is None
    monkeypatch.undo()
    np.testing.assert_array_equal(ns.get(key, dim=8), good)


def test_lying_header_dim_is_a_miss(ns):
    key = key_of(0)
    ns.put(key, vector_of(0, dim=8))
    path = _entry(ns, key)
    data = bytearray(path.read_bytes())
    data[8:12] = struct.pack("<I", 7)
    path.write_bytes(bytes(data))
    assert ns.get(key) is None
    assert not path.exists()


@pytest.mark.parametrize("garbage", [b"not an entry at all, just text " * 3, b"\x80\x04\x95" + bytes(40)])
def test_garbage_file_is_a_miss_and_removed(ns, garbage):
    key = key_of(0)
    path = _entry(ns, key)
    path.parent.mkdir(parents=True)
    path.write_bytes(garbage)
    assert ns.get(key) is None
    assert not path.exists()


def test_entry_removed_by_someone_else_is_a_plain_miss(ns, monkeypatch):
    key = key_of(0)
    ns.put(key, vector_of(0))
    path = _entry(ns, key)
    path.write_bytes(b"bad")
    real_unlink = Path.unlink

    def unlink_raced(self, missing_ok=False):
        real_unlink(self)
        raise FileNotFoundError(self)

    monkeypatch.setattr(Path, "unlink", unlink_raced)
    assert ns.get(key) is None


# --- atomicity ---------------------------------------------------------------


def test_failed_replace_leaves_no_entry(ns, monkeypatch):
    key = key_of(0)

    def broken_replace(src, dst):
        raise OSError(errno.EIO, "disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.warns(CacheWarning, match="disk on fire"):
        ns.put(key, vector_of(0))  # the cache is skipped, the caller's work goes on
    monkeypatch.undo()
    assert ns.get(key) is None
    assert not _entry(ns, key).exists()
    assert [p.name for p in (ns.path / key[:2]).iterdir()] == []  # temp file cleaned up


def test_leftover_temp_files_are_ignored(ns):
    key = key_of(0)
    ns.put(key, vector_of(0))
    shard = ns.path / key[:2]
    (shard / ".tmp-crashed").write_bytes(b"SKLEMB1\n half")
    (shard / ".tmp-abc.emb").write_bytes(b"SKLEMB1\n half")
    np.testing.assert_array_equal(ns.get(key), vector_of(0))
    assert EmbeddingCache(ns.path.parent).size() == (1, 28 + 4 * 64)
    assert (shard / ".tmp-crashed").exists()


def _write_keys(root: str, barrier, n_keys: int) -> None:
    # Module level so the spawn context can import it in the child.
    ns = EmbeddingCache(root).namespace(FINGERPRINT)
    barrier.wait()
    for i in range(n_keys):
        ns.put(key_of(i), vector_of(i))
        got = ns.get(key_of(i), dim=64)
        if got is None or got.tobytes() != vector_of(i).tobytes():
            raise AssertionError(f"key {i} read back wrong: {got!r}")


def test_concurrent_writers_of_same_keys(tmp_path):
    n_keys = 200
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    workers = [ctx.Process(target=_write_keys, args=(str(tmp_path), barrier, n_keys)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0]

    ns = EmbeddingCache(tmp_path).namespace(FINGERPRINT)
    got = ns.get_many([key_of(i) for i in range(n_keys)], dim=64)
    for i, vector in enumerate(got):
        assert vector is not None and vector.tobytes() == vector_of(i).tobytes()
    assert list(tmp_path.rglob(".tmp-*")) == []
    assert EmbeddingCache(tmp_path).size() == (n_keys, n_keys * (28 + 4 * 64))


# --- claims: concurrent processes share the work ---------------------------


def _claim_from_another_thread(ns: CacheNamespace, key: str) -> bool:
    got = []
    thread = threading.Thread(target=lambda: got.append(ns.claim(key)))
    thread.start()
    thread.join()
    return got[0]


def test_claim_is_exclusive_until_released(ns):
    key = key_of(0)
    assert ns.claim(key) is True
    assert ns.claim(key) is True  # the holder itself: it computes it
    assert _claim_from_another_thread(ns, key) is False  # held by a live thread
    assert re.fullmatch(rf"{socket.gethostname()} {os.getpid()} \d+\n", claim_path(ns, key).read_text())
    ns.release(key)
    assert not claim_path(ns, key).exists()
    assert ns.claim(key) is True
    ns.release(key)
    ns.release(key)  # releasing twice is harmless
    assert ns.get(key) is None and EmbeddingCache(ns.path.parent).size() == (0, 0)


def test_claim_of_a_dead_process_is_taken_over(ns):
    key = key_of(0)
    path = claim_of_a_dead_process(ns, key)
    assert ns.claim(key) is True
    assert path.read_text().startswith(f"{socket.gethostname()} {os.getpid()} ")


def test_claim_from_another_host_is_respected_until_it_times_out(ns):
    key = key_of(0)
    path = claim_path(ns, key)
    path.parent.mkdir(parents=True)
    path.write_text("some-other-host 1\n")
    assert ns.claim(key) is False
    old = time.time() - cache_module.CLAIM_TIMEOUT - 1
    os.utime(path, (old, old))
    assert ns.claim(key) is True


def test_wait_returns_entries_written_by_the_claim_holder(ns):
    written, released, orphan = key_of(0), key_of(1), key_of(2)
    claimed = threading.Event()

    def holder():
        assert ns.claim(written) and ns.claim(released)
        claimed.set()
        time.sleep(0.3)
        ns.put(written, vector_of(0))
        ns.release(written)
        ns.release(released)  # gave up without an entry, as after a failed batch

    thread = threading.Thread(target=holder)
    thread.start()
    claimed.wait()
    start = time.perf_counter()
    got = ns.wait([written, released, orphan], dim=64)
    thread.join()
    assert time.perf_counter() - start >= 0.25  # it waited for the holder
    np.testing.assert_array_equal(got[0], vector_of(0))
    assert got[1] is None and got[2] is None  # the caller computes these


def test_wait_takes_over_when_the_holder_dies(ns):
    key = key_of(0)
    claim_of_a_dead_process(ns, key)
    assert ns.wait([key]) == [None]


# --- namespaces --------------------------------------------------------------


def test_namespace_directory_and_fingerprint(tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # the constructor touches nothing
    a = cache.namespace(FINGERPRINT)
    same = cache.namespace(dict(reversed(FINGERPRINT.items())))
    other = cache.namespace({**FINGERPRINT, "pooling": "max"})
    assert a.path == same.path != other.path
    assert a.path.parent == tmp_path / "cache"
    canonical = json.dumps(FINGERPRINT, sort_keys=True, separators=(",", ":"))
    assert a.path.name == hashlib.sha256(canonical.encode()).hexdigest()[:32]
    assert json.loads((a.path / "fingerprint.json").read_text()) == FINGERPRINT
    assert json.loads((other.path / "fingerprint.json").read_text())["pooling"] == "max"


def test_namespace_keeps_existing_fingerprint_file(tmp_path):
    cache = EmbeddingCache(tmp_path)
    path = cache.namespace(FINGERPRINT).path / "fingerprint.json"
    before = path.stat().st_mtime_ns, path.stat().st_ino
    cache.namespace(FINGERPRINT)
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before


def test_namespace_rejects_non_json_fingerprint(tmp_path):
    with pytest.raises(TypeError):
        EmbeddingCache(tmp_path).namespace({"weights": object()})


def test_size_and_clear(tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    assert cache.size() == (0, 0)
    cache.clear()  # missing root is fine
    a = cache.namespace(FINGERPRINT)
    b = cache.namespace({**FINGERPRINT, "layer": "layer3"})
    for i in range(3):
        a.put(key_of(i), vector_of(i, dim=10))
    b.put(key_of(0), vector_of(0, dim=20))
    assert cache.size() == (4, 3 * (28 + 40) + (28 + 80))

    # Files that are not ours survive clear() and are not counted.
    stranger = tmp_path / "cache" / ("f" * 32)
    stranger.mkdir()
    (stranger / "notes.txt").write_text("keep me")
    (tmp_path / "cache" / "README").write_text("keep me too")
    cache.clear()
    assert cache.size() == (0, 0)
    assert not a.path.exists() and not b.path.exists()
    assert (stranger / "notes.txt").exists() and (tmp_path / "cache" / "README").exists()
    assert a.get(key_of(0)) is None


def test_put_after_clear_recreates_namespace(tmp_path):
    cache = EmbeddingCache(tmp_path)
    ns = cache.namespace(FINGERPRINT)
    cache.clear()
    ns.put(key_of(0), vector_of(0))
    assert json.loads((ns.path / "fingerprint.json").read_text()) == FINGERPRINT
    assert cache.size() == (1, 28 + 4 * 64)


def test_entries_follow_the_umask_so_a_shared_cache_is_readable(ns):
    key = "c" * 64
    ns.put(key, np.ones(3))
    mode = ns._entry(key).stat().st_mode & 0o777
    umask = os.umask(0o022)
    os.umask(umask)
    assert mode == 0o666 & ~umask
