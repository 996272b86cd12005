"""What a process keeps because it is costly to make: one mechanism, :class:`Memo`.

Each memo is private to the module that makes what it holds, and only that
module reads or writes it (never a global written from another module):

* :mod:`skorchlite.backbones.loading`: backbones loaded from the registry,
  and random initialisations;
* :mod:`skorchlite.backbones.resolve`: modules adopted as backbones;
* :mod:`skorchlite.networks`: embedding networks optimised for inference;
* :mod:`skorchlite.images` and :mod:`skorchlite.backbones.weights`: content
  digests of files, in a :class:`ContentMemo` (a :class:`Memo` keyed by
  what identifies a file's content).

``functools.cache`` remains only for facts that cannot change while a
process runs (an installed library's list of models), and a
``weakref.WeakKeyDictionary`` only for what belongs to one object and must
die with it (:mod:`skorchlite.finetune.voting_head`: a fitted body's traced
views).
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import BinaryIO, Generic, TypeVar

__all__ = ["ContentMemo", "Memo"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Memo(Generic[K, V]):
    """A least-recently-used map of values costly to make, safe across threads.

    Parameters
    ----------
    maxsize : int
        Values kept; the least recently used goes first.

    Attributes
    ----------
    hits, misses : int
        Lookups that found a value, and those that did not.

    Examples
    --------
    >>> memo = Memo(maxsize=2)
    >>> memo.get_or_make("a", lambda: 1), memo.get_or_make("a", lambda: 2)
    (1, 1)
    >>> memo.put("b", 2); memo.put("c", 3)
    >>> memo.get("a") is None, memo.get("c"), (memo.hits, memo.misses)
    (True, 3, (2, 2))
    """

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self.hits = self.misses = 0
        self._values: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: K) -> V | None:
        """The value kept under ``key`` (now the most recent), or ``None``."""
        with self._lock:
            if key not in self._values:
                self.misses += 1
                return None
            self.hits += 1
            self._values.move_to_end(key)
            return self._values[key]

    def put(self, key: K, value: V) -> None:
        """Keep ``value`` under ``key``, dropping the least recent beyond ``maxsize``."""
        with self._lock:
            self._values[key] = value
            self._values.move_to_end(key)
            while len(self._values) > self.maxsize:
                self._values.popitem(last=False)

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        """The value kept under ``key``, else ``make()``, kept.

        ``make`` runs outside the lock: two threads that miss the same key
        at once may both make it (the last one made is kept), as with
        ``functools.lru_cache``.
        """
        value = self.get(key)
        if value is None:
            value = make()
            self.put(key, value)
        return value

    def clear(self) -> None:
        """Forget every value and the counts."""
        with self._lock:
            self._values.clear()
            self.hits = self.misses = 0


class ContentMemo:
    """Digests of files, remembered by what identifies a file's content.

    The key is the opened file's device, inode, size, mtime and ctime:
    replacing a file (a new inode) or rewriting it (a new ctime, which
    users cannot set, unlike mtime with ``cp -p``, ``rsync -t`` or
    ``touch -r``) misses, even when size and mtime are kept. A file whose
    mtime is within 2 s of the hashing is not remembered: it can change
    again without its mtime moving (2 s granularity on FAT; "racy git").

    Parameters
    ----------
    maxsize : int
        Entries kept; the least recently used goes first.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> memo = ContentMemo(maxsize=8)
    >>> path = Path(tempfile.mkdtemp()) / "a.bin"
    >>> _ = path.write_bytes(b"data")
    >>> os.utime(path, ns=(0, 0))  # an old file
    >>> with open(path, "rb") as file:
    ...     memo.get(file) is None, memo.put(file, "digest"), memo.get(file)
    (True, None, 'digest')
    """

    RACY_NS = 2_000_000_000

    def __init__(self, maxsize: int):
        self._digests: Memo[tuple[int, ...], str] = Memo(maxsize)

    @staticmethod
    def _key(file: BinaryIO) -> tuple[int, ...]:
        st = os.fstat(file.fileno())
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def get(self, file: BinaryIO) -> str | None:
        """The digest remembered for the open ``file``, or ``None``."""
        return self._digests.get(self._key(file))

    def put(self, file: BinaryIO, digest: str, hashed_at: int | None = None) -> None:
        """Remember ``digest`` for ``file``, whose hashing started at
        ``hashed_at`` (:func:`time.time_ns`; default now)."""
        key = self._key(file)
        if (time.time_ns() if hashed_at is None else hashed_at) - key[3] <= self.RACY_NS:
            return
        self._digests.put(key, digest)
