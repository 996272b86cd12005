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
A read that finds a damaged entry (bad magic, length, checksum or dimension)
deletes it and reports a miss, so bad data is never returned.

Processes that embed the same new images at once (``n_jobs``, Dask workers)
share the work through *claims*: before computing an entry a process creates
``<key>.claim`` (``O_EXCL``, holding its host name and pid); a process that
finds the claim taken computes other images and then waits for the entry.
A claim whose process is gone (same host, pid not running) or that is older
than :data:`CLAIM_TIMEOUT` seconds is taken over, so a killed process delays
the others but never blocks them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import struct
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .files import write_atomic

__all__ = ["CacheNamespace", "EmbeddingCache", "default_cache_dir", "resolve_cache"]

logger = logging.getLogger(__name__)

_MAGIC = b"SKLEMB1\n"
_DIM = struct.Struct("<I")
_DIGEST_SIZE = 16
_HEADER_SIZE = len(_MAGIC) + _DIM.size + _DIGEST_SIZE
_KEY = re.compile(r"[0-9a-f]{64}")
_ENTRY = re.compile(r"[0-9a-f]{64}\.emb")
_NAMESPACE = re.compile(r"[0-9a-f]{32}")
_FINGERPRINT = "fingerprint.json"

#: Seconds after which a claim counts as abandoned whoever holds it. A claim
#: lives from shortly before its image is decoded until its entry is written,
#: a few batches; this bounds the wait when a process on another host dies.
CLAIM_TIMEOUT = 600.0
_POLL_SECONDS = 0.05


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


def _decode(data: bytes, dim: int | None) -> np.ndarray | None:
    """The vector in an entry's bytes, or ``None`` when they are damaged."""
    if len(data) < _HEADER_SIZE or not data.startswith(_MAGIC):
        return None
    (stored_dim,) = _DIM.unpack_from(data, len(_MAGIC))
    digest, payload = data[len(_MAGIC) + _DIM.size : _HEADER_SIZE], data[_HEADER_SIZE:]
    if len(payload) != 4 * stored_dim or (dim is not None and stored_dim != dim):
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
        namespace._create()
        return namespace

    def _namespaces(self) -> list[Path]:
        # Only folders we made: a cache pointed at a busy directory by mistake
        # must not lose anything else to clear().
        try:
            children = list(self.root.iterdir())
        except FileNotFoundError:
            return []
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

    def get(self, key: str, dim: int | None = None) -> np.ndarray | None:
        """The vector stored under ``key``, or ``None``.

        Parameters
        ----------
        key : str
            64 lowercase hex characters.
        dim : int, optional
            Expected length; an entry of another length counts as damaged.

        Returns
        -------
        ndarray of shape (dim,), dtype float32, read-only; or None
            ``None`` when the entry is missing or damaged (a damaged entry
            is deleted).

        Raises
        ------
        ValueError
            If ``key`` is not a hex digest.

        Examples
        --------
        >>> import tempfile
        >>> ns = EmbeddingCache(tempfile.mkdtemp()).namespace({"backbone": "resnet18"})
        >>> ns.put("ab" * 32, [0.5, 1.5])
        >>> ns.get("ab" * 32, dim=2)
        array([0.5, 1.5], dtype=float32)
        >>> ns.get("ab" * 32, dim=3) is None
        True
        """
        path = self._entry(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        vector = _decode(data, dim)
        if vector is None:
            logger.debug("Discarding damaged cache entry %s", path)
            # Deleting may race with a writer replacing the entry with a good
            # one; that costs a recomputation, never a wrong vector.
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
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
        payload = array.tobytes()  # C order, whatever the input's strides
        header = _MAGIC + _DIM.pack(array.size) + hashlib.blake2b(payload, digest_size=_DIGEST_SIZE).digest()
        self._folder_of(path)
        write_atomic(path, header + payload)

    def claim(self, key: str) -> bool:
        """Take the right to compute ``key``'s entry.

        Parameters
        ----------
        key : str
            64 lowercase hex characters.

        Returns
        -------
        bool
            ``True`` if this process now holds the claim (release it with
            :meth:`release` once the entry is written or the work failed);
            ``False`` if a live process holds it: :meth:`wait` for the entry.

        Examples
        --------
        >>> import tempfile
        >>> ns = EmbeddingCache(tempfile.mkdtemp()).namespace({"backbone": "resnet18"})
        >>> ns.claim("ab" * 32), ns.claim("ab" * 32)
        (True, False)
        >>> ns.release("ab" * 32)
        >>> ns.claim("ab" * 32)
        True
        """
        path = self._claim_file(key)
        self._folder_of(path)
        owner = f"{socket.gethostname()} {os.getpid()}\n".encode()
        # Two tries: the second after taking over an abandoned claim.
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not _abandoned(path):
                    return False
                # Two processes may take over the same claim; at worst both
                # compute the entry, and atomic writes keep it whole.
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            with os.fdopen(fd, "wb") as file:
                file.write(owner)
            return True
        return False

    def release(self, key: str) -> None:
        """Give up a claim taken with :meth:`claim` (missing claims are ignored).

        Parameters
        ----------
        key : str
        """
        with contextlib.suppress(FileNotFoundError):
            self._claim_file(key).unlink()

    def wait(self, keys: Sequence[str], dim: int | None = None) -> list[np.ndarray | None]:
        """Wait for entries that other processes claimed.

        Parameters
        ----------
        keys : sequence of str
        dim : int, optional

        Returns
        -------
        list of (ndarray or None)
            Each key's vector once written; ``None`` for a key whose claim
            was released or abandoned without an entry: the caller computes it.

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
        while waiting:
            still = []
            for i in waiting:
                results[i] = self.get(keys[i], dim)
                claim = self._claim_file(keys[i])
                # Read the entry again after seeing the claim gone: the holder
                # writes the entry first, then releases.
                if results[i] is None and claim.exists() and not _abandoned(claim):
                    still.append(i)
                elif results[i] is None:
                    results[i] = self.get(keys[i], dim)
            if still:
                time.sleep(_POLL_SECONDS)
            waiting = still
        return results


def _abandoned(claim: Path) -> bool:
    """Whether a claim file's holder is gone: its pid is not running on this
    host, or the claim is older than :data:`CLAIM_TIMEOUT`. A claim that
    vanished meanwhile counts as abandoned (the caller retries)."""
    try:
        age = time.time() - claim.stat().st_mtime
        host, _, pid = claim.read_text(errors="replace").strip().partition(" ")
    except FileNotFoundError:
        return True
    if age > CLAIM_TIMEOUT:
        return True
    # An empty claim is one being written. Signal 0 probes a pid on POSIX only
    # (on Windows it would send CTRL_C_EVENT), so elsewhere only age counts.
    if os.name != "posix" or host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # running, as another user
        pass
    return False
