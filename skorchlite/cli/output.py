"""What the verbs write: output paths checked before any work, files written atomically after it.

An output is never an input: not the same file (through any link or
relative path), not inside an input folder, and a report folder, which is
replaced whole, never holds an input.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..files import write_atomic

#: What each option or argument holding a path is, by the label the verbs give it.
Inputs = Mapping[str, "str | None"]

#: The file that marks a folder as a skorchlite report, listing its files.
REPORT_MANIFEST = ".skorchlite-report.json"


class CommandError(Exception):
    """A user error the command line reports in one line."""


class ReportError(CommandError):
    """The report could not be drawn; the scores were saved first."""


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
    nearest existing one above it must be a writable folder. An existing
    folder must be empty or a skorchlite report (:func:`write_report_folder`
    replaces it whole): a folder of other files is refused, never wiped.

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
        When ``path`` is a file or a page's name, the nearest existing folder
        is not writable, the folder holds other files, or it is, holds or
        lies inside an input.
    """
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
        _check_replaceable(out, option)
    return out


def check_apart(out: Path, option: str, inputs: Inputs, *, folder: bool = False) -> None:
    """Refuse an output that is an input, lies inside an input folder, or (a
    folder, replaced whole) holds an input.

    Paths are compared resolved (symbolic links, ``..``) and by identity
    (device and inode: hard links, bind mounts). A folder input is an image
    folder: its class folders (which may link elsewhere) count as its
    inside, and its images as its files.

    Parameters
    ----------
    out : Path
        The output, which may not exist yet.
    option : str
        The option that named it, for the message.
    inputs : mapping of str to (str or None)
        The inputs by a label for the message; ``None`` is skipped.
    folder : bool, default=False
        ``out`` is a folder the run replaces whole.

    Raises
    ------
    CommandError
        Naming the option, the path and the input.
    """
    target = _resolved(out)
    above = {_identity(p) for p in (target, *target.parents)} - {None}
    own = _identity(target)
    for label, given in inputs.items():
        if given is None:
            continue
        where = f"{option} {str(out)!r}"
        for entry in _input_entries(Path(given), files=own is not None):
            place = _resolved(entry)
            is_folder = entry.is_dir()
            if place == target or (own is not None and _identity(place) == own):
                what = "" if entry == Path(given) else f"{str(entry)!r} of "
                raise CommandError(
                    f"{where} is {what}{label} {given!r}: writing it would replace an input; give another path"
                )
            if is_folder and (place in target.parents or _identity(place) in above):
                raise CommandError(
                    f"{where} lies inside {label} {given!r}: outputs never go into an input folder (a run on it "
                    "would read them as data); write it elsewhere"
                )
            if folder and (target in place.parents or (own is not None and own in _identities_above(place))):
                raise CommandError(
                    f"{where} holds {label} {given!r}, and a report folder is replaced whole; name another folder"
                )


def _resolved(path: Path) -> Path:
    try:
        return Path(os.path.abspath(path)).resolve()
    except (OSError, RuntimeError):  # a symlink loop: as written, then
        return Path(os.path.abspath(path))


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return None
    return status.st_dev, status.st_ino


def _identities_above(path: Path) -> set[tuple[int, int] | None]:
    return {_identity(p) for p in path.parents}


def _input_entries(path: Path, files: bool) -> Iterator[Path]:
    """``path``; for a folder, also its sub-folders and, with ``files``,
    their files: an image folder's classes and images, wherever they link."""
    yield path
    if not path.is_dir():
        return
    for sub in _listing(path):
        if sub.is_dir():
            yield sub
            if files:
                # Another image lies in its class folder, checked as a folder.
                yield from (entry for entry in _listing(sub) if _linked(entry))


def _linked(path: Path) -> bool:
    """A symbolic link, or a file with other hard links: it may be elsewhere too."""
    try:
        status = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISLNK(status.st_mode) or (stat.S_ISREG(status.st_mode) and status.st_nlink > 1)


def _listing(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:  # unreadable: the run itself says so
        return []


def _check_writable_folder(folder: Path, option: str, path: str) -> None:
    folder = folder if str(folder) else Path(".")
    if os.path.lexists(folder) and not folder.is_dir():
        raise CommandError(f"{option} {path!r}: {str(folder)!r} is not a folder")
    if not folder.is_dir():
        raise CommandError(f"{option} {path!r}: folder {str(folder)!r} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CommandError(f"{option} {path!r}: folder {str(folder)!r} is not writable")


def _check_replaceable(folder: Path, option: str) -> None:
    """An existing report folder: empty, or a skorchlite report holding only its own files."""
    names = sorted(entry.name for entry in _listing(folder))
    if not names:
        return
    ours = _report_files(folder)
    stray = [name for name in names if ours is None or name not in ours]
    if stray:
        raise CommandError(
            f"{option} {str(folder)!r} holds {stray[0]!r}, which no skorchlite report wrote; name a new or empty "
            "folder (a report folder is replaced whole, and other files are never deleted)"
        )


def _report_files(folder: Path) -> set[str] | None:
    """The names a skorchlite report in ``folder`` wrote, from its manifest;
    a report from before the manifest: its page and PNGs. ``None``: not a report."""
    manifest = folder / REPORT_MANIFEST
    try:
        if manifest.is_file() and not manifest.is_symlink():
            listed = json.loads(manifest.read_bytes())["files"]
            return {str(name) for name in listed} | {REPORT_MANIFEST}
        page = folder / "index.html"
        if page.is_file() and not page.is_symlink():
            with open(page, "rb") as file:
                head = file.read(4096)
            if b"<title>skorchlite " in head:
                return {"index.html"} | {entry.name for entry in _listing(folder) if entry.suffix == ".png"}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None


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


def write_report(
    folder: Path, saved: Mapping[str, bytes], draw: Callable[[], tuple[dict[str, bytes], str]]
) -> list[Path]:
    """A run's report folder: the scores ``saved``, and the PNGs and page that ``draw`` makes.

    When drawing fails, the folder still gets ``saved`` alone, and the
    failure is one line that says where they are: the work is never lost
    to a figure.

    Parameters
    ----------
    folder : Path
        Checked by :func:`check_output_folder`.
    saved : mapping of str to bytes
        The scores, by file name (``scores.csv``).
    draw : callable
        Returns the PNG bytes by file name and the HTML page.

    Returns
    -------
    list of Path
        The files written (:func:`write_report_folder`).

    Raises
    ------
    ReportError
        When ``draw`` failed (``--debug`` shows its traceback).
    """
    try:
        pngs, page = draw()
        # Encoded here: a name the page cannot encode is a failure of the report, not of the scores.
        files = {**saved, **pngs, "index.html": page.encode("utf-8")}
    except BaseException as err:
        written = write_report_folder(folder, saved)
        if not isinstance(err, Exception):  # Ctrl-C: the scores are saved, and it still stops the run
            raise
        raise ReportError(
            f"the report could not be drawn ({type(err).__name__}: {err}); the scores are saved in "
            f"{', '.join(str(p) for p in written)}"
        ) from err
    return write_report_folder(folder, files)


def write_report_folder(folder: Path, files: Mapping[str, bytes]) -> list[Path]:
    """Replace ``folder`` whole with ``files`` and a manifest: afterwards it
    holds this run's files only.

    The files are written into a new folder beside it, which then takes its
    place; the previous report (empty, or a skorchlite report: see
    :func:`check_output_folder`, checked again here) is removed only then.
    An interrupt or a full disk leaves the previous report as it was.

    Parameters
    ----------
    folder : Path
        Created with its parents when missing.
    files : mapping of str to bytes
        The content of each file, by name.

    Returns
    -------
    list of Path
        The files written, in the order given.
    """
    place = _resolved(folder)  # a link to the report folder: the folder it names is replaced
    place.parent.mkdir(parents=True, exist_ok=True)
    if place.is_dir():
        _check_replaceable(place, "the report folder")
    new = _sibling(place, "new")
    old = None
    try:
        os.mkdir(new, 0o777)  # the umask applies: a report is for colleagues too
        manifest = {"written by": "skorchlite", "files": sorted(files)}
        for name, data in [*files.items(), (REPORT_MANIFEST, json.dumps(manifest, indent=1).encode())]:
            write_atomic(new / name, data)
        if os.path.lexists(place):
            aside = _sibling(place, "old")
            os.rename(place, aside)
            old = aside
        os.rename(new, place)
    except BaseException:
        if old is not None and not os.path.lexists(place):
            os.rename(old, place)
            old = None
        shutil.rmtree(new, ignore_errors=True)
        raise
    finally:
        if old is not None:
            with contextlib.suppress(OSError):
                shutil.rmtree(old)
    return [folder / name for name in files]


def _sibling(folder: Path, role: str) -> Path:
    """A name beside ``folder`` for the report being built or the one replaced."""
    return folder.parent / f".{folder.name}.{role}-{secrets.token_hex(6)}"
