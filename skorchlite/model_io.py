"""Share a fitted model without pickle: :func:`save` and :func:`load`.

A pickle (``joblib.dump``) is a program: loading it runs whatever it says.
The file :func:`save` writes holds data only, and :func:`load` builds
nothing that the caller did not trust by name:

- a fitted :class:`~skorchlite.FineTuneClassifier` as the safetensors file
  of its ``save_weights`` (:mod:`skorchlite.persistence`): parameters and
  classes as JSON, the network's weights as tensors;
- anything else (a Pipeline of :class:`~skorchlite.PretrainedFeatureExtractor`
  and any scikit-learn head, :class:`~skorchlite.LayerVotingClassifier`...)
  through ``skops.io``, which lists every type a file would build before it
  builds one: scikit-learn's estimators and numpy's arrays are trusted
  (as skops trusts them), skorchlite's estimators of plain data by name
  (:data:`TRUSTED_TYPES`), any other type only when the caller names it in
  ``trusted=``.

The file is a zip archive, its members stored uncompressed::

    manifest.json       {"format": "skorchlite-model", "format_version": 1,
                         "kind": "skops" or "FineTuneClassifier", "estimator": its class,
                         "skorchlite": the version that wrote it, "versions": of its libraries}
    model.skops         kind "skops": the estimator, through skops.io
    model.safetensors   kind "FineTuneClassifier": its save_weights file

Format history: 1, the first (skorchlite 0.3.0).
"""

from __future__ import annotations

import copy
import io
import json
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .files import open_regular, write_atomic
from .persistence import check_data_backbone, error_cause
from .versioning import __version__, describe_version, shown

__all__ = ["TRUSTED_TYPES", "PickleFileError", "UntrustedTypesError", "load", "save"]

#: skorchlite's types that :func:`load` builds without being asked: they
#: hold only parameters and fitted values of plain data (a module backbone,
#: which is not, is refused by :func:`save`, and its types by :func:`load`).
TRUSTED_TYPES = (
    "skorchlite.extractor.PretrainedFeatureExtractor",
    "skorchlite.voting.LayerVotingClassifier",
    "skorchlite.backbones.backbone.Preprocessing",
)

_FORMAT = "skorchlite-model"
_FORMAT_VERSION = 1
_MANIFEST = "manifest.json"
_MEMBERS = {"skops": "model.skops", "FineTuneClassifier": "model.safetensors"}
_ZIP_START = b"PK\x03\x04"
# How pickles begin: a protocol 2+ opcode, or one of joblib's compressions
# (zlib, gzip, bz2, xz, lzma, lz4).
_PICKLE_STARTS = (
    b"\x80",
    b"x\x01",
    b"x^",
    b"x\x9c",
    b"x\xda",
    b"\x1f\x8b",
    b"BZh",
    b"\xfd7zXZ",
    b"]\x00\x00",
    b'\x04"M\x18',
)


class UntrustedTypesError(ValueError):
    """A model file would build types the caller did not trust; nothing was built.

    Parameters
    ----------
    path : str or path-like
        The file.
    types : list of str
        Their full names, for ``trusted=`` once they are reviewed.

    Attributes
    ----------
    types : list of str
    """

    def __init__(self, path: str | os.PathLike, types: list[str]):
        self.path, self.types = str(path), types
        super().__init__(self.describe(f"skorchlite.load(path, trusted={types!r})"))

    def describe(self, remedy: str) -> str:
        """The message, with ``remedy``: how the caller names the types it trusts."""
        from skops.io.exceptions import UNTRUSTED_TYPE_REASONS

        listed = ", ".join(shown(name, limit=120) for name in self.types[:5])
        more = f" and {len(self.types) - 5} more" if len(self.types) > 5 else ""
        unsafe = [name for name in self.types if name in UNTRUSTED_TYPE_REASONS]
        return (
            f"{self.path!r} holds types that are not trusted: {listed}{more}; nothing was loaded and none of "
            "its code ran."
            + (
                f" skops does not trust {', '.join(unsafe)} by default: a crafted one can crash predict."
                if unsafe
                else ""
            )
            + f" If you made the file or trust its source, name them: {remedy}."
        )


class PickleFileError(ValueError):
    """The file is a pickle, which :func:`load` never reads: unpickling runs code."""


def save(model: Any, path: str | os.PathLike) -> Path:
    """Write a fitted model as data only, for :func:`load` on any machine.

    Parameters
    ----------
    model : estimator
        A fitted :class:`~skorchlite.FineTuneClassifier`, or a fitted
        scikit-learn estimator (a Pipeline of
        :class:`~skorchlite.PretrainedFeatureExtractor` and any head,
        :class:`~skorchlite.LayerVotingClassifier`...). Path and device
        parameters are stored as strings.
    path : str or path-like
        The file (``.skorchlite`` by convention), replaced atomically.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        When part of the model cannot be stored as data: a backbone that is
        a module, a :class:`~skorchlite.FineTuneClassifier` inside another
        estimator, a parameter that is a function.
    sklearn.exceptions.NotFittedError
        When the model is not fitted.
    """
    from sklearn.utils.validation import check_is_fitted

    from .finetune import FineTuneClassifier

    if isinstance(model, FineTuneClassifier):
        from .finetune.model_file import fitted_bytes
        from .finetune.run import check_fitted

        check_fitted(model, "be saved")
        kind, data = "FineTuneClassifier", fitted_bytes(model)
    else:
        as_data = _as_data(model)  # first: what can never be saved, fitted or not
        check_is_fitted(model)
        kind, data = "skops", _skops_bytes(as_data)
    manifest = {
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        "kind": kind,
        "estimator": f"{type(model).__module__}.{type(model).__qualname__}",
        "skorchlite": __version__,
        "versions": _library_versions(),
    }
    path = Path(path)
    write_atomic(path, _archive({_MANIFEST: json.dumps(manifest, indent=1).encode(), _MEMBERS[kind]: data}))
    return path


def load(path: str | os.PathLike, trusted: Sequence[str | type] | None = None) -> Any:
    """Read a model that :func:`save` (or ``FineTuneClassifier.save_weights``) wrote.

    Nothing in the file runs: it is read as data, and only types that are
    trusted become objects. A type that is not is refused before any is
    built, naming it.

    Parameters
    ----------
    path : str or path-like
    trusted : sequence of str or type, default=None
        Types to build beyond the trusted ones (scikit-learn's estimators,
        numpy's arrays, :data:`TRUSTED_TYPES`), by full name (as the error
        names them) or as the type itself. Name only types you reviewed,
        from a file you trust: ``sklearn.tree._tree.Tree`` (random forests,
        decision trees) is one, as skops does not trust a tree's node
        indices, which a crafted file can set to crash ``predict``.

    Returns
    -------
    estimator
        The fitted model. A :class:`~skorchlite.FineTuneClassifier` rebuilds
        its backbone: its pretrained weights must be on this machine.

    Raises
    ------
    TypeError
        When ``trusted`` is not a list of type names or types.
    UntrustedTypesError
        A ``ValueError`` naming the types that are not trusted.
    PickleFileError
        A ``ValueError`` for a pickle, which is never loaded here.
    ValueError
        One line naming the file for anything else: missing, damaged or
        truncated, not a model file, or written by a newer format.
    """
    path, trusted_types = Path(path), _trusted_list(trusted)
    try:
        with open_regular(path) as file:
            data = file.read()
    except OSError as err:
        raise ValueError(f"model file {str(path)!r} cannot be read: {err.strerror or error_cause(err)}.") from None
    if data.startswith(_ZIP_START):
        archive = _open_archive(path, data)
        if _MANIFEST in archive.namelist():
            return _load_archive(path, archive, trusted_types)
    from .finetune import FineTuneClassifier
    from .finetune.model_file import load_fitted
    from .tensorfile import is_tensor_file

    if data.startswith(_ZIP_START) or is_tensor_file(data[:9]):  # a FineTuneClassifier.save_weights file
        return load_fitted(FineTuneClassifier, path, data)
    if data.startswith(_PICKLE_STARTS):
        raise PickleFileError(
            f"{str(path)!r} is a pickle (as joblib.dump writes), which skorchlite.load never reads: loading it can "
            "run any code it holds. Load it with joblib.load only if you trust its source, then skorchlite.save it."
        )
    raise ValueError(f"{str(path)!r} is not a skorchlite model file (written by skorchlite.save).")


# ---------------------------------------------------------------- writing
def _as_data(model: Any) -> Any:
    """``model``, or a copy whose path and device parameters are strings,
    so that the file needs no trust in ``pathlib`` or ``torch`` types.
    Refuses what a skops file cannot hold as data."""
    import torch

    from .finetune import FineTuneClassifier

    params = model.get_params(deep=True) if hasattr(model, "get_params") else {}
    for key, value in [("the model", model), *params.items()]:
        if isinstance(value, FineTuneClassifier):
            raise ValueError(
                f"{key} is a FineTuneClassifier inside a {type(model).__name__}, which skorchlite.save cannot "
                "hold yet: save the FineTuneClassifier alone."
            )
        if hasattr(value, "backbone"):  # an extractor, or another estimator of a backbone
            check_data_backbone(value)

    def plain(value: Any) -> Any:
        if isinstance(value, (os.PathLike, torch.device)):
            return str(value)
        if isinstance(value, tuple):
            return tuple(plain(v) for v in value)
        return value

    changed = {key: plain(value) for key, value in params.items() if plain(value) is not value}
    if not changed:
        return model
    model = copy.deepcopy(model)  # the caller's model keeps its values
    model.set_params(**changed)
    return model


def _skops_bytes(model: Any) -> bytes:
    import skops.io

    try:
        return skops.io.dumps(model)
    except (TypeError, ValueError, AttributeError) as err:  # skops's UnsupportedTypeException is a TypeError
        raise ValueError(f"This {type(model).__name__} cannot be saved as data: {error_cause(err)}") from None


def _library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("scikit-learn", "skops", "torch", "numpy"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:  # informative only
            continue
    return found


def _archive(members: dict[str, bytes]) -> bytes:
    """A zip of ``members``, stored (no decompression to bound when reading), dated 1980 (no clock of the machine)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return buffer.getvalue()


# ---------------------------------------------------------------- reading
def _open_archive(path: Path, data: bytes) -> zipfile.ZipFile:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as err:
        raise ValueError(f"{str(path)!r} is a damaged or truncated model file ({error_cause(err)}).") from None
    # A stored member is no larger than the archive: one that claims more is a
    # decompression bomb or damage, refused before it is read.
    oversized = [info.filename for info in archive.infolist() if info.file_size > len(data)]
    if oversized:
        raise ValueError(f"{str(path)!r} is a damaged model file: member {shown(oversized[0])} claims to be larger.")
    return archive


def _member(path: Path, archive: zipfile.ZipFile, name: str) -> bytes:
    try:
        return archive.read(name)
    except KeyError:
        raise ValueError(f"{str(path)!r} is a damaged model file: it lacks its {name}.") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError) as err:  # CRC, compression
        raise ValueError(f"{str(path)!r} is a damaged or truncated model file ({error_cause(err)}).") from None


def _manifest(path: Path, archive: zipfile.ZipFile) -> dict[str, Any]:
    """The manifest, checked: a format this version reads, and a kind it knows."""
    try:
        manifest = json.loads(_member(path, archive, _MANIFEST))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"{str(path)!r} is a damaged model file: its {_MANIFEST} ({error_cause(err)}).") from None
    if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
        raise ValueError(f"{str(path)!r} is a zip archive, not a skorchlite model file (written by skorchlite.save).")
    version, writer = manifest.get("format_version"), describe_version(manifest.get("skorchlite"))
    if type(version) is not int or not 1 <= version <= _FORMAT_VERSION:
        newer = type(version) is int and version > _FORMAT_VERSION
        raise ValueError(
            f"{str(path)!r} has model file format version {shown(version)}, written by {writer}; skorchlite "
            f"{__version__} reads versions 1 to {_FORMAT_VERSION}"
            + (": upgrade skorchlite to load it." if newer else ".")
        )
    if manifest.get("kind") not in _MEMBERS:
        raise ValueError(f"{str(path)!r} ({writer}) holds a model of kind {shown(manifest.get('kind'))}, unknown here.")
    return manifest


def _load_archive(path: Path, archive: zipfile.ZipFile, trusted: list[str | type]) -> Any:
    kind = _manifest(path, archive)["kind"]
    data = _member(path, archive, _MEMBERS[kind])
    if kind == "FineTuneClassifier":
        from .finetune import FineTuneClassifier
        from .finetune.model_file import load_fitted

        return load_fitted(FineTuneClassifier, f"{path}:{_MEMBERS[kind]}", data)
    return _load_skops(path, data, trusted)


def _trusted_list(trusted: Sequence[str | type] | None) -> list[str | type]:
    """:data:`TRUSTED_TYPES` and the caller's ``trusted``, checked before the file is read."""
    if trusted is None:
        return list(TRUSTED_TYPES)
    items = [trusted] if isinstance(trusted, (str, type)) else trusted  # one name, not its letters
    if not isinstance(items, (list, tuple)) or not all(isinstance(t, (str, type)) for t in items):
        raise TypeError(f"trusted must be a list of type names or types, got {shown(trusted)}.")
    return [*TRUSTED_TYPES, *items]


def _load_skops(path: Path, data: bytes, trusted: list[str | type]) -> Any:
    import skops.io
    from skops.io.exceptions import UntrustedTypesFoundException

    try:
        # skops lists the types before it imports or builds any.
        return skops.io.loads(data, trusted=trusted)
    except UntrustedTypesFoundException:
        names = {t if isinstance(t, str) else f"{t.__module__}.{t.__name__}" for t in trusted}  # as skops names them
        untrusted = [name for name in skops.io.get_untrusted_types(data=data) if name not in names]
    except Exception as err:  # skops raises whatever a damaged schema makes Python raise
        raise ValueError(f"{str(path)!r} is a damaged model file ({error_cause(err)}).") from None
    raise UntrustedTypesError(path, untrusted)
