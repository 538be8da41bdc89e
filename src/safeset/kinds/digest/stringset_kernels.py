"""Compiled StringSet lookups: hash, bitmap test, binary search and byte comparison of every query in one pass
over the Arrow buffers (no per-query Python, no intermediate arrays).

numba is imported and the kernels compiled (or loaded from numba's cache) on first use, as for the caption and URL
kernels: a command that never looks a string up does not pay for it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa

from safeset.signals.url_kernels import string_buffers as url_string_buffers

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def string_buffers(strings: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data bytes, offsets as int64 from 0, validity) of a string array: the URL kernels' view of it."""
    buffers = url_string_buffers(strings)
    return buffers.data, buffers.offsets, buffers.valid


@cache
def _kernels() -> Any:
    import numba

    jit = numba.njit(cache=True, nogil=True)

    @jit
    def in_bitmap(bitmap: np.ndarray, key: np.uint64, shift: np.uint64) -> bool:
        slot = np.int64(key >> shift)
        return bool((bitmap[slot >> 3] >> (slot & 7)) & 1)

    @jit
    def first_at_least(keys: np.ndarray, key: np.uint64) -> int:
        """Binary search: the first position of sorted `keys` holding `key` or more."""
        lo, hi = 0, len(keys)
        while lo < hi:
            mid = (lo + hi) >> 1
            if keys[mid] < key:
                lo = mid + 1
            else:
                hi = mid
        return lo

    @jit
    def same_bytes(x: np.ndarray, x_start: int, y: np.ndarray, y_start: int, length: int) -> bool:
        for k in range(length):  # noqa: SIM110 (numba compiles the loop; all() of a generator it does not)
            if x[x_start + k] != y[y_start + k]:
                return False
        return True

    @jit
    def hash_one(data: np.ndarray, start: int, stop: int) -> np.uint64:
        # FNV-style over 8-byte little-endian words (one multiply per word, not per byte: the multiplies form the
        # dependency chain), then a 64-bit finaliser (splitmix64) so the top bits (the bitmap's) are mixed.
        h = _FNV_OFFSET
        j = start
        while j + 8 <= stop:
            word = np.uint64(0)
            for k in range(8):
                word |= np.uint64(data[j + k]) << np.uint64(8 * k)
            h = (h ^ word) * _FNV_PRIME
            h ^= h >> np.uint64(29)
            j += 8
        if j < stop:
            word = np.uint64(0)
            for k in range(stop - j):
                word |= np.uint64(data[j + k]) << np.uint64(8 * k)
            h = (h ^ word) * _FNV_PRIME
        h ^= np.uint64(stop - start) * np.uint64(0xD6E8FEB86659FD93)
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return h ^ (h >> np.uint64(31))

    @jit
    def hash_all(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        n = len(offsets) - 1
        out = np.empty(n, dtype=np.uint64)
        for i in range(n):
            out[i] = hash_one(data, offsets[i], offsets[i + 1])
        return out

    @jit
    def positions(
        qdata: np.ndarray,
        qoffsets: np.ndarray,
        qvalid: np.ndarray,
        bitmap: np.ndarray,
        bits: int,
        hashes: np.ndarray,
        order: np.ndarray,
        sdata: np.ndarray,
        soffsets: np.ndarray,
    ) -> np.ndarray:
        n = len(qoffsets) - 1
        out = np.full(n, -1, dtype=np.int64)
        m = len(hashes)
        shift = np.uint64(64 - bits)
        for i in range(n):
            if not qvalid[i]:
                continue
            start, stop = qoffsets[i], qoffsets[i + 1]
            h = hash_one(qdata, start, stop)
            if not in_bitmap(bitmap, h, shift):
                continue
            lo = first_at_least(hashes, h)
            while lo < m and hashes[lo] == h:  # every stored string with this hash (collisions are rare)
                p = order[lo]
                a, b = soffsets[p], soffsets[p + 1]
                if b - a == stop - start and same_bytes(sdata, a, qdata, start, stop - start):
                    out[i] = p
                    break
                lo += 1
        return out

    @jit
    def digest_positions(
        queries: np.ndarray,
        valid: np.ndarray,
        bitmap: np.ndarray,
        bits: int,
        prefix: np.ndarray,
        digests: np.ndarray,
        directory: np.ndarray,
        directory_bits: int,
    ) -> np.ndarray:
        # Two passes. First every query's 8-byte big-endian prefix and its bitmap test, branch-free (a small,
        # cache-resident table rejects almost every non-member; independent reads the CPU overlaps), keeping the
        # queries that pass. Then for those, the directory bucket of the prefix's top bits -- the few sorted
        # prefixes sharing them, one or two on average -- and a byte comparison of every stored digest with that
        # prefix (one, bar astronomically rare ties): two or three reads, not a binary search's ~20. Flat loops:
        # numba does not inline a helper taking the arrays, and the call would cost more than the lookup.
        n, width = queries.shape
        out = np.full(n, -1, dtype=np.int64)
        shift = np.uint64(64 - bits)
        directory_shift = np.uint64(64 - directory_bits)
        keys = np.empty(n, dtype=np.uint64)
        passed = np.empty(n, dtype=np.int64)
        count = 0
        for i in range(n):
            q = np.uint64(0)
            for k in range(8):
                q = (q << np.uint64(8)) | np.uint64(queries[i, k])
            keys[i] = q
            slot = np.int64(q >> shift)
            passed[count] = i
            count += ((bitmap[slot >> 3] >> (slot & 7)) & 1) & np.uint8(valid[i])
        for c in range(count):
            i = passed[c]
            q = keys[i]
            bucket = np.int64(q >> directory_shift)
            for p in range(directory[bucket], directory[bucket + 1]):
                if prefix[p] != q:
                    continue
                same = True
                for k in range(8, width):
                    if digests[p, k] != queries[i, k]:
                        same = False
                        break
                if same:
                    out[i] = p
                    break
        return out

    @jit
    def verified_positions(
        queries: np.ndarray,
        valid: np.ndarray,
        bitmap: np.ndarray,
        bits: int,
        prefix: np.ndarray,
        digests: np.ndarray,
        directory: np.ndarray,
        directory_bits: int,
        value_of: np.ndarray,
        qdata: np.ndarray,
        qstarts: np.ndarray,
        qends: np.ndarray,
        sdata: np.ndarray,
        soffsets: np.ndarray,
    ) -> np.ndarray:
        # Strings looked up by their digest (computed once per batch and shared with the digest banks); a digest
        # found is then confirmed by comparing the strings, so that a digest collision costs time, never a match.
        out = digest_positions(queries, valid, bitmap, bits, prefix, digests, directory, directory_bits)
        for i in range(len(out)):
            p = out[i]
            if p < 0:
                continue
            out[i] = -1
            value = value_of[p]
            a, b = soffsets[value], soffsets[value + 1]
            start, stop = qstarts[i], qends[i]
            if b - a == stop - start and same_bytes(sdata, a, qdata, start, stop - start):
                out[i] = value
        return out

    return hash_all, positions, digest_positions, verified_positions


def hash_strings(strings: pa.Array) -> np.ndarray:
    """The kernels' 64-bit hash of each value (null slots hash their empty span)."""
    if len(strings) == 0:
        return np.zeros(0, dtype=np.uint64)
    data, offsets, _ = string_buffers(strings)
    return _kernels()[0](data, offsets)


def lookup(
    queries: pa.Array,
    bitmap: np.ndarray,
    bits: int,
    hashes: np.ndarray,
    order: np.ndarray,
    stored: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """Index (in the stored strings, given as (data, offsets)) of each query, -1 where absent or null."""
    qdata, qoffsets, qvalid = string_buffers(queries)
    return lookup_bytes(qdata, qoffsets, qvalid, bitmap, bits, hashes, order, stored)


def lookup_bytes(
    qdata: np.ndarray,
    qoffsets: np.ndarray,
    qvalid: np.ndarray,
    bitmap: np.ndarray,
    bits: int,
    hashes: np.ndarray,
    order: np.ndarray,
    stored: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """`lookup` of queries given as bytes + int64 offsets + validity."""
    return _kernels()[1](qdata, qoffsets, qvalid, bitmap, bits, hashes, order, stored[0], stored[1])


def digest_lookup(
    queries: np.ndarray,
    valid: np.ndarray,
    bitmap: np.ndarray,
    bits: int,
    prefix: np.ndarray,
    digests: np.ndarray,
    directory: np.ndarray,
    directory_bits: int,
) -> np.ndarray:
    """Index (in the sorted `digests`) of each query row (n, width >= 8), -1 where absent or not valid."""
    return _kernels()[2](
        np.ascontiguousarray(queries, dtype=np.uint8),
        np.ascontiguousarray(valid, dtype=np.bool_),
        np.asarray(bitmap),
        bits,
        np.asarray(prefix),
        np.asarray(digests),
        directory,
        directory_bits,
    )


def verified_lookup(
    queries: np.ndarray,
    valid: np.ndarray,
    index: tuple[np.ndarray, int, np.ndarray, np.ndarray, np.ndarray, int],
    value_of: np.ndarray,
    spans: tuple[np.ndarray, np.ndarray, np.ndarray],
    stored: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """Index of each query string among the stored strings, found by its digest (queries (n, width)) in the
    digest index of the stored strings (bitmap, bits, prefix, digests, directory, directory bits), confirmed by
    comparing the query's bytes, data[starts[i]:ends[i]] (`spans`), with the stored string's; -1 where absent."""
    bitmap, bits, prefix, digests, directory, directory_bits = index
    return _kernels()[3](
        np.ascontiguousarray(queries, dtype=np.uint8),
        np.ascontiguousarray(valid, dtype=np.bool_),
        bitmap,
        bits,
        prefix,
        digests,
        directory,
        directory_bits,
        value_of,
        spans[0],
        spans[1],
        spans[2],
        stored[0],
        stored[1],
    )
