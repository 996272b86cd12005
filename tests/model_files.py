"""The values inside a FineTuneClassifier.save_weights file, for tests that tamper with them:
read from the current format (safetensors), written back in it or as format 2 and earlier
wrote them (``torch.save`` of a dict, ndarrays as tagged lists)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from skorchlite import tensorfile


def payload_of(path: Path) -> dict:
    """What a model file of the current format holds: format, version, skorchlite, params, fitted."""
    return tensorfile.decode_values(Path(path).read_bytes())


def write_payload(payload: dict, path: Path) -> Path:
    """``payload`` as a file of the current format."""
    Path(path).write_bytes(tensorfile.encode_values(payload))
    return Path(path)


def write_torch_payload(payload: dict, path: Path) -> Path:
    """``payload`` as format 2 and earlier wrote it, whatever its ``version`` says."""
    fitted = payload.get("fitted")
    old = {**payload, "fitted": {k: _tagged(v) for k, v in fitted.items()}} if isinstance(fitted, dict) else payload
    torch.save(old, path)
    return Path(path)


def _tagged(value):
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": value.dtype.str}
    return value
