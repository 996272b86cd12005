"""How this process's C allocator treats freed memory (glibc only).

CPU inference and training allocate and free the same large activations at
every batch. Above glibc's mmap threshold each one is mapped, faulted in page
by page, and unmapped when freed; on the machines we measured, that kernel
work took more than half of a forward pass. glibc's adaptive threshold does
not help: it rises only up to 32 MiB, and a batch of 32 images at 224 px
makes activations of 50-150 MB.

Two policies:

- :func:`keep_freed_memory`, for a whole process that does little else
  (the ``skorchlite`` program, Dask workers): raise the thresholds for good.
- :func:`freed_memory_kept`, a context manager the engine holds while it
  works inside the caller's process (the estimators, inspection): the same
  thresholds while the block runs; afterwards the memory kept is returned
  to the system and the thresholds are left at glibc's adaptive ceiling,
  where its own rule takes them after work of this size, unless
  :func:`keep_freed_memory` set them for the process first, in which case
  they stay as it set them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["freed_memory_kept", "keep_freed_memory"]

# From <malloc.h>.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
# glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit systems: its adaptive mmap
# threshold rises to the size of a freed mapped block, up to this, with the
# trim threshold at twice the mmap threshold.
GLIBC_ADAPTIVE_CEILING = 32 << 20
KEEP_MMAP_THRESHOLD = 256 << 20
KEEP_TRIM_THRESHOLD = 1 << 30

_lock = threading.Lock()
_depth = 0  # blocks of freed_memory_kept running now, in any thread
_process_setting: tuple[int, int] | None = None  # set by keep_freed_memory


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 - both must exist (glibc)
    except (OSError, AttributeError):  # not glibc (macOS, musl)
        return None
    return libc


def _set_thresholds(mmap_threshold: int, trim_threshold: int) -> bool:
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    )


def keep_freed_memory(mmap_threshold: int = KEEP_MMAP_THRESHOLD, trim_threshold: int = KEEP_TRIM_THRESHOLD) -> bool:
    """Let glibc keep freed memory of this process for reuse, for good (``mallopt``).

    The ``skorchlite`` program calls this at start and
    :class:`skorchlite.dask.TorchThreads` on each Dask worker. The estimators
    never call it: they hold :func:`freed_memory_kept` while they work.

    Parameters
    ----------
    mmap_threshold : int, default=256 MiB
        Blocks at least this large are mapped and unmapped one by one.
    trim_threshold : int, default=1 GiB
        Free memory above this at the top of the heap is returned.

    Returns
    -------
    bool
        Whether both settings took (``False`` without glibc).

    Examples
    --------
    >>> isinstance(keep_freed_memory(), bool)
    True
    """
    global _process_setting
    with _lock:
        ok = _set_thresholds(mmap_threshold, trim_threshold)
        if ok:
            _process_setting = (mmap_threshold, trim_threshold)
        return ok


@contextmanager
def freed_memory_kept() -> Iterator[bool]:
    """Keep freed memory for reuse while the block runs, then give it back.

    Nested and concurrent blocks share one setting: the first to enter
    raises the thresholds, the last to leave restores them and returns the
    kept memory to the system (``malloc_trim``). glibc has no call that
    turns its adaptive threshold back on, so the thresholds are then left
    at its adaptive ceiling (32 MiB for mapping, 64 MiB for trimming): glibc
    itself raises them to the largest mapped block freed so far, up to that
    ceiling, and a forward pass frees blocks of 25-32 MiB, so the caller's
    later allocations behave as after the same work without this block.
    After :func:`keep_freed_memory` nothing is changed.

    Yields
    ------
    bool
        Whether the setting applies (``False`` without glibc).

    Examples
    --------
    >>> with freed_memory_kept() as kept:
    ...     isinstance(kept, bool)
    True
    """
    global _depth
    with _lock:
        if _depth == 0 and _process_setting is None:
            _set_thresholds(KEEP_MMAP_THRESHOLD, KEEP_TRIM_THRESHOLD)
        _depth += 1
    try:
        yield _libc() is not None
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _process_setting is None and (libc := _libc()) is not None:
                _set_thresholds(GLIBC_ADAPTIVE_CEILING, 2 * GLIBC_ADAPTIVE_CEILING)
                libc.malloc_trim(0)
