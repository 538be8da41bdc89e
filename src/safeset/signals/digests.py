"""Fixed-width binary digests as numpy arrays: hashing image bytes and decoding hex columns, vectorised."""

from __future__ import annotations

import hashlib
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from safeset.signals.url_kernels import string_buffers

DIGEST_SIZES: dict[str, int] = {"md5": 16, "sha1": 20, "sha256": 32}

# ASCII -> nibble value; 255 marks a character that is not a hex digit.
_HEX_TABLE = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX_TABLE[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX_TABLE[_c] = 10 + _i


def hash_blobs(blobs: pa.Array, algorithms: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Digest each non-null binary value with each algorithm; returns {algo: (digests (n,k) uint8, valid)}.

    The loop is per image, but each iteration hashes tens of kilobytes in C, so Python overhead is noise.
    """
    n = len(blobs)
    out = {a: (np.zeros((n, DIGEST_SIZES[a]), dtype=np.uint8), np.zeros(n, dtype=bool)) for a in algorithms}
    constructors = {a: getattr(hashlib, a) for a in algorithms}
    for i, blob in enumerate(blobs.to_pylist()):
        if blob is None:
            continue
        for algo, make in constructors.items():
            digests, valid = out[algo]
            digests[i] = np.frombuffer(make(blob).digest(), dtype=np.uint8)
            valid[i] = True
    return out


@cache
def _hex_kernel() -> Any:
    import numba

    @numba.njit(cache=True, nogil=True)
    def decode(
        data: np.ndarray, offsets: np.ndarray, valid: np.ndarray, size: int, table: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(valid)
        digests = np.zeros((n, size), dtype=np.uint8)
        good = np.zeros(n, dtype=np.bool_)
        for row in range(n):
            start = offsets[row]
            if not valid[row] or offsets[row + 1] - start != 2 * size:
                continue
            ok = True
            for k in range(size):
                high, low = table[data[start + 2 * k]], table[data[start + 2 * k + 1]]
                if high == 255 or low == 255:
                    ok = False
                    break
                digests[row, k] = (high << 4) | low
            if ok:
                good[row] = True
            else:
                digests[row, :] = 0
        return digests, good

    return decode


def hex_to_digests(column: pa.Array, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode a column of hex strings to (digests (n,size) uint8, valid); wrong length or non-hex is invalid.

    One compiled pass over the Arrow buffers (the numpy version below, kept as the tested reference, makes a
    filtered copy, a table gather and two shifts of the whole column)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if len(column) == 0:
        return np.zeros((0, size), dtype=np.uint8), np.zeros(0, dtype=bool)
    source = string_buffers(column)
    return _hex_kernel()(source.data, source.offsets, source.valid, size, _HEX_TABLE)


def hex_to_digests_reference(column: pa.Array, size: int) -> tuple[np.ndarray, np.ndarray]:
    """`hex_to_digests` in numpy: the reference the compiled decoder is tested against."""
    n = len(column)
    digests = np.zeros((n, size), dtype=np.uint8)
    if n == 0:
        return digests, np.zeros(0, dtype=bool)
    column = column.cast(pa.string()) if not pa.types.is_string(column.type) else column
    lengths = pc.fill_null(pc.binary_length(column), 0).to_numpy(zero_copy_only=False)
    valid = lengths == 2 * size
    if not valid.any():
        return digests, valid
    # Rows of the right length, packed contiguously, are decoded in one pass over the bytes.
    chosen = column.filter(pa.array(valid)) if not valid.all() else column
    chosen = pa.concat_arrays([chosen]) if chosen.offset else chosen
    offsets = np.frombuffer(chosen.buffers()[1], dtype=np.int32)[: len(chosen) + 1]
    data = np.frombuffer(chosen.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    nibbles = _HEX_TABLE[data].reshape(len(chosen), 2 * size)
    good = (nibbles != 255).all(axis=1)
    decoded = (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]
    index = np.flatnonzero(valid)
    digests[index] = decoded
    valid[index[~good]] = False
    digests[index[~good]] = 0
    return digests, valid


def digests_to_hex(digests: np.ndarray) -> list[str]:
    return [bytes(row).hex() for row in digests]
