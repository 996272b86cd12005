"""What the verbs write: output paths checked before any work, files written atomically after it.

An output is never an input: not the same file (through any link or
relative path), not inside an input folder, and a report folder, which is
replaced whole, never holds an input.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..files import write_atomic
from .apart import Inputs, check_apart
from .errors import CommandError


def check_output_file(
    path: str, option: str, suffixes: Sequence[str] | None = None, inputs: Inputs | None = None
) -> Path:
    """Fail before any work when ``path`` cannot be written as asked.

    Parameters
    ----------
    path : str
        The file the user named.
    option : str
        The option that named it, for the message (``"-o"``).
    suffixes : sequence of str, optional
        The endings allowed (lower case).
    inputs : mapping of str to (str or None), optional
        What the run reads (or writes elsewhere), by a label for the message
        (``{"the input DIR": args.dir}``); see :func:`check_apart`.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    CommandError
        For another ending, a folder or a non-regular file at ``path``, a
        folder above it that is missing or not writable, or an input at
        ``path``.
    """
    _check_named(path, option, "file")
    out = Path(path)
    # First: writing over an input is the costliest mistake, whatever its name.
    check_apart(out, option, inputs or {})
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


def check_output_folder(path: str, option: str, inputs: Inputs | None = None) -> Path:
    """Fail before any work when report folder ``path`` cannot be written.

    The folder may be missing (it is created after the work), but the
    nearest existing one above it must be a writable folder; an existing
    one must be writable itself (:func:`skorchlite.report.folder.save_report`
    replaces its contents, so its parent may be read-only, or it a mount
    point), and be empty or a skorchlite report: a folder holding anything
    not proven ours is refused, never wiped
    (:func:`skorchlite.report.folder.check_report_folder`).

    Parameters
    ----------
    path : str
        The folder the user named.
    option : str
        The option that named it, for the message (``"--report"``).
    inputs : mapping of str to (str or None), optional
        As for :func:`check_output_file`.

    Returns
    -------
    Path
        ``path``, which may not exist yet.

    Raises
    ------
    CommandError
        When ``path`` is empty, a file or a page's name, the nearest existing
        folder is not writable, or it is, holds or lies inside an input.
    skorchlite.report.folder.ReportFolderError
        When the folder holds other files.
    """
    _check_named(path, option, "folder")
    out = Path(path)
    if out.suffix.lower() in (".html", ".htm"):
        raise CommandError(f"{option} names a folder (its page is index.html inside), got {path!r}; name a folder")
    existing = out
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if existing == out and not out.is_dir():
        raise CommandError(f"{option} {path!r} exists and is not a folder")
    _check_writable_folder(existing, option, path)
    check_apart(out, option, inputs or {}, folder=True)
    if out.is_dir():
        from ..report.folder import check_report_folder  # the report's modules, only for a report

        check_report_folder(out, option)
    return out


def _check_named(path: str, option: str, what: str) -> None:
    # An empty path would silently mean no output, or the current folder.
    if not path:
        raise CommandError(f"{option} is empty; name a {what}")


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
