"""Atomic file writes, and the one safe way skorchlite reads a user's file.

Cache entries, report PNGs and Dask shards all go through
:func:`write_atomic`, so a reader (another process, a worker, a user's
image viewer) sees either the old file or the complete new one, never a
torn one, and every file gets the permissions the user's umask asks for.

Images and weights files are read through :func:`open_regular`, which
refuses FIFOs, devices and sockets without ever blocking on them. Where an
output goes is compared by :func:`resolved_path`, and a folder listed by
:func:`folder_entries`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "FileTooLargeError",
    "NotRegularFileError",
    "atomic_output",
    "folder_entries",
    "open_regular",
    "read_limited",
    "resolved_path",
    "write_all",
    "write_atomic",
]


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    The temporary file (``.tmp-*``) lives in the same folder, so
    :func:`os.replace` is atomic; it is removed when anything fails, and the
    first error is raised (not one from closing or removing it after).

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
    with atomic_output(Path(path)) as fd:
        write_all(fd, data)


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[int]:
    """A descriptor whose bytes become ``path`` when the block ends without error.

    They go to a temporary file (``.tmp-*``) in the same folder, renamed over
    ``path`` at the end (:func:`os.replace` is atomic); any error inside the
    block, or closing or renaming, removes it, and the first error is raised.

    Parameters
    ----------
    path : Path
        The file; its folder must exist.

    Yields
    ------
    int
        A descriptor open for writing (:func:`write_all` writes to it).
    """
    # No fsync: a crash leaves at worst a stray temp file or a truncated
    # file; cache entries are checksummed, so a damaged one is a miss.
    fd, tmp = _temporary(path.parent)
    try:
        try:
            yield fd
        except BaseException:
            # An error closing (or removing, below) must not replace the
            # first: a Ctrl-C would become an OSError the cache warns about.
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # at worst a stray temp file
            os.unlink(tmp)
        raise


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to descriptor ``fd``."""
    view = memoryview(data).cast("B")  # bytes, whatever the buffer's item size
    while view:  # a write may be short, then fail: a full disk
        view = view[os.write(fd, view) :]


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


def resolved_path(path: Path) -> Path:
    """``path`` absolute, its links and ``..`` resolved (as written where a link loops)."""
    try:
        return Path(os.path.abspath(path)).resolve()
    except (OSError, RuntimeError):  # a symlink loop: as written, then
        return Path(os.path.abspath(path))


def folder_entries(folder: Path) -> list[Path]:
    """What ``folder`` holds; nothing when it cannot be read."""
    try:
        return list(folder.iterdir())
    except OSError:  # unreadable: the caller itself says so
        return []


class NotRegularFileError(OSError):
    """The path names a FIFO, a device or a socket, not a regular file."""


class FileTooLargeError(OSError):
    """The file holds more bytes than the reader accepts."""


# Never wait for a FIFO's writer, never make a terminal ours.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def open_regular(path: str | os.PathLike, max_bytes: int | None = None) -> BinaryIO:
    """Open ``path`` for reading when it is a regular file (symlinks followed).

    The checks are made on the opened descriptor, not on the path
    beforehand, so a FIFO or device swapped in between cannot block the
    reader or feed it endless bytes: FIFOs are opened without waiting for a
    writer and refused.

    Parameters
    ----------
    path : str or path-like
    max_bytes : int or None, default=None
        Refuse a file larger than this; read it with :func:`read_limited`
        to refuse one that grows past it while being read.

    Returns
    -------
    file object
        Binary, buffered, blocking; the caller closes it.

    Raises
    ------
    NotRegularFileError
        For a FIFO, a device or a socket.
    IsADirectoryError
        For a directory.
    FileTooLargeError
        For a file of more than ``max_bytes`` bytes.
    OSError
        As :func:`os.open` raises it (missing file, symlink loop, name too
        long...), and for a path holding a NUL byte.

    Examples
    --------
    >>> import tempfile
    >>> open_regular(tempfile.gettempdir())
    Traceback (most recent call last):
    ...
    IsADirectoryError: [Errno 21] this is a directory, not a regular file: ...
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except ValueError as err:  # os.open's "embedded null byte"
        raise OSError(errno.EINVAL, "the path contains a NUL byte", os.fspath(path)) from err
    try:
        st = os.fstat(fd)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "this is a directory, not a regular file", os.fspath(path))
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
            raise NotRegularFileError(errno.EINVAL, f"this is {kind}; only regular files are read", os.fspath(path))
        if max_bytes is not None and st.st_size > max_bytes:
            raise FileTooLargeError(errno.EFBIG, _too_large(str(st.st_size), max_bytes), os.fspath(path))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_limited(file: BinaryIO, max_bytes: int | None = None) -> bytes:
    """The rest of ``file``, refusing more than ``max_bytes`` bytes: with
    :func:`open_regular`'s size check, this also stops a file that grows
    while it is read.

    Raises
    ------
    FileTooLargeError
        When the file holds more than ``max_bytes`` bytes.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "a.bin"
    >>> path.write_bytes(b"12345")
    5
    >>> with open_regular(path) as file:
    ...     read_limited(file, max_bytes=4)
    Traceback (most recent call last):
    ...
    skorchlite.files.FileTooLargeError: [Errno 27] the file holds more bytes, over the limit of 4 bytes
    >>> with open_regular(path, max_bytes=5) as file:
    ...     read_limited(file, max_bytes=5)
    b'12345'
    """
    if max_bytes is None:
        return file.read()
    # In chunks, not read(max_bytes + 1): that reserves the whole limit up
    # front, which fails under an address-space limit for any small file.
    chunks, total = [], 0
    while chunk := file.read(min(_CHUNK, max_bytes + 1 - total)):
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            raise FileTooLargeError(errno.EFBIG, _too_large("more", max_bytes))
    return b"".join(chunks)


_CHUNK = 1 << 20


def _too_large(size: str, max_bytes: int) -> str:
    return f"the file holds {size} bytes, over the limit of {max_bytes} bytes"
