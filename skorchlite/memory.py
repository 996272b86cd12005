"""How this process's C allocator treats freed memory (glibc only)."""

from __future__ import annotations

__all__ = ["keep_freed_memory"]


def keep_freed_memory(mmap_threshold: int = 256 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Let glibc keep freed memory of this process for reuse (``mallopt``).

    CPU inference allocates and frees the same large activations at every
    batch; above glibc's mmap threshold each is returned to the operating
    system and faulted in again. The ``skorchlite`` program calls this at
    start, :class:`skorchlite.dask.TorchThreads` on each Dask worker; call
    it yourself in other long-running processes that embed or train on the
    CPU. A library does not change its caller's allocator behind its back,
    so the estimators never call it.

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
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl without mallopt)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from <malloc.h>
    return bool(mallopt(m_mmap_threshold, mmap_threshold)) and bool(mallopt(m_trim_threshold, trim_threshold))
