"""What the verbs write: output paths checked before any work, files written atomically after it."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..files import write_atomic


class CommandError(Exception):
    """A user error the command line reports in one line."""


def check_output_file(path: str, option: str, suffixes: Sequence[str] | None = None) -> Path:
    """Fail before any work when ``path`` cannot be written as asked.

    Parameters
    ----------
    path : str
        The file the user named.
    option : str
        The option that named it, for the message (``"-o"``).
    suffixes : sequence of str, optional
        The endings allowed (lower case).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    CommandError
        For another ending, a folder or a non-regular file at ``path``, or a
        folder above it that is missing or not writable.
    """
    out = Path(path)
    if suffixes is not None and out.suffix.lower() not in suffixes:
        allowed = suffixes[0] if len(suffixes) == 1 else f"{', '.join(suffixes[:-1])} or {suffixes[-1]}"
        raise CommandError(f"{option} must end in {allowed}, got {out.name!r}")
    if out.is_dir():
        raise CommandError(f"{option} {path!r} is a folder; give a file name")
    # A rename onto a device or a FIFO would replace it, not write into it.
    if os.path.lexists(out) and not out.is_file():
        raise CommandError(f"{option} {path!r} exists and is not a regular file; give another name")
    _check_writable_folder(out.parent, option, path)
    return out


def check_output_folder(path: str, option: str) -> Path:
    """Fail before any work when folder ``path`` cannot be written.

    The folder may be missing (it is created after the work), but the
    nearest existing one above it must be a writable folder.

    Parameters
    ----------
    path : str
        The folder the user named.
    option : str
        The option that named it, for the message (``"--report"``).

    Returns
    -------
    Path
        ``path``, which may not exist yet.

    Raises
    ------
    CommandError
        When ``path`` is a file, or the nearest existing folder is not writable.
    """
    out = Path(path)
    existing = out
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if existing == out and not out.is_dir():
        raise CommandError(f"{option} {path!r} exists and is not a folder")
    _check_writable_folder(existing, option, path)
    return out


def _check_writable_folder(folder: Path, option: str, path: str) -> None:
    folder = folder if str(folder) else Path(".")
    if os.path.lexists(folder) and not folder.is_dir():
        raise CommandError(f"{option} {path!r}: {str(folder)!r} is not a folder")
    if not folder.is_dir():
        raise CommandError(f"{option} {path!r}: folder {str(folder)!r} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CommandError(f"{option} {path!r}: folder {str(folder)!r} is not writable")


def save_bytes(path: Path, write: Any) -> None:
    """``write(file)`` into memory, then one atomic write: an interrupt or a
    full disk never leaves a torn file or destroys the previous one.

    Parameters
    ----------
    path : Path
    write : callable
        Writes the file's content into the binary file object it is given.
    """
    buffer = io.BytesIO()
    write(buffer)
    write_atomic(path, buffer.getvalue())


def write_report_folder(folder: Path, pngs: dict[str, bytes], page: str) -> list[Path]:
    """Each PNG, then the page ``index.html``, every file atomically.

    Parameters
    ----------
    folder : Path
        Created with its parents when missing.
    pngs : dict of str to bytes
        PNG bytes by file name.
    page : str
        The HTML page.

    Returns
    -------
    list of Path
        The files written, in that order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in [*pngs.items(), ("index.html", page.encode("utf-8"))]:
        write_atomic(folder / name, data)
        written.append(folder / name)
    return written
