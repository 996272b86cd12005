"""Weights fetched on first use: a file missing from its cache folder is
downloaded there (from a mirror when one is set), its SHA-256 prefix
checked and the file written atomically, so a download that fails leaves
nothing behind; an offline setting forbids any network access."""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.parse
import urllib.request
from pathlib import Path

from torch.hub import HASH_REGEX

from ..files import atomic_output, write_all
from ..persistence import error_cause
from ..progress import progress_bar
from .backbone import BackboneUnavailableError

__all__ = ["MIRROR", "OFFLINE", "fetch_file", "offline_setting", "source_url"]

#: Set to 1 (or true, yes, on), skorchlite never accesses the network.
OFFLINE = "SKORCHLITE_OFFLINE"
#: A base URL that serves the weights files by name, in place of their own host.
MIRROR = "SKORCHLITE_WEIGHTS_MIRROR"

_TRUE = frozenset({"1", "true", "yes", "on"})
_CHUNK = 1 << 20
# Seconds a connection or a read may stall before the download fails: a
# server that stops sending must not hang the run.
_TIMEOUT_S = 60


def offline_setting(*others: str) -> str | None:
    """The variable that forbids network access, if one does.

    Parameters
    ----------
    *others : str
        Variables of another library's own offline switch (``HF_HUB_OFFLINE``)
        that count too.

    Returns
    -------
    str or None
        The first of :data:`OFFLINE` and ``others`` set to a true value
        (``1``, ``true``, ``yes``, ``on``, in any case), as ``NAME=value``.

    Examples
    --------
    >>> import os
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"SKORCHLITE_OFFLINE": "1"}):
    ...     offline_setting()
    'SKORCHLITE_OFFLINE=1'
    """
    for name in (OFFLINE, *others):
        value = os.environ.get(name, "").strip()
        if value.lower() in _TRUE:
            return f"{name}={value}"
    return None


def source_url(url: str) -> str:
    """Where ``url``'s file is fetched from: ``url``, or the same file name
    under the base URL :data:`MIRROR` names.

    Raises
    ------
    BackboneUnavailableError
        When the mirror is not an ``http://`` or ``https://`` URL.

    Examples
    --------
    >>> import os
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"SKORCHLITE_WEIGHTS_MIRROR": "http://weights.example/torch/"}):
    ...     source_url("https://download.pytorch.org/models/resnet18-f37072fd.pth")
    'http://weights.example/torch/resnet18-f37072fd.pth'
    """
    mirror = os.environ.get(MIRROR, "").strip()
    if not mirror:
        return url
    if urllib.parse.urlsplit(mirror).scheme not in ("http", "https") or not urllib.parse.urlsplit(mirror).netloc:
        raise BackboneUnavailableError(
            f"{MIRROR}={mirror!r} is not an http:// or https:// base URL (for weights in a folder, set TORCH_HOME "
            "to a folder whose hub/checkpoints holds them)."
        )
    return f"{mirror.rstrip('/')}/{url.rsplit('/', 1)[-1]}"


def fetch_file(url: str, path: Path, *, what: str, hint: str = "") -> Path:
    """``path``, downloaded first from ``url`` when it is not there.

    The SHA-256 of the download must start with the hex digits after the
    last ``-`` of the file name (``resnet18-f37072fd.pth``), as torch.hub's
    ``check_hash`` requires; the bytes go to a temporary file in ``path``'s
    folder, renamed to ``path`` only when complete and verified.

    Parameters
    ----------
    url : str
        The file's own URL; :data:`MIRROR` replaces all but its file name.
    path : Path
        Where the file belongs (a cache folder's file of the same name).
    what : str
        What the file is, for the messages ("Weights X of backbone 'y'").
    hint : str, default=""
        A sentence the messages end with (how to move the cache).

    Returns
    -------
    Path
        ``path``, a complete file.

    Raises
    ------
    BackboneUnavailableError
        When :func:`offline_setting` forbids the download (naming the exact
        path the file belongs at), or the download fails, is cut off or
        has the wrong hash (saying that nothing was kept).
    """
    if path.is_file():
        return path
    if (setting := offline_setting()) is not None:
        raise BackboneUnavailableError(
            f"{what} are not on this machine and {setting} forbids downloading them: copy the file {url} "
            f"to {str(path)!r}. {hint}".strip()
        )
    source = source_url(url)
    try:
        _download(source, path)
    except (OSError, http.client.HTTPException, ValueError, _Rejected) as err:
        cause = str(err) if isinstance(err, _Rejected) else error_cause(err)
        raise BackboneUnavailableError(
            f"{what}: downloading {source} failed ({cause}); nothing was kept in {str(path.parent)!r}. "
            f"Run again to retry, set {MIRROR} to a server that has the file, or copy it to {str(path)!r}. {hint}".strip()
        ) from None
    return path


class _Rejected(Exception):
    """A download that arrived but is not the file: cut off, or of another hash."""


def _download(url: str, path: Path) -> None:
    expected = match.group(1) if (match := HASH_REGEX.search(path.name)) else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    request = urllib.request.Request(url, headers={"User-Agent": "skorchlite"})
    with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response, atomic_output(path) as fd:
        length = response.headers.get("Content-Length", "")
        total = int(length) if length.isdigit() else None
        sha, received = hashlib.sha256(), 0
        with progress_bar(total or 0, 1, f"downloading {path.name}", unit="B", scale=True) as bar:
            while chunk := response.read(_CHUNK):
                write_all(fd, chunk)
                sha.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        # http.client ends a body cut short quietly: compare with what was announced.
        if total is not None and received != total:
            raise _Rejected(f"cut off: {received:,} of {total:,} bytes arrived")
        if not sha.hexdigest().startswith(expected):
            raise _Rejected(
                f"wrong file: its SHA-256 {sha.hexdigest()[: max(len(expected), 12)]}... does not start with "
                f"{expected}, as its name says"
            )
