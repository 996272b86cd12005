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
import stat
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..files import write_atomic
from .apart import Inputs, check_apart, folder_entries, resolved_path
from .errors import CommandError, ReportError

#: The file that marks a folder as a skorchlite report, listing its files.
REPORT_MANIFEST = ".skorchlite-report.json"


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
    one must be writable itself (:func:`write_report_folder` replaces its
    contents, so its parent may be read-only, or it a mount point), and be
    empty or a skorchlite report: a folder holding anything not proven
    ours is refused, never wiped.

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
        folder is not writable, the folder holds other files, or it is, holds or
        lies inside an input.
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
        _check_replaceable(out, option)
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


#: What a report wrote before it had a manifest (0.1.0): its page and the figures of
#: :func:`skorchlite.report.report_figures`. Nothing else in such a folder is ours.
_PRE_MANIFEST_FILES = frozenset(
    {"index.html", "confusion_matrix.png", "roc_pr.png", "learning_curves.png", "misclassified.png"}
)


def _check_replaceable(folder: Path, option: str) -> set[str]:
    """An existing report folder: empty, or a skorchlite report holding only its own regular files.

    Returns
    -------
    set of str
        The names of the files to remove when the report is replaced: those
        proven ours, each a regular file in ``folder``.
    """
    ours = _report_files(folder, option)
    for entry in sorted(folder_entries(folder)):
        if entry.name not in ours:
            raise CommandError(
                f"{option} {str(folder)!r} holds {entry.name!r}, which no skorchlite report wrote; name a new or "
                "empty folder (a report folder's own files are replaced, and other files are never deleted)"
            )
        if not _regular(entry):
            raise CommandError(
                f"{option} {str(folder)!r} holds {entry.name!r}, which is not a regular file, so no skorchlite "
                "report wrote it; name a new or empty folder"
            )
    return {name for name in ours if _regular(folder / name)}


def _report_files(folder: Path, option: str) -> set[str]:
    """The names a skorchlite report in ``folder`` may have written; none when it is not a report.

    Only proof counts: our manifest (each name a plain file name of the
    folder), or, for a report from before the manifest, a page with our
    title; then only the names such a report wrote.
    """
    manifest = folder / REPORT_MANIFEST
    if os.path.lexists(manifest):
        names = _manifest_names(manifest)
        if names is None:
            raise CommandError(
                f"{option} {str(folder)!r} holds {REPORT_MANIFEST!r}, which no skorchlite report wrote as it is "
                "(a file name in it is not a plain name in that folder, or it is not a report manifest); name a "
                "new or empty folder"
            )
        return names | {REPORT_MANIFEST}
    page = folder / "index.html"
    try:
        if _regular(page):
            with open(page, "rb") as file:
                if b"<title>skorchlite " in file.read(4096):
                    return set(_PRE_MANIFEST_FILES)
    except OSError:
        pass
    return set()


def _manifest_names(manifest: Path) -> set[str] | None:
    """The file names ``manifest`` lists, or ``None`` when it is not one of ours."""
    try:
        if not _regular(manifest):
            return None
        content = json.loads(manifest.read_bytes())
    except (OSError, ValueError):
        return None
    listed = content.get("files") if isinstance(content, dict) and content.get("written by") == "skorchlite" else None
    if not isinstance(listed, list) or not all(isinstance(name, str) and _plain_name(name) for name in listed):
        return None
    return set(listed)


def _plain_name(name: str) -> bool:
    """A file's own name: no folder, no ``..``, nothing a path could read otherwise."""
    return (
        name not in ("", ".", "..", REPORT_MANIFEST)
        and os.path.basename(name) == name
        and "/" not in name
        and "\\" not in name
        and "\0" not in name
        and not os.path.isabs(name)
    )


def _regular(path: Path) -> bool:
    """A regular file itself, not a link to one."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except (OSError, ValueError):
        return False


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

    When drawing fails, the folder still gets ``saved`` alone; when the
    folder cannot be written after all, ``saved`` goes to a new folder in the
    temporary folder (or, failing that, to stdout). Either way the failure
    is one line that says where the scores are: the work is never lost to a
    figure or a folder.

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
        When ``draw`` failed (``--debug`` shows its traceback) or the folder
        could not be written.
    """
    try:
        pngs, page = draw()
        # Encoded here: a name the page cannot encode is a failure of the report, not of the scores.
        files = {**saved, **pngs, "index.html": page.encode("utf-8")}
    except BaseException as err:
        where = _save_scores(folder, saved)
        if not isinstance(err, Exception):  # Ctrl-C: the scores are saved, and it still stops the run
            raise
        raise ReportError(f"the report could not be drawn ({type(err).__name__}: {err}); {where}") from err
    try:
        return write_report_folder(folder, files)
    except (OSError, CommandError) as err:
        raise ReportError(
            f"the report could not be written in {str(folder)!r} ({type(err).__name__}: {err}); "
            f"{_save_elsewhere(saved)}"
        ) from err


def _save_scores(folder: Path, saved: Mapping[str, bytes]) -> str:
    """``saved`` as the report folder's only files, or elsewhere; says where."""
    try:
        written = write_report_folder(folder, saved)
    except (OSError, CommandError) as err:
        return f"{str(folder)!r} could not be written either ({type(err).__name__}: {err}); {_save_elsewhere(saved)}"
    return f"the scores are saved in {', '.join(str(p) for p in written)}"


def _save_elsewhere(saved: Mapping[str, bytes]) -> str:
    """``saved`` in a new temporary folder, or on stdout when none can be written; says where."""
    try:
        spare = Path(tempfile.mkdtemp(prefix="skorchlite-scores-"))
        for name, data in saved.items():
            write_atomic(spare / name, data)
    except OSError:
        for name, data in saved.items():
            print(f"{name}:\n{data.decode('utf-8', 'replace')}")
        return "the scores are printed above"
    return f"the scores are saved in {', '.join(str(spare / name) for name in saved)}"


def write_report_folder(folder: Path, files: Mapping[str, bytes]) -> list[Path]:
    """Replace the contents of ``folder`` with ``files`` and a manifest:
    afterwards it holds this run's files only.

    The folder itself stays (it may be a mount point, under a read-only
    folder): the new files are written inside it under temporary names,
    then renamed over the old ones, and only then are the previous
    report's other files removed, those proven ours (see
    :func:`check_output_folder`, checked again here). A failure while
    writing leaves the previous report as it was; an interrupt after that
    leaves a folder whose manifest still names every file written, which
    the next run replaces.

    Parameters
    ----------
    folder : Path
        Created with its parents when missing.
    files : mapping of str to bytes
        The content of each file, by plain name.

    Returns
    -------
    list of Path
        The files written, in the order given.
    """
    place = resolved_path(folder)  # a link to the report folder: the folder it names is written
    if not place.is_dir():
        place.mkdir(parents=True, exist_ok=True)
    old = _check_replaceable(place, "the report folder")
    token = secrets.token_hex(6)
    staged = {name: place / f".{name}.new-{token}" for name in [*files, REPORT_MANIFEST]}
    manifest = place / REPORT_MANIFEST
    previous = manifest.read_bytes() if REPORT_MANIFEST in old else None
    # Until the end, the manifest names every file this write may leave behind.
    interim = (old | set(files) | {path.name for path in staged.values()}) - {REPORT_MANIFEST}
    write_atomic(manifest, _manifest(interim))
    try:
        for name, data in [*files.items(), (REPORT_MANIFEST, _manifest(files))]:
            write_atomic(staged[name], data)
    except BaseException:
        for path in staged.values():
            with contextlib.suppress(OSError):
                os.unlink(path)
        if previous is None:
            os.unlink(manifest)
        else:
            write_atomic(manifest, previous)
        raise
    for name in files:
        os.replace(staged[name], place / name)
    for name in sorted(old - set(files) - {REPORT_MANIFEST}):
        if _regular(place / name):  # checked again: never anything but our file
            os.unlink(place / name)
    os.replace(staged[REPORT_MANIFEST], manifest)
    return [folder / name for name in files]


def _manifest(names: Iterable[str]) -> bytes:
    return json.dumps({"written by": "skorchlite", "files": sorted(names)}, indent=1).encode()
