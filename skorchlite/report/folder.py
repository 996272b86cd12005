"""Writing a report folder: every file at once, and in a report's own folder only what is proven ours.

A report folder is marked by a manifest (:data:`REPORT_MANIFEST`) listing
its files. A folder is replaced only when it is empty or a report holding
nothing but its own regular files; a file no report wrote is never
removed, whatever its name. The command line's verbs write their report
folders through :func:`save_report`, which saves the run's scores first.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from ..files import folder_entries, resolved_path, write_atomic

__all__ = [
    "REPORT_MANIFEST",
    "ReportError",
    "ReportFolderError",
    "check_report_folder",
    "save_report",
    "write_files",
    "write_report_folder",
]

#: The file that marks a folder as a skorchlite report, listing its files.
REPORT_MANIFEST = ".skorchlite-report.json"

#: What a report wrote before it had a manifest (0.1.0): its page and the figures of
#: :func:`skorchlite.report.report_figures`. Nothing else in such a folder is ours.
_PRE_MANIFEST_FILES = frozenset(
    {"index.html", "confusion_matrix.png", "roc_pr.png", "learning_curves.png", "misclassified.png"}
)


class ReportFolderError(ValueError):
    """The folder holds what no skorchlite report wrote, so it is not replaced."""


class ReportError(RuntimeError):
    """The report could not be drawn or written; the scores were saved first, and the message says where."""


def check_report_folder(folder: Path, option: str) -> set[str]:
    """An existing report folder: empty, or a skorchlite report holding only its own regular files.

    Parameters
    ----------
    folder : Path
        An existing folder.
    option : str
        What named it, for the message (``"--report"``).

    Returns
    -------
    set of str
        The names of the files to remove when the report is replaced: those
        proven ours, each a regular file in ``folder``.

    Raises
    ------
    ReportFolderError
        Naming the first entry that is not proven ours.
    """
    ours = _report_files(folder, option)
    for entry in sorted(folder_entries(folder)):
        if entry.name not in ours:
            raise ReportFolderError(
                f"{option} {str(folder)!r} holds {entry.name!r}, which no skorchlite report wrote; name a new or "
                "empty folder (a report folder's own files are replaced, and other files are never deleted)"
            )
        if not _regular(entry):
            raise ReportFolderError(
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
            raise ReportFolderError(
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


def save_report(
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
        Checked beforehand (the command line's ``check_output_folder``).
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
    except (OSError, ReportFolderError) as err:
        raise ReportError(
            f"the report could not be written in {str(folder)!r} ({type(err).__name__}: {err}); "
            f"{_save_elsewhere(saved)}"
        ) from err


def _save_scores(folder: Path, saved: Mapping[str, bytes]) -> str:
    """``saved`` as the report folder's only files, or elsewhere; says where."""
    try:
        written = write_report_folder(folder, saved)
    except (OSError, ReportFolderError) as err:
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
    :func:`check_report_folder`, checked again here). A failure while
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

    Raises
    ------
    ReportFolderError
        When ``folder`` holds what no skorchlite report wrote.
    """
    place = _made(folder)
    old = check_report_folder(place, "the report folder")
    manifest = place / REPORT_MANIFEST
    previous = manifest.read_bytes() if REPORT_MANIFEST in old else None
    token = secrets.token_hex(6)
    # Until the end, the manifest names every file this write may leave behind.
    interim = (old | set(files) | {_staged_name(name, token) for name in [*files, REPORT_MANIFEST]}) - {REPORT_MANIFEST}
    write_atomic(manifest, _manifest(interim))
    try:
        staged = _stage(place, {**files, REPORT_MANIFEST: _manifest(files)}, token)
    except BaseException:
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


def write_files(folder: Path, files: Mapping[str, bytes]) -> list[Path]:
    """Write ``files`` into ``folder`` all at once, replacing files of those names; nothing else is touched.

    Each file is written under a temporary name first, then all are renamed:
    a failure while writing leaves the folder as it was.

    Parameters
    ----------
    folder : Path
        Any folder (unlike :func:`write_report_folder`'s, it may hold other
        files, and gets no manifest); made when missing.
    files : mapping of str to bytes
        As for :func:`write_report_folder`.

    Returns
    -------
    list of Path
        ``folder / name`` for each file.
    """
    place = _made(folder)
    staged = _stage(place, files, secrets.token_hex(6))
    for name in files:
        os.replace(staged[name], place / name)
    return [folder / name for name in files]


def _made(folder: Path) -> Path:
    """The folder ``folder`` names (through a link), created when missing."""
    place = resolved_path(folder)
    if not place.is_dir():
        place.mkdir(parents=True, exist_ok=True)
    return place


def _stage(place: Path, files: Mapping[str, bytes], token: str) -> dict[str, Path]:
    """Each file written under its temporary name in ``place``; on any failure, none is left."""
    staged = {name: place / _staged_name(name, token) for name in files}
    try:
        for name, data in files.items():
            write_atomic(staged[name], data)
    except BaseException:
        for path in staged.values():
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise
    return staged


def _staged_name(name: str, token: str) -> str:
    return f".{name}.new-{token}"


def _manifest(names: Iterable[str]) -> bytes:
    return json.dumps({"written by": "skorchlite", "files": sorted(names)}, indent=1).encode()
