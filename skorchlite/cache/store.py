"""The cache folder: one namespace per model fingerprint; and what an
estimator's ``cache`` parameter means."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .namespace import FINGERPRINT, CacheNamespace

_ENTRY = re.compile(r"[0-9a-f]{64}\.emb")
_NAMESPACE = re.compile(r"[0-9a-f]{32}")


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
