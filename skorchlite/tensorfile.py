"""Tensors and plain values in one safetensors file, never a pickle.

The tensors are the file's own; the values around them (numbers, strings,
``None``, lists, dicts with keys of any of those types, ndarrays of
numbers or strings) travel as JSON in its metadata, each JSON object a tag
that brings the value back with its type: ``{"dict": [[key, value], ...]}``,
``{"ndarray": [...], "dtype": ..., "shape": [...]}`` and
``{"tensor": name}``. Reading a file builds only those types: nothing in it
names a class or a function.

This module reads and writes bytes; :mod:`skorchlite.persistence` gives
them a file and checks what they hold.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["decode_values", "encode_values", "is_tensor_file"]

# The metadata entry that holds the values' JSON.
_VALUES = "skorchlite"
_HEADER_BYTES = 8
_ARRAY_KINDS = "biufUS"  # bool, int, unsigned, float, str, bytes; object arrays of plain values too
_PLAIN = (type(None), bool, int, float, str)
_WIDEST_STRING = 4096  # bytes of one string of an array, beyond its longest


def is_tensor_file(head: bytes) -> bool:
    """Whether bytes begin as a safetensors file does: a header length (under
    4 GiB: its high bytes zero, which a pickle's frame length never leaves
    before a ``{``), then JSON.

    Parameters
    ----------
    head : bytes
        The file's first bytes (9 or more).

    Returns
    -------
    bool

    Examples
    --------
    >>> is_tensor_file(encode_values({"w": torch.zeros(2)})[:9]), is_tensor_file(b"PK\\x03\\x04 torch zip")
    (True, False)
    """
    return len(head) > _HEADER_BYTES and head[4:_HEADER_BYTES] == bytes(4) and head[_HEADER_BYTES] == ord("{")


def encode_values(values: Any) -> bytes:
    """``values`` as the bytes of a safetensors file.

    Parameters
    ----------
    values : object
        Plain values, ndarrays and tensors, in lists and dicts; tuples are
        stored as lists.

    Returns
    -------
    bytes

    Raises
    ------
    ValueError
        For anything else, naming where it is.
    """
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(values, [], tensors)
    return _save(tensors, {_VALUES: json.dumps(tree, allow_nan=True)})


def _save(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    from safetensors.torch import save  # here: importing skorchlite stays light

    return save(tensors, metadata=metadata)


def decode_values(data: bytes) -> Any:
    """What :func:`encode_values` wrote.

    Parameters
    ----------
    data : bytes

    Returns
    -------
    object
        The values, tensors on the CPU.

    Raises
    ------
    ValueError
        When ``data`` is not such a file (truncated, damaged, or another
        safetensors file), with the cause.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    if len(data) < _HEADER_BYTES:
        raise ValueError(f"it holds {len(data)} bytes, fewer than a safetensors header")
    size = int.from_bytes(data[:_HEADER_BYTES], "little")
    if size > len(data) - _HEADER_BYTES:
        raise ValueError(f"its header says {size} bytes, the file holds {len(data) - _HEADER_BYTES} (truncated?)")
    try:
        header = json.loads(data[_HEADER_BYTES : _HEADER_BYTES + size])
        tensors = load(data)
    except (ValueError, SafetensorError) as err:  # JSON's errors are ValueErrors
        raise ValueError(f"it is not a readable safetensors file ({type(err).__name__}: {err})") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or not isinstance(metadata.get(_VALUES), str):
        raise ValueError("it is a safetensors file without skorchlite's values (another program's weights?)")
    return _decode(json.loads(metadata[_VALUES]), tensors)


def _encode(value: Any, where: list[str], tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, (list, tuple)):
        return [_encode(v, [*where, str(i)], tensors) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {"dict": [[_encode(k, where, tensors), _encode(v, [*where, str(k)], tensors)] for k, v in value.items()]}
    if isinstance(value, torch.Tensor) and value.layout == torch.strided:
        name = "/".join(where)
        while name in tensors:  # keys 1 and "1" side by side
            name += "'"
        # safetensors stores dense, contiguous tensors that share no memory.
        tensors[name] = value.detach().cpu().contiguous().clone()
        return {"tensor": name}
    if isinstance(value, np.ndarray) and (
        value.dtype.kind in _ARRAY_KINDS or (value.dtype.kind == "O" and all(isinstance(v, _PLAIN) for v in value.flat))
    ):
        flat = np.char.decode(value.ravel(), "latin-1") if value.dtype.kind == "S" else value.ravel()
        return {"ndarray": flat.tolist(), "dtype": value.dtype.str, "shape": list(value.shape)}
    raise ValueError(f"{'/'.join(where) or 'the value'} is a {type(value).__name__}, which a data file cannot hold")


def _decode(tree: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(tree, list):
        return [_decode(v, tensors) for v in tree]
    if not isinstance(tree, dict):
        return tree
    if set(tree) == {"dict"} and isinstance(tree["dict"], list):
        return {_key(_decode(k, tensors)): _decode(v, tensors) for k, v in (_pair(item) for item in tree["dict"])}
    if set(tree) == {"tensor"} and isinstance(tree["tensor"], str):
        if tree["tensor"] not in tensors:
            raise ValueError(f"its values name tensor {tree['tensor']!r}, which it does not hold")
        return tensors[tree["tensor"]]
    if set(tree) == {"ndarray", "dtype", "shape"}:
        return _array(tree["ndarray"], tree["dtype"], tree["shape"])
    raise ValueError(f"its values hold an object of keys {sorted(map(str, tree))}, which no value is stored as")


def _pair(item: Any) -> tuple[Any, Any]:
    if not isinstance(item, list) or len(item) != 2:
        raise ValueError("its values hold a dict entry that is not a [key, value] pair")
    return item[0], item[1]


def _key(key: Any) -> Any:
    if not isinstance(key, _PLAIN) or (isinstance(key, float) and math.isnan(key)):
        raise ValueError(f"its values hold a dict key {key!r}, which no saved dict has")
    return key


def _array(flat: Any, dtype: Any, shape: Any) -> np.ndarray:
    if not isinstance(flat, list) or not isinstance(dtype, str) or not isinstance(shape, list):
        raise ValueError("its values hold an array that is not a list, a dtype and a shape")
    kind = np.dtype(dtype)  # a TypeError for a name numpy does not know: damage, as callers take it
    if kind.kind not in _ARRAY_KINDS + "O":
        raise ValueError(f"its values hold an array of dtype {dtype!r}, which no saved array has")
    if kind.kind == "O" and not all(isinstance(v, _PLAIN) for v in flat):
        raise ValueError("its values hold an object array of values that are not plain")
    if kind.kind not in "US":
        return np.asarray(flat, dtype=kind).reshape(shape)
    # Strings: as wide as their longest, then the saved width, which a damaged
    # file could make gigabytes wide.
    array = np.asarray([v.encode("latin-1") for v in flat] if kind.kind == "S" else flat, dtype=kind.kind)
    if kind.itemsize > max(array.itemsize, _WIDEST_STRING):
        raise ValueError(f"its values hold an array of dtype {dtype!r}, wider than its strings")
    return array.astype(kind).reshape(shape)
