"""Model files that hold data only: no pickle of code is ever loaded.

A model saved with ``joblib.dump`` (or ``pickle``) is a program: loading
it runs whatever it says, so it must never come from an untrusted source.
:meth:`FineTuneClassifier.save_weights <skorchlite.FineTuneClassifier.save_weights>`
writes a file that holds only plain values and tensors: a safetensors file
(:mod:`skorchlite.tensorfile`). Files of earlier formats (``torch.save``
of a dict) and weights files are read with ``torch.load(weights_only=True)``,
which refuses anything else. Any failure to read one, and any content
other than what it should hold, is one ``ValueError`` naming the file.

A model file records its format version and the skorchlite version that
wrote it. Format history:

1. ``format``, ``version``, ``params``, ``fitted`` (skorchlite 0.1.0).
2. adds ``skorchlite``, the version that wrote the file; fitted state that a
   class added since version 1 (:class:`FittedField` ``since``) is required.
3. the same values in a safetensors file, which no Python unpickler reads,
   and fitted state added since version 2 (the fine-tuner's ``multilabel_``)
   (skorchlite 0.3.0).
4. parameters added since version 3 (the fine-tuner's ``layer``), which a
   file of version 3 lacks; every parameter is required from version 3 on,
   each from the version that added it (skorchlite 0.5.0).
5. the fine-tuner's ``head`` and ``voting_head_`` (its per-layer heads'
   weights, a state dict), which older files lack (skorchlite 0.6.0).

A file of an older format loads with the values of the fields and
parameters added since that reproduce the version that wrote it; one of a
newer format fails, naming both versions.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import nn

from .files import open_regular
from .tensorfile import decode_values, encode_values, is_tensor_file
from .versioning import __version__, describe_version, shown

__all__ = [
    "FittedField",
    "NotDataError",
    "check_state_dict",
    "damaged_file",
    "error_cause",
    "load_model_state",
    "load_network_state",
    "load_tensors",
    "check_data_backbone",
    "estimator_bytes",
    "model_state_bytes",
]

_FORMAT_VERSION = 5
# The first format whose files hold every parameter of the class.
_ALL_PARAMS_SINCE = 3
_PLAIN = (type(None), bool, int, float, str)


class NotDataError(ValueError):
    """A file that ``torch.load(weights_only=True)`` cannot read: damaged,
    not a PyTorch file, or a pickle of other objects (such as
    ``joblib.dump`` writes)."""


@dataclass(frozen=True)
class FittedField:
    """One fitted attribute a model file holds, as :func:`load_model_state` checks it.

    Parameters
    ----------
    types : type or tuple of types
        What its value must be once read.
    since : int, default=1
        The format version that added it.
    default : object, default=None
        Its value in files of earlier format versions: the value that
        reproduces the behaviour of the version that wrote them.
    """

    types: type | tuple[type, ...]
    since: int = 1
    default: Any = None


def error_cause(err: BaseException) -> str:
    """An exception as one line: its type and the first line of its message,
    with the next line when the first only announces it (ends in ``:``).

    Examples
    --------
    >>> error_cause(KeyError("x")), error_cause(EOFError())
    ("KeyError: 'x'", 'EOFError')
    >>> error_cause(RuntimeError("Error(s) in loading:\\n\\tsize mismatch for w.\\n\\tmore"))
    'RuntimeError: Error(s) in loading: size mismatch for w.'
    """
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    shown = lines[0] if not lines[0].endswith(":") or len(lines) == 1 else f"{lines[0]} {lines[1]}"
    return f"{type(err).__name__}: {shown}"


@contextlib.contextmanager
def damaged_file(path: str | os.PathLike, kind: str) -> Iterator[None]:
    """Turn what a model file's values raise when they are not what they
    should be (a wrong type, a missing key) into one line naming the file.

    Parameters
    ----------
    path : str or path-like
    kind : str
        The estimator the file should hold, as the error names it.

    Raises
    ------
    ValueError
        For a ``TypeError``, ``ValueError``, ``KeyError``, ``IndexError`` or
        ``AttributeError`` inside the block.
    """
    try:
        yield
    except NotDataError:
        raise  # another file's, which it names (a backbone's weights the block read)
    except (TypeError, ValueError, LookupError, AttributeError) as err:
        raise ValueError(f"{str(path)!r} is a damaged {kind} weights file ({error_cause(err)}).") from None


def check_state_dict(state: Any, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """``state`` if it is a state dict (names to tensors), else one line naming the file.

    Parameters
    ----------
    state : object
        What a weights file holds.
    path : str or path-like
        The file, as the error names it.

    Returns
    -------
    dict of str to torch.Tensor

    Raises
    ------
    ValueError
        When ``state`` is not a dict, or a key is not a string, or a value not a tensor.
    """
    if not isinstance(state, dict):
        raise ValueError(f"{str(path)!r} does not hold a state dict (found {type(state).__name__}).")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ValueError(
                f"{str(path)!r} does not hold a state dict of tensors: entry {shown(key)} is a {type(value).__name__}."
            )
        if value.layout != torch.strided or value.is_meta:
            kind = "a meta tensor (no values)" if value.is_meta else f"a {value.layout} tensor"
            raise ValueError(f"{str(path)!r} does not hold a network's weights: entry {shown(key)} is {kind}.")
    return state


def load_tensors(path: str | os.PathLike, what: str = "Weights file", *, file: BinaryIO | None = None) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with one clear
    error naming the file when it is not a file of tensors and plain values.

    Parameters
    ----------
    path : str or path-like
    what : str, default="Weights file"
        How the error names the file.
    file : binary file, default=None
        ``path`` already opened (e.g. by :func:`skorchlite.files.open_regular`).

    Returns
    -------
    object
        What the file holds (tensors, dicts, lists, numbers, strings).

    Raises
    ------
    NotDataError
        A ``ValueError``, whatever torch raised: when the file is damaged,
        is not a PyTorch file, or holds other objects (whose loading could
        run code).
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # On a pickle of protocol 3+ (joblib's), which is refused anyway.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            # torch's notes while reading (validating sparse tensors...): what the file holds is checked after.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.")
            return torch.load(path if file is None else file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message advises weights_only=False, which would run
        # whatever code the file holds: not advice to pass on.
        raise NotDataError(
            f"{what} {str(path)!r} is not a file of tensors: it is not a PyTorch file, or it holds "
            "other Python objects, which are never loaded because loading them could run code. "
            "Save weights with torch.save(model.state_dict(), path), a model with its save_weights()."
        ) from None
    except Exception as err:  # torch's unpickler fails on foreign bytes with any error (KeyError, IndexError...)
        raise NotDataError(f"{what} {str(path)!r} is damaged or not a PyTorch file ({error_cause(err)}).") from None


def model_state_bytes(kind: str, params: Mapping[str, Any], fitted: Mapping[str, Any]) -> bytes:
    """An estimator's parameters and fitted state as the bytes of a data-only file.

    Parameters
    ----------
    kind : str
        The estimator's class name, checked on load.
    params : mapping
        ``get_params(deep=False)``; values must be plain (numbers, strings,
        None, lists and dicts of them); devices and paths become strings.
    fitted : mapping
        Learned state: plain values, ndarrays of numbers or strings, and
        state dicts of tensors.

    Returns
    -------
    bytes
        A safetensors file (:mod:`skorchlite.tensorfile`).

    Raises
    ------
    ValueError
        When a parameter cannot be stored as data (a callable, say).
    """
    payload = {
        "format": f"skorchlite.{kind}",
        "version": _FORMAT_VERSION,
        "skorchlite": __version__,
        "params": {name: _plain(value, name) for name, value in params.items()},
        "fitted": {name: _storable(value, name) for name, value in fitted.items()},
    }
    return encode_values(payload)


def check_data_backbone(estimator: Any) -> None:
    """Refuse an estimator whose backbone is a module: a data-only file cannot hold it.

    Parameters
    ----------
    estimator : BaseEstimator
        An estimator that takes a ``backbone``.

    Raises
    ------
    ValueError
        Naming the module's class and what to do instead.
    """
    if isinstance(estimator.backbone, nn.Module):
        raise ValueError(
            f"backbone is a module ({type(estimator.backbone).__name__}), which a data-only file cannot hold; "
            "pickle the estimator (joblib.dump) instead, or save the module's state dict and pass "
            "backbone=(architecture name, checkpoint path)."
        )


def estimator_bytes(estimator: Any, fitted: Mapping[str, Any]) -> bytes:
    """An estimator that takes a ``backbone``: its parameters and ``fitted`` state as a data-only file's bytes.

    Parameters
    ----------
    estimator : BaseEstimator
        Its ``get_params(deep=False)`` are stored; a ``preprocessing`` that
        is a :class:`~skorchlite.backbones.Preprocessing` as its dict.
    fitted : mapping
        Learned state, as :func:`model_state_bytes` takes it.

    Returns
    -------
    bytes

    Raises
    ------
    ValueError
        When the backbone is a module, or another parameter is not plain data.
    """
    check_data_backbone(estimator)
    params = estimator.get_params(deep=False)
    if is_dataclass(params.get("preprocessing")):  # a Preprocessing, which this module cannot import (a cycle)
        params["preprocessing"] = asdict(params["preprocessing"])
    return model_state_bytes(type(estimator).__name__, params, fitted)


def load_network_state(model: nn.Module, state: Mapping[str, Any], path: str | os.PathLike, backbone: str) -> None:
    """``model.load_state_dict(state)``, with one clear error when the file's weights do not fit.

    Parameters
    ----------
    model : torch.nn.Module
        The network rebuilt from the file's parameters.
    state : mapping
        The state dict read from ``path``.
    path : str or path-like
        The file, as the error names it.
    backbone : str
        The backbone, as the error names it.

    Raises
    ------
    ValueError
        When the names or shapes of ``state`` are not the network's.
    """
    state = check_state_dict(state, path)
    mismatch = _mismatch(model.state_dict(), state)
    if mismatch:
        raise ValueError(f"The weights in {str(path)!r} do not fit backbone {backbone}: {mismatch}.")
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(
                f"{str(path)!r} holds non-finite weights (NaN or infinity, first in {shown(name)}): the "
                "network would predict nothing; it is damaged, or its training diverged."
            )
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise ValueError(f"The weights in {str(path)!r} do not fit backbone {backbone}: {error_cause(err)}") from None


def _mismatch(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> str:
    """How ``state`` differs from the network's state dict ``expected``, in
    one clause per kind (how many, and the first); empty when it fits."""
    missing = [name for name in expected if name not in state]
    unexpected = [name for name in state if name not in expected]
    wrong = [name for name in expected if name in state and tuple(state[name].shape) != tuple(expected[name].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (first {shown(missing[0])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (first {shown(unexpected[0])})")
    if wrong:
        first = wrong[0]
        parts.append(
            f"{len(wrong)} of another shape (first {shown(first)}: {list(state[first].shape)} in the file, "
            f"{list(expected[first].shape)} in the network)"
        )
    return f"{'; '.join(parts)} of {len(expected)} tensors" if parts else ""


def load_model_state(
    path: str | os.PathLike,
    kind: str,
    param_names: list[str],
    fields: Mapping[str, FittedField],
    data: bytes | None = None,
    params_since: Mapping[str, int] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read what :func:`model_state_bytes` wrote, or an older format, without unpickling code.

    Parameters
    ----------
    path : str or path-like
        The file; with ``data``, only how errors name it.
    kind : str
        The class name the file must name.
    param_names : list of str
        The class's parameters; the file may not hold others.
    fields : mapping of str to FittedField
        The fitted state the file must hold; a file of a format older than
        a field's ``since`` gets its ``default``.
    data : bytes or None, default=None
        The file's bytes, when they were read already (from inside a
        :func:`skorchlite.save` file, say).
    params_since : mapping of str to int or None, default=None
        The format version that added each parameter added after version 3;
        a file of an earlier format lacks it, and the caller gives it the value
        that behaves as the version that wrote the file.

    Returns
    -------
    params, fitted : dict
        As saved (the parameters the file's format lacks left out); ndarrays
        come back as ndarrays; ``fitted`` holds exactly ``fields``.

    Raises
    ------
    ValueError
        One line naming the file: when it is not a readable model file of
        ``kind``, or was written by a format this version does not read
        (naming the skorchlite version that wrote it).
    """
    path = Path(path)
    payload = _read_payload(path, data)
    if not isinstance(payload, dict) or payload.get("format") != f"skorchlite.{kind}":
        raise ValueError(f"{str(path)!r} is not a {kind} weights file (written by {kind}.save_weights).")
    version = payload.get("version")
    recorded = payload.get("skorchlite")
    # Format 1 did not record the version that wrote it: skorchlite 0.1.0 or earlier.
    written_by = describe_version(recorded) if recorded is not None or version == 1 else "an unknown skorchlite"
    if type(version) is not int or not 1 <= version <= _FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} has model format version {version!r}, written by {written_by}; skorchlite {__version__} "
            f"reads versions 1 to {_FORMAT_VERSION}"
            + (": upgrade skorchlite to load it." if type(version) is int and version > _FORMAT_VERSION else ".")
        )
    params, stored = payload.get("params"), payload.get("fitted")
    if not isinstance(params, dict) or not isinstance(stored, dict):
        raise ValueError(f"{str(path)!r} is a damaged {kind} weights file (no parameters or no fitted state).")
    unknown = sorted(map(str, set(params) - set(param_names)))
    if unknown:
        raise ValueError(f"{str(path)!r} ({written_by}) holds parameters {unknown} that {kind} does not have.")
    # A file holds every parameter (from format 3 on) and fitted field of its
    # format: one missing is damage, not a default (today's may predict otherwise).
    since = {name: max(_ALL_PARAMS_SINCE, (params_since or {}).get(name, 0)) for name in param_names}
    lacking = [f"parameter {name}" for name in param_names if name not in params and version >= since[name]]
    lacking += [f"fitted {name}" for name, field in fields.items() if name not in stored and version >= field.since]
    if lacking:
        raise ValueError(
            f"{str(path)!r} is a damaged {kind} weights file: it lacks {lacking[0]}"
            + (f" (and {len(lacking) - 1} more)" if len(lacking) > 1 else "")
            + "."
        )
    fitted = {}
    with damaged_file(path, kind):
        for name, field in fields.items():
            fitted[name] = _restored(stored[name]) if name in stored else field.default
            types = field.types if isinstance(field.types, tuple) else (field.types,)
            # bool is an int to isinstance, never to the field: best_epoch_=True is damage.
            if not isinstance(fitted[name], types) or (isinstance(fitted[name], bool) and bool not in types):
                raise TypeError(f"fitted {name} is a {type(fitted[name]).__name__}")
    return params, fitted


def _read_payload(path: Path, data: bytes | None) -> Any:
    """What a model file holds: a safetensors file's values (format 3), or
    what ``torch.load(weights_only=True)`` reads from an older one."""
    if data is None:
        try:
            with open_regular(path) as file:
                data = file.read()
        except OSError:
            raise ValueError(f"model file {str(path)!r} does not exist or is not a regular file.") from None
    if not is_tensor_file(data[:9]):
        return load_tensors(path, "Model file", file=io.BytesIO(data))
    try:
        return decode_values(data)
    except Exception as err:  # whatever numpy or JSON raise on foreign bytes
        cause = str(err) if type(err) is ValueError else error_cause(err)
        raise NotDataError(f"Model file {str(path)!r} is damaged or not a skorchlite model file: {cause}.") from None


def _plain(value: Any, name: str) -> Any:
    """A parameter value as plain data, or a clear error."""
    if isinstance(value, (torch.device, os.PathLike)):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, name) for v in value]
    if isinstance(value, dict):
        return {_plain(k, name): _plain(v, name) for k, v in value.items()}
    raise ValueError(
        f"Parameter {name}={value!r} cannot be stored as data; a weights file holds only numbers, "
        f"strings and lists or dicts of them. Set {name} to such a value (set_params) before saving."
    )


def _storable(value: Any, name: str) -> Any:
    """Fitted state as data: ndarrays of numbers or strings, state dicts, plain values."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufUS" and not (value.dtype == object and _all_plain(value)):
            raise ValueError(f"Fitted attribute {name} of dtype {value.dtype} cannot be stored as data.")
        return value
    if isinstance(value, Mapping) and all(isinstance(v, torch.Tensor) for v in value.values()):
        return {str(k): v.detach().cpu() for k, v in value.items()}
    return _plain(value, name)


def _all_plain(array: np.ndarray) -> bool:
    return all(isinstance(v, _PLAIN) for v in array.ravel())


def _restored(value: Any) -> Any:
    """A fitted value as read: format 2 and earlier (``torch.save``) stored ndarrays as tagged lists."""
    if isinstance(value, dict) and set(value) == {"__ndarray__", "dtype"}:
        return np.asarray(value["__ndarray__"], dtype=np.dtype(value["dtype"]))
    return value
