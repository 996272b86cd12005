"""Outputs apart from inputs: never the same file (through any link or
relative path), never inside an input folder, and a report folder, which is
replaced, never holding an input."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

from ..files import folder_entries, resolved_path
from .errors import CommandError

#: What each option or argument holding a path is, by the label the verbs give it.
Inputs = Mapping[str, "str | None"]


def check_cache_apart(inputs: Inputs, cache: bool | str = True) -> None:
    """Fail before any work when the embedding cache is, or lies inside, an input.

    The cache is an output the run writes: inside an image folder, its
    folders would be read as a class by the next run.

    Parameters
    ----------
    inputs : mapping of str to (str or None)
        As for :func:`check_output_file`.
    cache : bool or str, default=True
        ``--cache``: ``True`` for the default folder, a folder, or
        ``False`` (``--no-cache``: nothing written).

    Raises
    ------
    CommandError
        Naming the cache folder, the variable or option that sets it and the input.
    """
    from ..cache import default_cache_dir

    if cache is False:
        return
    if cache is not True:
        check_apart(Path(cache).expanduser(), "the embedding cache --cache", inputs)
        return
    option = (
        "the embedding cache (set by SKORCHLITE_CACHE)"
        if os.environ.get("SKORCHLITE_CACHE")
        else "the embedding cache (the default; SKORCHLITE_CACHE sets another)"
    )
    check_apart(default_cache_dir(), option, inputs)


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
    target = resolved_path(out)
    above = {_identity(p) for p in (target, *target.parents)} - {None}
    own = _identity(target)
    for label, given in inputs.items():
        if given is None:
            continue
        where = f"{option} {str(out)!r}"
        for entry in _input_entries(Path(given), files=own is not None):
            place = resolved_path(entry)
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
    for sub in folder_entries(path):
        if sub.is_dir():
            yield sub
            if files:
                # Another image lies in its class folder, checked as a folder.
                yield from (entry for entry in folder_entries(sub) if _linked(entry))


def _linked(path: Path) -> bool:
    """A symbolic link, or a file with other hard links: it may be elsewhere too."""
    try:
        status = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISLNK(status.st_mode) or (stat.S_ISREG(status.st_mode) and status.st_nlink > 1)
