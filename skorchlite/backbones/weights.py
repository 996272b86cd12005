"""Weights files: read safely (``weights_only=True``, regular files only),
loaded into an architecture, and hashed (files and state dicts)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from ..files import open_regular
from ..memo import ContentMemo
from ..persistence import check_state_dict, error_cause, load_tensors
from .layers import set_submodule

# Weights hashes: a file replaced or rewritten in place, even with its size
# and mtime kept, is hashed again (and so gets a new model and cache namespace).
_DIGESTS = ContentMemo(maxsize=64)


@contextlib.contextmanager
def _open_weights(path: Path) -> Iterator[BinaryIO]:
    """A weights file opened for reading; only regular files are read, so a
    FIFO or device named x.pth is refused instead of blocking or reading
    forever."""
    try:
        with open_regular(path) as file:
            yield file
    except OSError as err:
        what = "does not exist" if isinstance(err, FileNotFoundError) else f"cannot be read: {err.strerror or err}"
        raise OSError(err.errno, f"Weights file {str(path)!r} {what}.") from err


def file_sha256(path: Path) -> str:
    """SHA-256 of a weights file, remembered until the file changes.

    Parameters
    ----------
    path : Path

    Returns
    -------
    str
        64 hex characters.

    Raises
    ------
    OSError
        Naming the file, when it is missing, unreadable or not a regular file.
    """
    with _open_weights(path) as file:
        if (digest := _DIGESTS.get(file)) is not None:
            return digest
        hashed_at = time.time_ns()
        sha = hashlib.sha256()
        for chunk in iter(lambda: file.read(1 << 20), b""):
            sha.update(chunk)
        _DIGESTS.put(file, sha.hexdigest(), hashed_at)
    return sha.hexdigest()


def state_dict_sha256(module: nn.Module) -> str:
    """SHA-256 of a module's state dict: names, dtypes, shapes and values.

    Any change of a weight or buffer changes it, so caches keyed by it
    never serve outputs of other weights.

    Examples
    --------
    >>> a = nn.Linear(2, 2)
    >>> before = state_dict_sha256(a)
    >>> with torch.no_grad():
    ...     _ = a.weight.add_(1)
    >>> state_dict_sha256(a) != before
    True
    """
    sha = hashlib.sha256()
    for key, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        sha.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        sha.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return sha.hexdigest()


def is_weights_path(weights: Any) -> bool:
    """Whether a ``weights`` value names a file rather than a weights member.

    Parameters
    ----------
    weights : object

    Returns
    -------
    bool
        For a path-like, or a string ending in ``.pth``, ``.pt`` or
        ``.bin`` or holding a path separator.

    Examples
    --------
    >>> is_weights_path("IMAGENET1K_V2"), is_weights_path("ft.pth")
    (False, True)
    """
    return isinstance(weights, os.PathLike) or (
        isinstance(weights, str) and (weights.endswith((".pth", ".pt", ".bin")) or os.sep in weights)
    )


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a checkpoint file, read with ``weights_only=True``.

    Understands the common layouts: a plain state dict, ``{"state_dict":
    ...}`` or ``{"model": ...}`` (as training scripts save them), with the
    ``"module."`` prefix of ``DataParallel``/DDP removed.

    Raises
    ------
    ValueError
        One line naming the file, whatever is wrong with it: not readable as
        tensors, or holding something other than a state dict of tensors.
    """
    state: object
    with _open_weights(path) as file:
        if Path(path).suffix == ".safetensors":  # a format of tensors only, as the Hugging Face Hub keeps them
            from safetensors.torch import load as load_safetensors

            try:
                state = load_safetensors(file.read())
            except Exception as err:  # safetensors' own error type (or any other) on damaged bytes
                raise ValueError(
                    f"Weights file {str(path)!r} is not a safetensors file ({error_cause(err)})."
                ) from None
        else:
            state = load_tensors(path, file=file)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    state = check_state_dict(state, path)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_checkpoint(model: nn.Module, path: Path, name: str, *, optional: str | None = None) -> None:
    """Load the checkpoint at ``path`` into ``model`` of architecture ``name``.

    Keys under ``optional`` (the classifier's name) may be missing: a
    checkpoint saved without its head still gives a backbone. A head of
    another width (a fine-tuned file) is rebuilt to the file's width.

    Raises
    ------
    ValueError
        Listing the missing keys, the unexpected keys and the shape
        mismatches, when there are any.
    """
    state = load_state_dict(path)
    if optional is not None and isinstance(state.get(f"{optional}.weight"), torch.Tensor):
        out_features, in_features = state[f"{optional}.weight"].shape
        set_submodule(model, optional, nn.Linear(in_features, out_features))
    own = model.state_dict()
    missing = sorted(k for k in set(own) - set(state) if optional is None or not k.startswith(optional + "."))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:

        def show(keys: list[str]) -> str:
            return f"{len(keys)} ({', '.join(keys[:8])}{', ...' if len(keys) > 8 else ''})"

        raise ValueError(
            f"Weights file {str(path)!r} does not match architecture {name!r}: missing keys "
            f"{show(missing)}; unexpected keys {show(unexpected)}; shape mismatches {show(wrong)}."
        )
    model.load_state_dict(state, strict=False)
