"""Atomic file writes: the one way skorchlite writes a file that others read.

Cache entries, report PNGs and Dask shards all go through
:func:`write_atomic`, so a reader (another process, a worker, a user's
image viewer) sees either the old file or the complete new one, never a
torn one, and every file gets the permissions the user's umask asks for.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["write_atomic"]


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
    fd, tmp = _temporary(path.parent)
    try:
        try:
            view = memoryview(data)
            while view:  # a write may be short, then fail: a full disk
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _temporary(folder: Path) -> tuple[int, Path]:
    """A new ``.tmp-*`` file in ``folder``, open for writing.

    Created with mode 0o666 for the kernel to apply the umask (mkstemp makes
    owner-only files, and a cache shared by several users or Dask workers,
    or a report for colleagues, needs the usual mode). Reading the umask
    instead would mean setting it, which races with other threads.
    """
    while True:
        tmp = folder / f".tmp-{secrets.token_hex(8)}"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:  # 2**-64 per try
            continue
