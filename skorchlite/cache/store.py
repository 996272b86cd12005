"""The cache folder: one namespace per model fingerprint; and what an
estimator's ``cache`` parameter means."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import stat
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from .namespace import FINGERPRINT, CacheNamespace

_ENTRY = re.compile(r"[0-9a-f]{64}\.emb")
_NAMESPACE = re.compile(r"[0-9a-f]{32}")


def default_cache_dir() -> Path:
    """The cache directory used by ``cache=True``.

    ``$SKORCHLITE_CACHE`` when set and non-empty, else the user's cache
    folder as :func:`platformdirs.user_cache_dir` gives it:
    ``$XDG_CACHE_HOME/skorchlite`` (when absolute, as the XDG specification
    asks) or ``~/.cache/skorchlite`` on Linux, ``~/Library/Caches/skorchlite``
    on macOS, ``%LOCALAPPDATA%\\skorchlite\\Cache`` on Windows. The
    environment is read at each call.

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
    import platformdirs  # here: read only where no folder is given

    path = Path(platformdirs.user_cache_dir("skorchlite", appauthor=False))
    if not path.is_absolute():
        # A relative $XDG_CACHE_HOME, which the XDG specification says to ignore (platformdirs before 4.3 take it).
        path = Path.home() / ".cache" / "skorchlite"
    return path


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
    # Imported here: the cache package stays light for the command line, without scikit-learn.
    from ..validation import check_params

    check_params({"cache": cache}, {"cache": [bool, str, os.PathLike, None]}, "resolve_cache")
    if cache is None or cache is False:
        return None
    if cache is True:
        return EmbeddingCache(default_cache_dir())
    if not os.fspath(cache):
        raise ValueError("cache must not be an empty path.")
    return EmbeddingCache(cache)


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
            # One that cannot be created still computes, without storing.
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
        return [p for p in children if _NAMESPACE.fullmatch(p.name) and (p / FINGERPRINT).is_file()]

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
        entries = list(self.entries())
        return len(entries), sum(entry.size for entry in entries)

    def n_namespaces(self) -> int:
        """Number of namespaces (one per model fingerprint) under :attr:`root`.

        Examples
        --------
        >>> EmbeddingCache("/nonexistent/skorchlite").n_namespaces()
        0
        """
        return len(self._namespaces())

    def entries(self) -> Iterator[Entry]:
        """Every entry of every namespace: regular files named as entries only
        (claims, temporary files and anything else are not entries).

        Yields
        ------
        Entry
        """
        for namespace in self._namespaces():
            for path in namespace.glob("??/*.emb"):
                if not _ENTRY.fullmatch(path.name):
                    continue
                try:
                    info = path.lstat()
                except FileNotFoundError:  # removed meanwhile
                    continue
                if stat.S_ISREG(info.st_mode):
                    yield Entry(path, info.st_size, max(info.st_atime, info.st_mtime))

    def prune(self, *, max_size: int | None = None, older_than: float | None = None) -> tuple[int, int]:
        """Remove entries unused for ``older_than`` seconds, then the least
        recently used ones until the entries take at most ``max_size`` bytes.

        Each entry is removed with one :func:`os.unlink`, which is atomic:
        a process reading it meanwhile gets the whole vector or a miss (and
        computes the vector again), never a torn one, and claims, temporary
        files and folders are left to the processes using them. An entry's
        last use is the later of its access time (which many systems update
        at most daily) and the time it was written.

        Parameters
        ----------
        max_size : int or None, default=None
            Bytes the entries may take after pruning.
        older_than : float or None, default=None
            Seconds since an entry's last use beyond which it is removed.

        Returns
        -------
        n_removed : int
        n_bytes_freed : int

        Raises
        ------
        ValueError
            When neither is given, or one is negative.
        OSError
            When an entry cannot be removed (a read-only cache).

        Examples
        --------
        >>> import tempfile
        >>> cache = EmbeddingCache(tempfile.mkdtemp())
        >>> ns = cache.namespace({"backbone": "resnet18"})
        >>> for key in ("ab" * 32, "cd" * 32):
        ...     ns.put(key, [1.0, 2.0])
        >>> cache.prune(max_size=50)
        (1, 36)
        >>> cache.size()
        (1, 36)
        """
        if max_size is None and older_than is None:
            raise ValueError("prune needs max_size or older_than.")
        if (max_size is not None and max_size < 0) or (older_than is not None and not older_than >= 0):
            raise ValueError(f"max_size and older_than must be at least 0, got {max_size!r} and {older_than!r}.")
        oldest = -math.inf if older_than is None else time.time() - older_than
        entries = sorted(self.entries(), key=lambda entry: entry.used)  # least recently used first
        total = sum(entry.size for entry in entries)
        removed = freed = 0
        for entry in entries:
            if entry.used >= oldest and (max_size is None or total <= max_size):
                break  # every later entry is newer, and the total only shrinks
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                pass  # removed by another process: gone all the same
            else:
                removed, freed = removed + 1, freed + entry.size
            total -= entry.size
        return removed, freed


class Entry(NamedTuple):
    """One cache entry: its file, its size in bytes, and its last use (seconds
    since the epoch: the later of its access and modification times)."""

    path: Path
    size: int
    used: float
