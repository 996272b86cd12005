"""The format of one cache entry: a checksummed vector of float32, never pickle.

Layout of an entry file::

    b"SKLEMB1\\n"               8-byte magic
    uint32 little-endian       dim
    blake2b(payload)           16-byte digest
    payload                    dim float32 little-endian values
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np

_MAGIC = b"SKLEMB1\n"
# The widest vector an entry may hold (a read of an entry never asks for more).
MAX_DIM = 1 << 22
_DIM = struct.Struct("<I")
_DIGEST_SIZE = 16
HEADER_SIZE = len(_MAGIC) + _DIM.size + _DIGEST_SIZE


def decode(data: bytes) -> np.ndarray | None:
    """The vector in an entry's bytes, or ``None`` when they are damaged."""
    if len(data) < HEADER_SIZE or not data.startswith(_MAGIC):
        return None
    (stored_dim,) = _DIM.unpack_from(data, len(_MAGIC))
    digest, payload = data[len(_MAGIC) + _DIM.size : HEADER_SIZE], data[HEADER_SIZE:]
    if len(payload) != 4 * stored_dim:
        return None
    if hashlib.blake2b(payload, digest_size=_DIGEST_SIZE).digest() != digest:
        return None
    return np.frombuffer(payload, dtype="<f4").astype(np.float32, copy=False)


def encode(vector: np.ndarray) -> bytes:
    """The bytes of the entry that holds ``vector``, as :func:`decode` reads them.

    Parameters
    ----------
    vector : ndarray of shape (dim,), dtype ``"<f4"``

    Returns
    -------
    bytes

    Examples
    --------
    >>> vector = np.array([1.0, 2.0], dtype="<f4")
    >>> decode(encode(vector))
    array([1., 2.], dtype=float32)
    """
    payload = vector.tobytes()  # C order, whatever the input's strides
    return _MAGIC + _DIM.pack(vector.size) + hashlib.blake2b(payload, digest_size=_DIGEST_SIZE).digest() + payload
