"""Model files that hold data only: no pickle of code is ever loaded.

A model saved with ``joblib.dump`` (or ``pickle``) is a program: loading
it runs whatever it says, so it must never come from an untrusted source.
:meth:`FineTuneClassifier.save_weights <skorchlite.FineTuneClassifier.save_weights>`
writes a file that holds only plain values and tensors (``torch.save`` of
a dict), and every file here is read with ``torch.load(weights_only=True)``,
which refuses anything else.
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import nn

from .files import write_atomic

__all__ = ["load_model_state", "load_network_state", "load_tensors", "save_estimator", "save_model_state"]

_FORMAT_VERSION = 1
_PLAIN = (type(None), bool, int, float, str)


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
    ValueError
        When the file is damaged, is not a PyTorch file, or holds other
        objects (whose loading could run code).
    """
    path = Path(path)
    try:
        return torch.load(path if file is None else file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message advises weights_only=False, which would run
        # whatever code the file holds: not advice to pass on.
        raise ValueError(
            f"{what} {str(path)!r} is not a file of tensors: it is not a PyTorch file, or it holds "
            "other Python objects, which are never loaded because loading them could run code. "
            "Save weights with torch.save(model.state_dict(), path)."
        ) from None
    except (RuntimeError, EOFError, ValueError) as err:
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"{what} {str(path)!r} is damaged or not a PyTorch file ({first_line}).") from None


def save_model_state(path: str | os.PathLike, kind: str, params: Mapping[str, Any], fitted: Mapping[str, Any]) -> Path:
    """Write an estimator's parameters and fitted state as data only.

    Parameters
    ----------
    path : str or path-like
        The file (``torch.save`` format), replaced atomically.
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
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        When a parameter cannot be stored as data (a callable, say).
    """
    path = Path(path)
    payload = {
        "format": f"skorchlite.{kind}",
        "version": _FORMAT_VERSION,
        "params": {name: _plain(value, name) for name, value in params.items()},
        "fitted": {name: _storable(value, name) for name, value in fitted.items()},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_atomic(path, buffer.getvalue())
    return path


def save_estimator(path: str | os.PathLike, estimator: Any, fitted: Mapping[str, Any]) -> Path:
    """Write an estimator that takes a ``backbone``: its parameters and ``fitted`` state as data only.

    Parameters
    ----------
    path : str or path-like
        The file, replaced atomically.
    estimator : BaseEstimator
        Its ``get_params(deep=False)`` are stored; a ``preprocessing`` that
        is a :class:`~skorchlite.backbones.Preprocessing` as its dict.
    fitted : mapping
        Learned state, as :func:`save_model_state` takes it.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        When the backbone is a module, or another parameter is not plain data.
    """
    if isinstance(estimator.backbone, nn.Module):
        raise ValueError(
            f"backbone is a module ({type(estimator.backbone).__name__}), which a data-only file cannot hold; "
            "pickle the estimator (joblib.dump) instead, or save the module's state dict and pass "
            "backbone=(architecture name, checkpoint path)."
        )
    params = estimator.get_params(deep=False)
    if is_dataclass(params.get("preprocessing")):  # a Preprocessing, which this module cannot import (a cycle)
        params["preprocessing"] = asdict(params["preprocessing"])
    return save_model_state(path, type(estimator).__name__, params, fitted)


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
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        first_line = str(err).strip().splitlines()[0]
        raise ValueError(f"The weights in {str(path)!r} do not fit backbone {backbone}: {first_line}") from None


def load_model_state(
    path: str | os.PathLike, kind: str, param_names: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read what :func:`save_model_state` wrote, without unpickling code.

    Parameters
    ----------
    path : str or path-like
    kind : str
        The class name the file must name.
    param_names : list of str
        The class's parameters; the file may not hold others.

    Returns
    -------
    params, fitted : dict
        As saved; ndarrays come back as ndarrays.

    Raises
    ------
    ValueError
        When the file is not a readable model file of ``kind``.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"model file {str(path)!r} does not exist or is not a regular file.")
    payload = load_tensors(path, "Model file")
    expected = f"skorchlite.{kind}"
    if not isinstance(payload, dict) or payload.get("format") != expected:
        raise ValueError(f"{str(path)!r} is not a {kind} weights file (written by {kind}.save_weights).")
    if payload.get("version") != _FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} has format version {payload.get('version')!r}; this skorchlite reads version {_FORMAT_VERSION}."
        )
    params, fitted = payload.get("params"), payload.get("fitted")
    if not isinstance(params, dict) or not isinstance(fitted, dict):
        raise ValueError(f"{str(path)!r} is a damaged {kind} weights file (no parameters or no fitted state).")
    unknown = sorted(set(params) - set(param_names))
    if unknown:
        raise ValueError(f"{str(path)!r} holds parameters {unknown} that {kind} does not have.")
    try:
        return params, {name: _restored(value) for name, value in fitted.items()}
    except (TypeError, ValueError) as err:
        raise ValueError(f"{str(path)!r} is a damaged {kind} weights file ({err}).") from None


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
    """Fitted state as data: ndarrays become tagged lists, which
    ``weights_only`` loading accepts (it refuses numpy objects)."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufUS" and not (value.dtype == object and _all_plain(value)):
            raise ValueError(f"Fitted attribute {name} of dtype {value.dtype} cannot be stored as data.")
        return {"__ndarray__": value.tolist(), "dtype": value.dtype.str}
    if isinstance(value, Mapping) and all(isinstance(v, torch.Tensor) for v in value.values()):
        return {str(k): v.detach().cpu() for k, v in value.items()}
    return _plain(value, name)


def _all_plain(array: np.ndarray) -> bool:
    return all(isinstance(v, _PLAIN) for v in array.ravel())


def _restored(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"__ndarray__", "dtype"}:
        return np.asarray(value["__ndarray__"], dtype=np.dtype(value["dtype"]))
    return value
