"""The embeddings of one model: entries read, written and waited for."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import secrets
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..files import FileTooLargeError, NotRegularFileError, open_regular, read_limited, write_atomic
from . import claims, sharing
from .entries import HEADER_SIZE, MAX_DIM, decode, encode

# The logger the documentation names, whichever module of the package logs.
logger = logging.getLogger(__package__)

_KEY = re.compile(r"[0-9a-f]{64}")

#: The namespace file that says what produced its vectors.
FINGERPRINT = "fingerprint.json"

#: Seconds :meth:`CacheNamespace.wait` waits before it logs what it waits
#: for (a warning on the ``skorchlite.cache`` logger), and between repeats
#: of that line after the first.
WAIT_NOTICE = 5.0
_WAIT_REPEAT = 60.0
_POLL_SECONDS = 0.05

# The namespaces this process has warned about: one CacheWarning each.
_warned: set[Path] = set()
_warned_lock = threading.Lock()


class CacheWarning(UserWarning):
    """The embedding cache cannot be used here: vectors are computed, not stored.

    Issued once per namespace and process, naming the folder, the cause and
    the fix (``SKORCHLITE_CACHE`` or ``cache=`` to a usable folder, or
    ``cache=False``); and for each entry set aside because it holds a vector
    of another width than its namespace's, naming the entry.
    """


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValueError(f"cache key must be 64 lowercase hex characters, got {key!r}.")


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
    >>> from skorchlite.cache import EmbeddingCache
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
        target = self.path / FINGERPRINT
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

    def _unusable(self, err: OSError, action: str, stacklevel: int = 3) -> None:
        """Carry on without the cache after ``err``; warn once per namespace and process,
        ``stacklevel`` frames up (3: the caller of the public method that failed)."""
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
            stacklevel=stacklevel,
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
            checksum; a damaged entry is deleted), holds a vector of another
            length than ``dim``, or cannot be read.

        Raises
        ------
        ValueError
            If ``key`` is not a hex digest.

        Warns
        -----
        CacheWarning
            For an intact entry of another length than ``dim`` (written by
            another model, by hand or by a bug: a namespace holds one
            model's vectors): it is set aside, and the caller computes the
            vector again, so that one bad entry never fails every run.

        Examples
        --------
        >>> import tempfile
        >>> from skorchlite.cache import EmbeddingCache
        >>> ns = EmbeddingCache(tempfile.mkdtemp()).namespace({"backbone": "resnet18"})
        >>> ns.put("ab" * 32, [0.5, 1.5])
        >>> ns.get("ab" * 32, dim=2)
        array([0.5, 1.5], dtype=float32)
        >>> ns.get("ab" * 32)
        array([0.5, 1.5], dtype=float32)
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     ns.get("ab" * 32, dim=3) is None, ns.get("ab" * 32, dim=2) is None
        (True, True)
        >>> print(caught[0].message)
        Cache entry ... holds 2 values, not the 3 of this namespace's vectors ...; set aside, computed again.
        """
        path = self._entry(key)
        # Only a regular file of at most an entry's size is read: a FIFO or
        # a link to /dev/zero at an entry's path is a miss, not a hang.
        limit = HEADER_SIZE + 4 * (dim if dim is not None else MAX_DIM)
        try:
            with open_regular(path, limit) as file:
                data = read_limited(file, limit)
        except FileNotFoundError:
            return None
        except FileTooLargeError as err:
            if dim is None:  # larger than any entry
                logger.warning("Cache entry %s is not a stored vector (%s); computing instead", path, err.strerror)
            else:
                self._set_aside(path, f"holds more than the {dim} values", dim)
            return None
        except (NotRegularFileError, IsADirectoryError) as err:
            logger.warning("Cache entry %s is not a stored vector (%s); computing instead", path, err.strerror)
            return None
        except OSError as err:
            self._unusable(err, "read")
            return None
        vector = decode(data)
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
            self._set_aside(path, f"holds {vector.size} values, not the {dim}", dim)
            return None
        return vector

    def _set_aside(self, path: Path, holds: str, dim: int) -> None:
        """Remove the entry at ``path``, of another width than ``dim``, with a
        warning. It is moved aside first (atomic), then deleted; if what was
        moved has this namespace's width by then, a writer replaced the
        entry in between with a good one, which is put back unless a newer
        one is there already. So a concurrent writer's entry is never lost
        for good, and no vector of the wrong width is ever returned."""
        warnings.warn(
            f"Cache entry {path} {holds} of this namespace's vectors (written by "
            "another model, by hand or by a bug); set aside, computed again.",
            CacheWarning,
            stacklevel=3,
        )
        aside = path.with_name(f".tmp-aside-{secrets.token_hex(8)}")
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return  # set aside by another reader, or replaced and renamed away: nothing of ours there
        except OSError as err:
            self._unusable(err, "delete")
            return
        try:
            if os.stat(aside).st_size == HEADER_SIZE + 4 * dim:
                with contextlib.suppress(OSError):  # FileExistsError: a newer entry is there
                    os.link(aside, path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(aside)

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
        >>> from skorchlite.cache import EmbeddingCache
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
        >>> from skorchlite.cache import EmbeddingCache
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
        try:
            self._folder_of(path)
            write_atomic(path, encode(array))
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
        >>> from skorchlite.cache import EmbeddingCache
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
            return claims.take(path)
        except OSError as err:
            self._unusable(err, "write")
            return True

    def release(self, key: str) -> None:
        """Give up a claim taken with :meth:`claim`.

        Claims this process does not hold are left alone.

        Parameters
        ----------
        key : str
        """
        claims.release(self._claim_file(key))

    def get_or_compute(
        self,
        keys: Sequence[str],
        compute: sharing.Compute,
        out: np.ndarray,
        progress: Callable[[int], Any] | None = None,
    ) -> sharing.Filled:
        """Fill ``out[i]`` with the vector of ``keys[i]``: read here, or computed
        once by this or another process, and stored.

        The claim protocol in one call: :func:`skorchlite.cache.sharing.get_or_compute`
        on this namespace, which documents the parameters. ``compute(rows)``
        yields ``(rows, keys of what was computed, vectors)`` batches for
        the rows it is handed, each claimed just before.

        Returns
        -------
        Filled
            How many rows were read at once, computed, or computed meanwhile
            by other processes.
        """
        return sharing.get_or_compute(self, keys, compute, out, progress)

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
            was released or abandoned without an entry, that the calling
            thread holds itself, or that was still claimed after
            :data:`CLAIM_TIMEOUT` seconds of this wait (whatever the claim
            files' timestamps say): the caller computes it.

        Examples
        --------
        >>> import tempfile
        >>> from skorchlite.cache import EmbeddingCache
        >>> ns = EmbeddingCache(tempfile.mkdtemp()).namespace({"backbone": "resnet18"})
        >>> ns.put("ab" * 32, [1.0])
        >>> ns.wait(["ab" * 32, "cd" * 32])  # "cd..." is claimed by no one
        [array([1.], dtype=float32), None]
        """
        results: list[np.ndarray | None] = [None] * len(keys)
        waiting = list(range(len(keys)))
        start = time.monotonic()
        notice = start + WAIT_NOTICE
        still: dict[int, claims.Holder] = {}
        while waiting:
            still = {}
            for i in waiting:
                results[i] = self.get(keys[i], dim)
                if results[i] is not None:
                    continue
                holder = claims.holder_of(self._claim_file(keys[i]))
                if holder is not None and not holder.mine:
                    still[i] = holder
                else:
                    # Read the entry again after seeing the claim gone: the
                    # holder writes the entry first, then releases.
                    results[i] = self.get(keys[i], dim)
            now = time.monotonic()
            if still and now - start > claims.CLAIM_TIMEOUT:
                # Each claim is abandoned CLAIM_TIMEOUT after this process first
                # saw it; this bounds a wait on claims that keep being replaced.
                break
            if still and now >= notice:
                self._log_wait([keys[i] for i in still], list(still.values()))
                notice = now + _WAIT_REPEAT
            if still:
                time.sleep(_POLL_SECONDS)
            waiting = list(still)
        # The others keep their timing: the caller's claim() judges them by it.
        claims.forget(self._claim_file(key) for key, result in zip(keys, results, strict=True) if result is not None)
        return results

    def _log_wait(self, keys: list[str], holders: list[claims.Holder]) -> None:
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
            claims.CLAIM_TIMEOUT,
        )


def _reason(err: OSError) -> str:
    """The cause of a cache error, in words a user can act on."""
    if err.errno in (errno.ENOTDIR, errno.EEXIST) and err.filename:
        for parent in Path(err.filename).parents:
            if parent.exists() and not parent.is_dir():
                return f"{parent} is a file, not a folder"
    return err.strerror or str(err)
