"""Atomic file writes: the one way skorchlite writes a file that others read.

Cache entries, report PNGs and Dask shards all go through
:func:`write_atomic`, so a reader (another process, a worker, a user's
image viewer) sees either the old file or the complete new one, never a
torn one, and every file gets the permissions the user's umask asks for.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["write_atomic"]

# Read once: os.umask can only be read by setting it.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    The temporary file (``.tmp-*``) lives in the same folder, so
    :func:`os.replace` is atomic; it is removed when anything fails.

    Parameters
    ----------
    path : str or path-like
        The file; its folder must exist.
    data : bytes

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_atomic(folder / "a.txt", b"hello")
    >>> (folder / "a.txt").read_bytes(), [p.name for p in folder.iterdir()]
    (b'hello', ['a.txt'])
    """
    path = Path(path)
    # No fsync: a crash leaves at worst a stray temp file or a truncated
    # file; cache entries are checksummed, so a damaged one is a miss.
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        # mkstemp makes owner-only files; a cache shared on a filesystem
        # (several users, Dask workers) or a report for colleagues needs
        # the usual umask-based mode.
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
