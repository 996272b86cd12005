"""The embedding cache: content-addressed vectors on disk.

One cache serves every estimator, clone and process: estimators hold only
the cache *location* (``True``, a path or ``False``), so ``sklearn.clone``,
joblib workers and separate runs all read and write the same files.

Layout::

    <root>/
        <namespace>/               sha256 of the model fingerprint, 32 hex chars
            fingerprint.json       what produced these vectors, for humans
            <key[:2]>/<key>.emb    one embedding per image

A *namespace* holds the vectors of one model: its name is a digest of a
JSON fingerprint (backbone, weights hash, layer, pooling, preprocessing,
dtype, library version), so changing any of them starts a fresh namespace
instead of serving stale vectors. A *key* is the 64-hex-digit content digest
of an image; it is validated strictly, since it becomes a file name.

Entry format (never pickle, so a cache file cannot execute code)::

    b"SKLEMB1\\n"               8-byte magic
    uint32 little-endian       dim
    blake2b(payload)           16-byte digest
    payload                    dim float32 little-endian values

Writes go to a ``.tmp-*`` file in the entry's directory and are then renamed
onto the entry with :func:`os.replace`, which is atomic: a reader sees either
no entry or a complete one, even when several processes write the same key.
A read that finds a damaged entry (bad magic, length or checksum) deletes it
and reports a miss, so bad data is never returned. An intact entry is never
deleted: asking for the wrong ``dim`` raises :class:`ValueError`.

The cache only saves time, so it never costs a result: a cache that cannot be
written (read-only, full disk, a file where its folder should be, no
permission) or read is skipped, with one :class:`CacheWarning` per namespace
and process naming the folder and the fix; vectors are then computed and not
stored, and nothing half-written is left behind.

Processes that embed the same new images at once (``n_jobs``, Dask workers)
share the work through *claims*: before computing an entry a process creates
``<key>.claim`` (``O_EXCL``) and holds an exclusive ``flock`` on it until it
releases the claim; the file names its host, pid and process start time for
humans. A process that finds the claim taken computes other images and then
waits for the entry, logging what it waits for after :data:`WAIT_NOTICE`
seconds. A claim counts as abandoned, and is taken over, when it is
of this host and nobody holds its lock (the kernel drops the lock of a
process that died however it died, and a recycled pid holds no lock), when
it is empty, garbled or unreadable (after :data:`_CLAIM_GRACE` seconds, the
time a claim takes to be written), or when it is older than
:data:`CLAIM_TIMEOUT` (the only test for another host's claims, whose locks
a network filesystem may not share). Where the filesystem offers no locks,
a claim of this host is abandoned when its pid is gone or now belongs to a
process started at another time. Claims this process still holds when it
exits (Ctrl-C included) are removed; Ctrl-C is held back for the few
instructions that create or remove a claim and record it.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import struct
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

try:
    import fcntl
except ImportError:  # Windows: no flock, claims are judged by age alone
    fcntl = None  # type: ignore[assignment]

import numpy as np

from .files import FileTooLargeError, NotRegularFileError, open_regular, read_limited, write_atomic

__all__ = ["CacheNamespace", "CacheWarning", "EmbeddingCache", "default_cache_dir", "resolve_cache"]

logger = logging.getLogger(__name__)

_MAGIC = b"SKLEMB1\n"
# The widest vector an entry may hold (a read of an entry never asks for more).
MAX_DIM = 1 << 22
_DIM = struct.Struct("<I")
_DIGEST_SIZE = 16
_HEADER_SIZE = len(_MAGIC) + _DIM.size + _DIGEST_SIZE
_KEY = re.compile(r"[0-9a-f]{64}")
_ENTRY = re.compile(r"[0-9a-f]{64}\.emb")
_NAMESPACE = re.compile(r"[0-9a-f]{32}")
_OWNER = re.compile(r"(\S+) (\d+)(?: (\S+))?")  # host, pid, start time (older claims lack it)
_FINGERPRINT = "fingerprint.json"

#: Seconds after which a claim counts as abandoned whoever holds it. A claim
#: lives from shortly before its image is decoded until its entry is written,
#: a few batches; this bounds the wait when a process on another host dies.
CLAIM_TIMEOUT = 600.0
#: Seconds :meth:`CacheNamespace.wait` waits before it logs what it waits
#: for (a warning on the ``skorchlite.cache`` logger), and between repeats
#: of that line after the first.
WAIT_NOTICE = 5.0
_WAIT_REPEAT = 60.0
#: A claim file is created empty, then locked and filled: an empty one this
#: young may still be being written; an older one is abandoned.
_CLAIM_GRACE = 2.0
_POLL_SECONDS = 0.05


class CacheWarning(UserWarning):
    """The embedding cache cannot be used here: vectors are computed, not stored.

    Issued once per namespace and process, naming the folder, the cause and
    the fix (``SKORCHLITE_CACHE`` or ``cache=`` to a usable folder, or
    ``cache=False``).
    """


def default_cache_dir() -> Path:
    """The cache directory used by ``cache=True``.

    ``$SKORCHLITE_CACHE`` when set and non-empty, else
    ``$XDG_CACHE_HOME/skorchlite`` (when absolute, as the XDG specification
    asks), else ``~/.cache/skorchlite``. The environment is read at each call.

    Returns
    -------
    Path

    Examples
    --------
    >>> import os
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"SKORCHLITE_CACHE": "/tmp/my-cache"}):
    ...     str(default_cache_dir())
    '/tmp/my-cache'
    """
    if explicit := os.environ.get("SKORCHLITE_CACHE"):
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "skorchlite"
    return Path.home() / ".cache" / "skorchlite"


def resolve_cache(cache: bool | str | os.PathLike | None) -> EmbeddingCache | None:
    """Turn an estimator's ``cache`` parameter into a cache, or ``None``.

    Parameters
    ----------
    cache : bool, str, path-like or None
        ``False`` or ``None`` disables caching, ``True`` uses
        :func:`default_cache_dir`, a path uses that directory.

    Returns
    -------
    EmbeddingCache or None

    Raises
    ------
    TypeError
        For any other value.
    ValueError
        For an empty path, which would silently mean the working directory.

    Examples
    --------
    >>> resolve_cache(False) is None
    True
    >>> resolve_cache("/tmp/embeddings")
    EmbeddingCache('/tmp/embeddings')
    """
    if cache is None or cache is False:
        return None
    if cache is True:
        return EmbeddingCache(default_cache_dir())
    if isinstance(cache, (str, os.PathLike)):
        if not os.fspath(cache):
            raise ValueError("cache must not be an empty path.")
        return EmbeddingCache(cache)
    raise TypeError(f"cache must be True, False, None, a str or an os.PathLike directory, got {cache!r}.")


def _decode(data: bytes) -> np.ndarray | None:
    """The vector in an entry's bytes, or ``None`` when they are damaged."""
    if len(data) < _HEADER_SIZE or not data.startswith(_MAGIC):
        return None
    (stored_dim,) = _DIM.unpack_from(data, len(_MAGIC))
    digest, payload = data[len(_MAGIC) + _DIM.size : _HEADER_SIZE], data[_HEADER_SIZE:]
    if len(payload) != 4 * stored_dim:
        return None
    if hashlib.blake2b(payload, digest_size=_DIGEST_SIZE).digest() != digest:
        return None
    return np.frombuffer(payload, dtype="<f4").astype(np.float32, copy=False)


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValueError(f"cache key must be 64 lowercase hex characters, got {key!r}.")


class EmbeddingCache:
    """A directory of embedding namespaces, one per model fingerprint.

    Parameters
    ----------
    root : str or path-like
        The cache directory; nothing is created until a namespace is used.

    Attributes
    ----------
    root : Path

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> cache = EmbeddingCache(tempfile.mkdtemp())
    >>> ns = cache.namespace({"backbone": "resnet18", "pooling": "avg"})
    >>> ns.put("ab" * 32, np.array([1.0, 2.0, 3.0]))
    >>> ns.get("ab" * 32)
    array([1., 2., 3.], dtype=float32)
    >>> cache.size()
    (1, 40)
    >>> cache.clear()
    >>> cache.size()
    (0, 0)
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser()

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.root)!r})"

    def namespace(self, fingerprint: Mapping[str, Any]) -> CacheNamespace:
        """The namespace of one model, created if needed.

        Parameters
        ----------
        fingerprint : mapping
            JSON-serialisable description of everything that determines the
            vectors; key order does not matter.

        Returns
        -------
        CacheNamespace

        Examples
        --------
        >>> import tempfile
        >>> cache = EmbeddingCache(tempfile.mkdtemp())
        >>> a = cache.namespace({"backbone": "resnet18", "layer": None})
        >>> b = cache.namespace({"layer": None, "backbone": "resnet18"})
        >>> a.path == b.path
        True
        """
        canonical = json.dumps(fingerprint, sort_keys=True, separators=(",", ":"))
        name = hashlib.sha256(canonical.encode()).hexdigest()[:32]
        namespace = CacheNamespace(self.root / name, fingerprint)
        try:
            namespace._create()
        except OSError as err:
            namespace._unusable(err, "create")
        return namespace

    def _namespaces(self) -> list[Path]:
        # Only folders we made: a cache pointed at a busy directory by mistake
        # must not lose anything else to clear().
        try:
            children = list(self.root.iterdir())
        except FileNotFoundError:
            return []
        except NotADirectoryError:
            raise NotADirectoryError(
                f"The embedding cache {self.root} is a file, not a folder: set SKORCHLITE_CACHE (or cache=) "
                "to a folder, or pass cache=False."
            ) from None
        return [p for p in children if _NAMESPACE.fullmatch(p.name) and (p / _FINGERPRINT).is_file()]

    def clear(self) -> None:
        """Remove every namespace under :attr:`root`; other files are kept.

        Examples
        --------
        >>> EmbeddingCache("/nonexistent/skorchlite").clear()
        """
        for path in self._namespaces():
            # Another process may be clearing the same cache.
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(path)

    def size(self) -> tuple[int, int]:
        """Number of entries and their total size in bytes, over all namespaces.

        Returns
        -------
        n_entries : int
        n_bytes : int

        Examples
        --------
        >>> EmbeddingCache("/nonexistent/skorchlite").size()
        (0, 0)
        """
        count = total = 0
        for namespace in self._namespaces():
            for path in namespace.glob("??/*.emb"):
                if not _ENTRY.fullmatch(path.name):
                    continue
                try:
                    total += path.stat().st_size
                except FileNotFoundError:
                    continue
                count += 1
        return count, total


class CacheNamespace:
    """The embeddings of one model, keyed by image content digest.

    Obtain one with :meth:`EmbeddingCache.namespace`.

    Parameters
    ----------
    path : Path
        The namespace directory.
    fingerprint : mapping
        The model fingerprint, written to ``fingerprint.json``.

    Attributes
    ----------
    path : Path

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> ns = EmbeddingCache(tempfile.mkdtemp()).namespace({"backbone": "resnet18"})
    >>> ns.get_many(["00" * 32, "01" * 32])
    [None, None]
    """

    def __init__(self, path: Path, fingerprint: Mapping[str, Any]):
        self.path = Path(path)
        self._fingerprint = fingerprint
        # False once a write failed: the rest of this namespace's work is
        # computed without storing (a new namespace object tries again).
        self._writable = True

    def __repr__(self) -> str:
        return f"CacheNamespace({str(self.path)!r})"

    def _create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.path / _FINGERPRINT
        if not target.exists():
            text = json.dumps(self._fingerprint, sort_keys=True, indent=2) + "\n"
            write_atomic(target, text.encode())

    def _entry(self, key: str) -> Path:
        _check_key(key)
        return self.path / key[:2] / f"{key}.emb"

    def _claim_file(self, key: str) -> Path:
        return self._entry(key).with_suffix(".claim")

    def _folder_of(self, path: Path) -> None:
        """Create the entry folder of ``path``, recreating the namespace if it was cleared."""
        try:
            path.parent.mkdir(exist_ok=True)
        except FileNotFoundError:
            # The namespace was cleared since it was opened: recreate it with
            # its fingerprint, so clear() and size() still recognise it.
            self._create()
            path.parent.mkdir(exist_ok=True)

    def _unusable(self, err: OSError, action: str) -> None:
        """Carry on without the cache after ``err``; warn once per namespace and process."""
        if action != "read":
            self._writable = False
        with _warned_lock:
            if self.path in _warned:
                return
            _warned.add(self.path)
        outcome = "computed again" if action == "read" else "computed but not stored"
        warnings.warn(
            f"The embedding cache {self.path.parent} cannot be used: cannot {action} "
            f"{err.filename or self.path} ({_reason(err)}). Embeddings are {outcome}, which is slower. "
            "Set SKORCHLITE_CACHE (or cache=) to a writable folder, or pass cache=False to turn the cache off.",
            CacheWarning,
            stacklevel=3,
        )

    def get(self, key: str, dim: int | None = None) -> np.ndarray | None:
        """The vector stored under ``key``, or ``None``.

        Parameters
        ----------
        key : str
            64 lowercase hex characters.
        dim : int, optional
            Expected length.

        Returns
        -------
        ndarray of shape (dim,), dtype float32, read-only; or None
            ``None`` when the entry is missing, damaged (bad magic, length or
            checksum; a damaged entry is deleted) or cannot be read.

        Raises
        ------
        ValueError
            If ``key`` is not a hex digest, or the entry is intact but holds
            a vector of another length than ``dim``: a namespace holds one
            model's vectors, so that is the caller's mistake, and the entry
            is kept.

        Examples
        --------
        >>> import tempfile
        >>> ns = EmbeddingCache(tempfile.mkdtemp()).namespace({"backbone": "resnet18"})
        >>> ns.put("ab" * 32, [0.5, 1.5])
        >>> ns.get("ab" * 32, dim=2)
        array([0.5, 1.5], dtype=float32)
        >>> ns.get("ab" * 32, dim=3)
        Traceback (most recent call last):
        ...
        ValueError: Cache entry ... holds 2 values, not the 3 asked for; ...
        >>> ns.get("ab" * 32)
        array([0.5, 1.5], dtype=float32)
        """
        path = self._entry(key)
        # Only a regular file of at most an entry's size is read: a FIFO or
        # a link to /dev/zero at an entry's path is a miss, not a hang.
        limit = _HEADER_SIZE + 4 * (dim if dim is not None else MAX_DIM)
        try:
            with open_regular(path, limit) as file:
                data = read_limited(file, limit)
        except FileNotFoundError:
            return None
        except (NotRegularFileError, FileTooLargeError, IsADirectoryError) as err:
            logger.warning("Cache entry %s is not a stored vector (%s); computing instead", path, err.strerror)
            return None
        except OSError as err:
            self._unusable(err, "read")
            return None
        vector = _decode(data)
        if vector is None:
            logger.debug("Discarding damaged cache entry %s", path)
            # Deleting may race with a writer replacing the entry with a good
            # one; that costs a recomputation, never a wrong vector.
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as err:
                self._unusable(err, "delete")
        elif dim is not None and vector.size != dim:
            raise ValueError(
                f"Cache entry {path} holds {vector.size} values, not the {dim} asked for; it is intact and "
                "kept. A namespace holds the vectors of one model: ask for that model's dimension."
            )
        return vector

    def get_many(self, keys: Sequence[str], dim: int | None = None) -> list[np.ndarray | None]:
        """:meth:`get` for each key, in order.

        Parameters
        ----------
        keys : sequence of str
        dim : int, optional

        Returns
        -------
        list of (ndarray or None)

        Examples
        --------
        >>> import tempfile
        >>> ns = EmbeddingCache(tempfile.mkdtemp()).namespace({"backbone": "resnet18"})
        >>> ns.put("ab" * 32, [1.0])
        >>> ns.get_many(["cd" * 32, "ab" * 32])
        [None, array([1.], dtype=float32)]
        """
        return [self.get(key, dim) for key in keys]

    def put(self, key: str, vector: Any) -> None:
        """Store ``vector`` under ``key``, atomically.

        A cache that cannot be written is skipped with a :class:`CacheWarning`
        (once per namespace and process); nothing half-written is left.

        Parameters
        ----------
        key : str
            64 lowercase hex characters.
        vector : array-like of shape (dim,)
            Stored as float32.

        Raises
        ------
        ValueError
            If ``key`` is not a hex digest or ``vector`` is not 1-D.

        Examples
        --------
        >>> import tempfile
        >>> ns = EmbeddingCache(tempfile.mkdtemp()).namespace({"backbone": "resnet18"})
        >>> ns.put("ab" * 32, [1.0, 2.0])
        >>> sorted(p.name for p in ns.path.iterdir())
        ['ab', 'fingerprint.json']
        """
        path = self._entry(key)
        array = np.asarray(vector, dtype="<f4")
        if array.ndim != 1:
            raise ValueError(f"vector must be 1-D, got shape {array.shape}.")
        if not self._writable:
            return
        payload = array.tobytes()  # C order, whatever the input's strides
        header = _MAGIC + _DIM.pack(array.size) + hashlib.blake2b(payload, digest_size=_DIGEST_SIZE).digest()
        try:
            self._folder_of(path)
            write_atomic(path, header + payload)
        except OSError as err:
            self._unusable(err, "write")

    def claim(self, key: str) -> bool:
        """Take the right to compute ``key``'s entry.

        Parameters
        ----------
        key : str
            64 lowercase hex characters.

        Returns
        -------
        bool
            ``True`` if the calling thread now holds the claim (release it
            with :meth:`release` once the entry is written or the work
            failed; claiming again what it holds is ``True`` too), or if the
            cache cannot be written (compute it, nothing to release);
            ``False`` if another live process or thread holds it: :meth:`wait`
            for the entry.

        Examples
        --------
        >>> import tempfile, threading
        >>> ns = EmbeddingCache(tempfile.mkdtemp()).namespace({"backbone": "resnet18"})
        >>> ns.claim("ab" * 32)
        True
        >>> other = []
        >>> thread = threading.Thread(target=lambda: other.append(ns.claim("ab" * 32)))
        >>> thread.start(); thread.join()
        >>> other
        [False]
        >>> ns.release("ab" * 32)
        >>> ns.claim("ab" * 32)
        True
        >>> ns.release("ab" * 32)
        """
        path = self._claim_file(key)
        if not self._writable:
            return True
        try:
            self._folder_of(path)
            with _interrupts_deferred(), _claims_lock:
                # Three tries: a claim may be taken over or vanish between looks.
                for _ in range(3):
                    holder = _holder(path, take_over=True)
                    if holder is not None:
                        return holder.mine
                    held = _create_claim(path)
                    if held is not None:
                        _held[path] = held
                        return True
        except OSError as err:
            self._unusable(err, "write")
            return True
        return False

    def release(self, key: str) -> None:
        """Give up a claim taken with :meth:`claim`.

        Claims this process does not hold are left alone.

        Parameters
        ----------
        key : str
        """
        path = self._claim_file(key)
        with _interrupts_deferred(), _claims_lock:
            held = _held.get(path)
            if held is not None and held.pid == os.getpid():
                _drop(path, held)

    def wait(self, keys: Sequence[str], dim: int | None = None) -> list[np.ndarray | None]:
        """Wait for entries that other processes claimed.

        After :data:`WAIT_NOTICE` seconds, and every minute after that, a
        warning on the ``skorchlite.cache`` logger says how many entries it
        waits for, in which folder and for which process.

        Parameters
        ----------
        keys : sequence of str
        dim : int, optional

        Returns
        -------
        list of (ndarray or None)
            Each key's vector once written; ``None`` for a key whose claim
            was released or abandoned without an entry, or that the calling
            thread holds itself: the caller computes it.

        Examples
        --------
        >>> import tempfile
        >>> ns = EmbeddingCache(tempfile.mkdtemp()).namespace({"backbone": "resnet18"})
        >>> ns.put("ab" * 32, [1.0])
        >>> ns.wait(["ab" * 32, "cd" * 32])  # "cd..." is claimed by no one
        [array([1.], dtype=float32), None]
        """
        results: list[np.ndarray | None] = [None] * len(keys)
        waiting = list(range(len(keys)))
        notice = time.monotonic() + WAIT_NOTICE
        while waiting:
            still: dict[int, _Holder] = {}
            for i in waiting:
                results[i] = self.get(keys[i], dim)
                if results[i] is not None:
                    continue
                with _claims_lock:
                    holder = _holder(self._claim_file(keys[i]), take_over=False)
                if holder is not None and not holder.mine:
                    still[i] = holder
                else:
                    # Read the entry again after seeing the claim gone: the
                    # holder writes the entry first, then releases.
                    results[i] = self.get(keys[i], dim)
            if still and time.monotonic() >= notice:
                self._log_wait([keys[i] for i in still], list(still.values()))
                notice = time.monotonic() + _WAIT_REPEAT
            if still:
                time.sleep(_POLL_SECONDS)
            waiting = list(still)
        return results

    def _log_wait(self, keys: list[str], holders: list[_Holder]) -> None:
        owners = sorted({h.owner for h in holders})
        oldest = max(h.age for h in holders)
        logger.warning(
            "Waiting for %d embedding(s) that other processes are computing in %s (%s.claim, ...), claimed by %s; "
            "the oldest claim is %.0f s old. A claim is taken over as soon as its process exits, or after "
            "skorchlite.cache.CLAIM_TIMEOUT (%.0f s).",
            len(keys),
            self.path,
            keys[0],
            ", ".join(owners[:3]) + (", ..." if len(owners) > 3 else ""),
            oldest,
            CLAIM_TIMEOUT,
        )


def _reason(err: OSError) -> str:
    """The cause of a cache error, in words a user can act on."""
    if err.errno in (errno.ENOTDIR, errno.EEXIST) and err.filename:
        for parent in Path(err.filename).parents:
            if parent.exists() and not parent.is_dir():
                return f"{parent} is a file, not a folder"
    return err.strerror or str(err)


# ------------------------------------------------------------------ claims
# Claims this process holds: path -> its open, locked file. One lock guards
# every claim file operation of the process, so a thread never judges a
# claim another thread is creating.
class _Held(NamedTuple):
    fd: int
    inode: tuple[int, int]
    pid: int
    thread: int


class _Holder(NamedTuple):
    owner: str
    age: float
    mine: bool  # held by the calling thread


_held: dict[Path, _Held] = {}
_claims_lock = threading.Lock()
_warned: set[Path] = set()
_warned_lock = threading.Lock()


def _inode(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def _same_file(path: Path, inode: tuple[int, int]) -> bool:
    try:
        return _inode(os.stat(path)) == inode
    except OSError:
        return False


def _start_time(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot), or ``"-"`` where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "-"
    return stat.rpartition(")")[2].split()[19]  # field 22; the name before ")" may hold spaces


def _owner() -> str:
    return f"{socket.gethostname()} {os.getpid()} {_start_time(os.getpid())}"


def _create_claim(path: Path) -> _Held | None:
    """Create the claim at ``path``, locked and naming this process; ``None``
    if it exists by now. Call with :data:`_claims_lock` held."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
    except FileExistsError:
        return None
    try:
        if fcntl is not None:
            # Blocks only while another process looks at this new claim.
            with contextlib.suppress(OSError):  # a filesystem without locks
                fcntl.flock(fd, fcntl.LOCK_EX)
        inode = _inode(os.fstat(fd))
        if not _same_file(path, inode):  # judged abandoned and removed before we locked it
            os.close(fd)
            return None
        owner = (_owner() + "\n").encode()
        if os.write(fd, owner) != len(owner):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    except BaseException:
        if _same_file(path, _inode(os.fstat(fd))):
            with contextlib.suppress(OSError):
                os.unlink(path)
        os.close(fd)
        raise
    return _Held(fd, inode, os.getpid(), threading.get_ident())


def _drop(path: Path, held: _Held) -> None:
    """Remove a claim of this process. Call with :data:`_claims_lock` held."""
    del _held[path]
    if _same_file(path, held.inode):  # not if taken over after CLAIM_TIMEOUT
        with contextlib.suppress(OSError):
            os.unlink(path)
    os.close(held.fd)


def _holder(path: Path, take_over: bool) -> _Holder | None:
    """Who holds the claim at ``path``; ``None`` when no one does: no claim, or
    an abandoned one (removed when ``take_over``). Call with
    :data:`_claims_lock` held."""
    try:
        inode = _inode(os.stat(path))
    except FileNotFoundError:
        return None
    except OSError:
        return None  # cannot be judged, so not waited for
    for held in _held.values():
        # Checked before opening: closing any descriptor of a file drops the
        # process's POSIX locks on it, which NFS uses to emulate flock.
        if held.inode == inode:
            return _Holder("this process", 0.0, held.thread == threading.get_ident())
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    except OSError:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return _abandon(path, inode, take_over)  # unreadable: no owner to wait for
    try:
        info = os.fstat(fd)
        owner = os.read(fd, 256).decode(errors="replace").strip()
        age = time.time() - info.st_mtime
        if _inode(info) == inode and age <= CLAIM_TIMEOUT and _alive(fd, owner, age):
            return _Holder(owner or "a process writing its claim", age, False)
        if _inode(info) != inode:
            return _Holder(owner, age, False)  # replaced meanwhile: look again later
        return _abandon(path, inode, take_over)  # before closing, so still under our lock
    finally:
        os.close(fd)


def _abandon(path: Path, inode: tuple[int, int], take_over: bool) -> None:
    if take_over and _same_file(path, inode):
        with contextlib.suppress(OSError):
            os.unlink(path)


def _alive(fd: int, owner: str, age: float) -> bool:
    """Whether the claim open as ``fd`` has a live holder."""
    locked = _locked_by_another(fd)
    if locked:
        return True
    match = _OWNER.fullmatch(owner)
    if match is None:  # empty or garbled: being written, or left by a process that failed to
        return age < _CLAIM_GRACE
    host, pid, started = match.groups()
    if host != socket.gethostname():
        return True  # its lock may not reach this host: CLAIM_TIMEOUT decides
    if locked is False:
        return False  # the kernel released its holder's lock: that process is gone
    return _process_alive(int(pid), started)


def _locked_by_another(fd: int) -> bool | None:
    """Whether another open file holds the claim's lock (``False``: this call
    took it); ``None`` where the filesystem has no locks."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    return False


def _process_alive(pid: int, started: str | None) -> bool:
    """Whether process ``pid`` of this host, started at ``started``, still
    runs: for filesystems without locks."""
    if pid == os.getpid():
        return False  # this process's own claims are in _held: that pid was an earlier process's
    # Signal 0 probes a pid on POSIX only (on Windows it would send CTRL_C_EVENT).
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # running, as another user
        pass
    # A pid reused by a later process (after a container restart, say).
    now = _start_time(pid)
    return started in (None, "-") or now == "-" or now == started


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold back Ctrl-C while a claim file and its record change together.

    Python raises ``KeyboardInterrupt`` in the main thread only, at any
    instruction; this one defers it to the end of the block.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):
            previous(signal.SIGINT, caught[0])
        elif caught and previous == signal.SIG_DFL:
            signal.raise_signal(signal.SIGINT)


@atexit.register
def _release_all() -> None:
    """Remove the claims this process still holds (after Ctrl-C, say)."""
    with _claims_lock:
        for path, held in list(_held.items()):
            if held.pid == os.getpid():
                _drop(path, held)


def _forget_claims_in_child() -> None:
    # A forked child shares the parent's locks through the descriptors it
    # inherits: closing them lets the parent's claims die with the parent.
    for held in _held.values():
        with contextlib.suppress(OSError):
            os.close(held.fd)
    _held.clear()
    _claims_lock.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_claims_lock.acquire, after_in_parent=_claims_lock.release, after_in_child=_forget_claims_in_child
    )
