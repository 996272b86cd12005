"""Red-team cases of issue 13 for the embedding cache, skorchlite.files and
skorchlite.dask (points 10, 11, 12 and the "Also" items on dim, umask and
distributed's private attributes).

Tests run as root, where a read-only ``chmod`` stops nothing, and a
read-only mount or a full filesystem needs privileges CI lacks. So a
read-only cache and a full disk are simulated at the system-call layer the
cache uses: ``os.open`` for writing, ``os.mkdir``, ``os.unlink``,
``os.replace`` fail with ``EROFS``, or ``os.write`` with ``ENOSPC``, for
paths under the cache folder only; reads go through untouched, as on a
read-only mount.
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
from cache_workers import claim_path

from skorchlite import files
from skorchlite.cache import CacheWarning, EmbeddingCache, claims
from skorchlite.cache import namespace as namespace_module

FINGERPRINT = {"backbone": "resnet18", "layer": None}
ROOT = Path(__file__).resolve().parents[1]


def key_of(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


@pytest.fixture
def ns(tmp_path):
    return EmbeddingCache(tmp_path / "cache").namespace(FINGERPRINT)


def _start_time(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]


def _leave_claim(ns, key: str, text: str, age: float = 10.0) -> Path:
    path = claim_path(ns, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    old = time.time() - age
    os.utime(path, (old, old))
    return path


def _run(code: str, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env, **kwargs)


# --- point 10: claims never block silently ---------------------------------


def test_point10_empty_claim_left_by_a_full_disk_is_taken_over(ns, monkeypatch):
    key = key_of(0)
    path = _leave_claim(ns, key, "", age=3.0)
    monkeypatch.setattr(claims, "CLAIM_TIMEOUT", 5.0)  # the old code waited until then
    start = time.monotonic()
    assert ns.wait([key]) == [None]
    assert time.monotonic() - start < 1  # at once: nothing to wait for
    assert ns.claim(key) is True
    assert path.read_text().startswith(f"{socket.gethostname()} {os.getpid()} ")
    ns.release(key)


def test_point10_garbled_claim_is_taken_over_but_a_claim_being_written_is_not(ns):
    assert ns.claim(_leave_claim(ns, key_of(0), "\x00\xff garbage", age=10).stem) is True
    young = _leave_claim(ns, key_of(1), "", age=0)  # as just created by O_EXCL, owner not yet written
    assert ns.claim(young.stem) is False


def test_point10_claim_naming_a_recycled_pid_is_taken_over(ns):
    """PID reuse after a container restart: the claim names this very process
    (or another live one), but no process holds its lock."""
    for i, pid in enumerate((os.getpid(), os.getppid())):
        _leave_claim(ns, key_of(i), f"{socket.gethostname()} {pid} 1\n")
        assert ns.claim(key_of(i)) is True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process start times come from /proc")
def test_point10_without_locks_pid_and_start_time_identify_the_owner(ns, monkeypatch):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(claims.fcntl, "flock", no_locks)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        host = socket.gethostname()
        _leave_claim(ns, key_of(0), f"{host} {sleeper.pid} {_start_time(sleeper.pid)}\n")
        _leave_claim(ns, key_of(1), f"{host} {sleeper.pid} {int(_start_time(sleeper.pid)) - 1}\n")  # pid reused
        _leave_claim(
            ns, key_of(2), f"{host} {os.getpid()} {_start_time(os.getpid())}\n"
        )  # not in this process's records
        assert [ns.claim(key_of(i)) for i in range(3)] == [False, True, True]
    finally:
        sleeper.kill()
        sleeper.wait()
    assert ns.claim(key_of(0)) is True  # its process is gone


HOLDER = """
import sys, time
from skorchlite.cache import EmbeddingCache
ns = EmbeddingCache(sys.argv[1]).namespace({"backbone": "resnet18", "layer": None})
assert ns.claim(sys.argv[2])
print("claimed", flush=True)
time.sleep(60)
"""


def test_point10_live_holder_is_waited_for_with_a_log_line_and_its_death_frees_the_claim(ns, monkeypatch, caplog):
    key = key_of(0)
    holder = _run(HOLDER, str(ns.path.parent), key, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "claimed\n"
        assert ns.claim(key) is False
        monkeypatch.setattr(namespace_module, "WAIT_NOTICE", 0.2)
        threading.Timer(0.6, holder.kill).start()  # SIGKILL: no cleanup of its own
        start = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="skorchlite.cache"):
            assert ns.wait([key]) == [None]
        assert 0.5 < time.monotonic() - start < 5  # waited for the holder, then not a second longer than its life
    finally:
        holder.kill()
        holder.wait()
    [line] = [r.getMessage() for r in caplog.records]
    assert str(ns.path) in line and key in line and f"{socket.gethostname()} {holder.pid}" in line
    assert ns.claim(key) is True  # the kernel released the dead holder's lock
    ns.release(key)


def _interrupt_after_creating_claims(monkeypatch) -> None:
    """Deliver a real SIGINT right after the kernel creates a claim file."""
    real_open = os.open

    def open_then_interrupt(path, flags, *args, **kwargs):
        fd = real_open(path, flags, *args, **kwargs)
        if str(path).endswith(".claim") and flags & os.O_EXCL:
            signal.raise_signal(signal.SIGINT)
        return fd

    monkeypatch.setattr(os, "open", open_then_interrupt)


def test_point10_ctrl_c_during_claim_creation_leaves_a_consistent_claim(ns, monkeypatch):
    key = key_of(0)
    _interrupt_after_creating_claims(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        ns.claim(key)
    monkeypatch.undo()
    # The interrupt came after the claim was complete and recorded: it holds
    # this process's identity, the holder may retake it, and releasing works.
    assert claim_path(ns, key).read_text().startswith(f"{socket.gethostname()} {os.getpid()} ")
    assert ns.claim(key) is True
    ns.release(key)
    assert not claim_path(ns, key).exists()


INTERRUPTED = """
import os, signal, sys
from skorchlite.cache import EmbeddingCache
ns = EmbeddingCache(sys.argv[1]).namespace({"backbone": "resnet18", "layer": None})
real_open = os.open
def open_then_interrupt(path, flags, *args, **kwargs):
    fd = real_open(path, flags, *args, **kwargs)
    if str(path).endswith(".claim") and flags & os.O_EXCL:
        signal.raise_signal(signal.SIGINT)
    return fd
try:
    os.open = open_then_interrupt
    ns.claim(sys.argv[2])  # interrupted inside claim()
except KeyboardInterrupt:
    os.open = real_open
try:
    assert ns.claim(sys.argv[3])
    signal.raise_signal(signal.SIGINT)  # after claim() returned, before the caller noted it
except KeyboardInterrupt:
    sys.exit(130)  # as the skorchlite program does
"""


def test_point10_ctrl_c_of_a_program_leaves_no_claim_behind(ns):
    child = _run(INTERRUPTED, str(ns.path.parent), key_of(0), key_of(1))
    assert child.wait(timeout=60) == 130
    assert list(ns.path.rglob("*.claim")) == []


def test_point10_ctrl_c_in_transform_leaves_no_claim_that_blocks_the_next_call(tmp_path, monkeypatch):
    from cache_workers import SHARED, small_extractor

    from skorchlite.cache import CacheNamespace

    extractor = small_extractor(str(tmp_path))
    real_get = CacheNamespace.get
    calls = []

    def get_interrupted_after_the_claim(self, key, dim=None):
        calls.append(key)
        if len(calls) == 3:  # 2 reads by get_many, then the read just after claiming
            raise KeyboardInterrupt
        return real_get(self, key, dim)

    monkeypatch.setattr(CacheNamespace, "get", get_interrupted_after_the_claim)
    with pytest.raises(KeyboardInterrupt):
        extractor.transform(SHARED[:2])
    monkeypatch.setattr(CacheNamespace, "get", real_get)
    monkeypatch.setattr(claims, "CLAIM_TIMEOUT", 5.0)  # bounds the wait the old code made
    start = time.monotonic()
    extractor.transform(SHARED[:2])
    assert time.monotonic() - start < 3
    assert list(tmp_path.rglob("*.claim")) == []


# --- point 11: a read-only cache ---------------------------------------------


def _fail_writes_under(monkeypatch, root: Path, code: int) -> None:
    """Make the write system calls the cache uses fail under ``root`` with ``code``."""
    root = str(root)

    def under(path) -> bool:
        return os.path.abspath(os.fspath(path)).startswith(root)

    def failing(real, is_write=lambda *a, **k: True):
        def call(path, *args, **kwargs):
            if under(path) and is_write(*args, **kwargs):
                raise OSError(code, os.strerror(code), os.fspath(path))
            return real(path, *args, **kwargs)

        return call

    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT
    monkeypatch.setattr(os, "open", failing(os.open, lambda flags, *a, **k: flags & writes))
    for name in ("mkdir", "unlink", "replace", "rename", "rmdir"):
        monkeypatch.setattr(os, name, failing(getattr(os, name)))


def test_point11_read_only_cache_serves_hits_computes_misses_and_warns_once(tmp_path, monkeypatch):
    cache = EmbeddingCache(tmp_path / "cache")
    ns = cache.namespace(FINGERPRINT)
    ns.put(key_of(0), [1.0, 2.0])
    damaged = ns._entry(key_of(1))
    damaged.parent.mkdir()
    damaged.write_bytes(b"SKLEMB1\n torn")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    _fail_writes_under(monkeypatch, tmp_path, errno.EROFS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ro = cache.namespace(FINGERPRINT)
        assert ro.get(key_of(0), dim=2).tolist() == [1.0, 2.0]  # hits still served
        assert ro.get(key_of(1)) is None  # damaged: a miss, though it cannot be deleted
        assert ro.claim(key_of(2)) is True  # compute it yourself
        ro.put(key_of(2), [3.0, 4.0])
        ro.release(key_of(2))
        assert ro.wait([key_of(2)]) == [None]
        cache.namespace(FINGERPRINT).put(key_of(3), [1.0])  # another namespace object, same folder
    [warning] = [w for w in caught if issubclass(w.category, CacheWarning)]
    message = str(warning.message)
    assert str(tmp_path / "cache") in message and "Read-only file system" in message
    assert "SKORCHLITE_CACHE" in message and "cache=False" in message
    monkeypatch.undo()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_point11_transform_on_a_read_only_cache_equals_no_cache(tmp_path, monkeypatch):
    from cache_workers import SHARED, small_extractor

    expected = small_extractor(False).transform(SHARED[:3])
    _fail_writes_under(monkeypatch, tmp_path, errno.EROFS)
    with pytest.warns(CacheWarning, match="cannot create"):
        out = small_extractor(str(tmp_path / "ro")).transform(SHARED[:3])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


# --- point 12: clear lines for unusable cache folders; a full disk -------------


def test_point12_cache_folder_that_is_a_file(tmp_path):
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("user data")
    cache = EmbeddingCache(a_file)
    with pytest.warns(CacheWarning, match=rf"{a_file} is a file, not a folder.*SKORCHLITE_CACHE.*cache=False"):
        ns = cache.namespace(FINGERPRINT)
    assert ns.get(key_of(0)) is None and ns.claim(key_of(0)) is True
    ns.put(key_of(0), [1.0])
    assert a_file.read_text() == "user data"
    with pytest.raises(NotADirectoryError, match=rf"{a_file} is a file, not a folder.*cache=False"):
        cache.size()


def test_point12_cache_folder_under_proc():
    with pytest.warns(CacheWarning, match=r"/proc/skorchlite-cache.*SKORCHLITE_CACHE.*cache=False"):
        ns = EmbeddingCache("/proc/skorchlite-cache").namespace(FINGERPRINT)
    assert ns.get(key_of(0)) is None
    ns.put(key_of(0), [1.0])


def _full_disk_under(monkeypatch, root: Path) -> None:
    """``os.write`` fails with ENOSPC for files under ``root`` (after writing nothing)."""
    real_write = os.write

    def write(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(root)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="names descriptors through /proc")
def test_point12_full_disk_leaves_no_entry_temp_file_or_claim(ns, monkeypatch):
    _full_disk_under(monkeypatch, ns.path)
    with pytest.warns(CacheWarning, match=r"No space left on device.*SKORCHLITE_CACHE.*cache=False"):
        assert ns.claim(key_of(0)) is True  # the claim file could not be written: compute it anyway
    ns.put(key_of(0), [1.0, 2.0])
    ns.release(key_of(0))
    fresh = EmbeddingCache(ns.path.parent).namespace(FINGERPRINT)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per namespace and process already
        fresh.put(key_of(1), [1.0])
    monkeypatch.undo()
    assert sorted(p.name for p in ns.path.rglob("*") if p.is_file()) == ["fingerprint.json"]


# --- Also: dim, umask, distributed -------------------------------------------


def test_also_files_never_changes_the_umask(tmp_path, monkeypatch):
    """Setting the umask to read it races with other threads creating files."""
    calls = []
    original = dict(vars(files))
    monkeypatch.setattr(os, "umask", lambda mask: calls.append(mask) or 0o022)
    reloaded = importlib.reload(files)
    reloaded.write_atomic(tmp_path / "a", b"x")
    monkeypatch.undo()
    # The module as it was, not reloaded again: a reload makes new exception
    # classes, and the other modules and tests hold the first ones.
    vars(files).update(original)
    assert calls == []
    umask = os.umask(0o027)
    try:
        files.write_atomic(tmp_path / "b", b"x")
    finally:
        os.umask(umask)
    assert (tmp_path / "b").stat().st_mode & 0o777 == 0o640


def test_also_torch_threads_uses_no_private_executor_attributes():
    torch = pytest.importorskip("torch")
    skdask = pytest.importorskip("skorchlite.dask")
    from distributed.threadpoolexecutor import ThreadPoolExecutor

    class Bare(ThreadPoolExecutor):
        """An executor of a future Dask, without concurrent.futures' private attributes."""

        def __getattribute__(self, name):
            if name in ("_threads", "_max_workers", "_thread_name_prefix"):
                raise AttributeError(name)
            return super().__getattribute__(name)

    old = Bare(1)
    worker = types.SimpleNamespace(executors={"default": old}, state=types.SimpleNamespace(nthreads=3), name="w")
    plugin = skdask.TorchThreads(threads=torch.get_num_threads(), keep_memory=False)
    plugin.setup(worker)
    assert worker.executors["default"] is not old and worker.executors["default"]._max_workers == 3
    worker.executors["default"].shutdown()

    broken = types.SimpleNamespace(executors=None, state=worker.state, name="w")
    with pytest.warns(RuntimeWarning, match="could not renew the task threads of worker w"):
        plugin.setup(broken)
