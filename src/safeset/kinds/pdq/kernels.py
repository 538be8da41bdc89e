"""Compiled (numba) inner loops of the multi-index Hamming search in `mih.py`.

The search is bound by memory latency: at 10 M bank hashes each query makes a few thousand random reads into
tables far larger than the caches. The probe kernel is therefore written in phases whose loads do not depend
on each other (all probe ranges of a chunk, then all candidate positions, then all candidate hashes), so the
CPU keeps many cache misses in flight instead of waiting for each one behind a mispredicted branch.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic
from numba.typed import List


@intrinsic
def _popcount64(typingctx, value):  # type: ignore[no-untyped-def]
    """Hardware popcount of a uint64 (llvm.ctpop), which numba does not expose."""
    signature = types.uint64(types.uint64)

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        return builder.ctpop(args[0])

    return signature, codegen


@njit(cache=True, nogil=True, inline="always")
def _distance(bank_words: np.ndarray, row: int, q0: np.uint64, q1: np.uint64, q2: np.uint64, q3: np.uint64) -> int:
    return int(
        _popcount64(bank_words[row, 0] ^ q0)
        + _popcount64(bank_words[row, 1] ^ q1)
        + _popcount64(bank_words[row, 2] ^ q2)
        + _popcount64(bank_words[row, 3] ^ q3)
    )


@njit(cache=True, nogil=True)
def _chunk_value(hash_bytes: np.ndarray, row: int, start: int, width: int) -> np.uint64:
    """Bits [start, start + width) of one hash, most significant first (as `mih.chunk_values`)."""
    first = start // 8
    window = np.uint64(0)
    for k in range(8):
        byte = np.uint64(hash_bytes[row, first + k]) if first + k < 32 else np.uint64(0)
        window = (window << np.uint64(8)) | byte
    shift = np.uint64(64 - (start % 8) - width)
    return (window >> shift) & np.uint64((1 << width) - 1)


@njit(cache=True, nogil=True)
def _grow(array: np.ndarray, needed: int) -> np.ndarray:
    if needed <= len(array):
        return array
    bigger = np.empty(max(needed, 2 * len(array)), array.dtype)
    bigger[: len(array)] = array
    return bigger


@njit(cache=True, nogil=True)
def _scan_query(
    bank_words: np.ndarray,
    query_words: np.ndarray,
    qi: int,
    radius: int,
    out_q: np.ndarray,
    out_b: np.ndarray,
    out_d: np.ndarray,
    found: int,
) -> int:
    """Brute force for one query into the output from `found`; -1 if the output is too small.

    Hot loops live in functions of their own that never reassign an array: numba then keeps the array
    pointers in registers (a loop that may grow its output ran 6x slower).
    """
    q0, q1, q2, q3 = query_words[qi, 0], query_words[qi, 1], query_words[qi, 2], query_words[qi, 3]
    for row in range(bank_words.shape[0]):
        d = _distance(bank_words, row, q0, q1, q2, q3)
        if d <= radius:
            if found == len(out_q):
                return -1
            out_q[found], out_b[found], out_d[found] = qi, row, d
            found += 1
    return found


@njit(cache=True, nogil=True)
def brute_force(
    query_words: np.ndarray, bank_words: np.ndarray, radius: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (query, bank, distance) within radius by a sequential scan, in (query, bank) order."""
    out_q = np.empty(1024, np.int64)
    out_b = np.empty(1024, np.int64)
    out_d = np.empty(1024, np.int32)
    found = 0
    qi = 0
    while qi < query_words.shape[0]:
        after = _scan_query(bank_words, query_words, qi, radius, out_q, out_b, out_d, found)
        if after < 0:  # output full: grow it and redo this query
            bigger = 2 * len(out_q)
            out_q, out_b, out_d = _grow(out_q, bigger), _grow(out_b, bigger), _grow(out_d, bigger)
            continue
        found = after
        qi += 1
    return out_q[:found], out_b[:found], out_d[:found]


@njit(cache=True, nogil=True)
def _probe_ranges(
    chunk_row: np.ndarray,
    group_bits: np.ndarray,
    offsets: List,
    flips: np.ndarray,
    masks: np.ndarray,
    mask_begin: np.ndarray,
    begin: np.ndarray,
    end: np.ndarray,
) -> int:
    """Phase 1: the entries [begin, end) of every probed group of one query, all chunks; returns their count.

    The loads are independent of each other, so many cache misses are in flight at once.
    """
    total = 0
    for c in range(len(flips)):
        if flips[c] < 0:
            continue
        offset = offsets[c]
        group = chunk_row[c] >> group_bits[c]
        for j in range(mask_begin[c], mask_begin[c + 1]):
            probe = group ^ masks[j]
            begin[j] = offset[probe]
            end[j] = offset[probe + 1]
            total += end[j] - begin[j]
    return total


@njit(cache=True, nogil=True)
def _gather_and_verify(
    query_words: np.ndarray,
    query_chunks: np.ndarray,
    qi: int,
    bank_bytes: np.ndarray,
    bank_words: np.ndarray,
    orders: List,
    starts: np.ndarray,
    widths: np.ndarray,
    group_bits: np.ndarray,
    flips: np.ndarray,
    mask_spare: np.ndarray,
    mask_begin: np.ndarray,
    begin: np.ndarray,
    end: np.ndarray,
    radius: int,
    candidates: np.ndarray,
    candidate_chunk: np.ndarray,
    distances: np.ndarray,
    out_q: np.ndarray,
    out_b: np.ndarray,
    out_d: np.ndarray,
    found: int,
) -> int:
    """Phases 2 and 3 for one query (buffers already large enough); returns the new output length."""
    kept = 0
    for c in range(len(flips)):
        if flips[c] < 0:
            continue
        # Three passes, so that no cache miss waits behind another: list the entry positions of the probed
        # groups (L1 only), read the entries (independent loads), then keep those whose low bits are close
        # enough to the query's (L1 only, branch-free).
        count = kept
        for j in range(mask_begin[c], mask_begin[c + 1]):
            for k in range(begin[j], end[j]):
                candidates[count] = k
                distances[count] = mask_spare[j]  # flips left for the low bits; the distance comes later
                count += 1
        order = orders[c]
        if group_bits[c] == 0:  # every entry read is a candidate
            for t in range(kept, count):
                candidates[t] = order[candidates[t]]
                candidate_chunk[t] = c
            kept = count
            continue
        for t in range(kept, count):
            candidates[t] = order[candidates[t]]
        low_bits = np.uint32(group_bits[c])
        low_mask = np.uint32((1 << group_bits[c]) - 1)
        query_low = np.uint32(query_chunks[qi, c]) & low_mask
        for t in range(kept, count):
            entry = np.uint32(candidates[t])
            candidates[kept] = entry >> low_bits
            candidate_chunk[kept] = c
            kept += _popcount64(np.uint64((entry ^ query_low) & low_mask)) <= distances[t]
    count = kept
    q0, q1, q2, q3 = query_words[qi, 0], query_words[qi, 1], query_words[qi, 2], query_words[qi, 3]
    for t in range(count):
        distances[t] = _distance(bank_words, candidates[t], q0, q1, q2, q3)
    for t in range(count):
        if distances[t] > radius:
            continue
        row = candidates[t]
        reached_earlier = False
        for c in range(candidate_chunk[t]):
            if flips[c] < 0:
                continue
            differing = _chunk_value(bank_bytes, row, starts[c], widths[c]) ^ np.uint64(query_chunks[qi, c])
            if _popcount64(differing) <= flips[c]:
                reached_earlier = True
                break
        if not reached_earlier:
            out_q[found], out_b[found], out_d[found] = qi, row, distances[t]
            found += 1
    return found


@njit(cache=True, nogil=True)
def probe_search(
    query_words: np.ndarray,  # (q, 4) uint64
    query_chunks: np.ndarray,  # (q, m) uint32: each query's value of each chunk
    bank_bytes: np.ndarray,  # (n, 32) uint8
    bank_words: np.ndarray,  # (n, 4) uint64, the same bytes
    orders: List,  # per chunk: (n,) uint32 entries (row << group bits | low bits of the value), by value
    offsets: List,  # per chunk: (2^(width - group bits) + 1,) uint32 start of each group in its order
    starts: np.ndarray,  # (m,) int64 first bit of each chunk
    widths: np.ndarray,  # (m,) int64
    group_bits: np.ndarray,  # (m,) int64 low bits of the value kept in the entries rather than the table
    flips: np.ndarray,  # (m,) int64 bit flips probed per chunk; -1: chunk not probed
    masks: np.ndarray,  # flat uint32: per chunk, its flip masks of the high bits (0 first)
    mask_spare: np.ndarray,  # flat int64: per mask, the flips left for the low bits
    mask_begin: np.ndarray,  # (m + 1,) int64 each chunk's slice of `masks`
    radius: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (query, bank, distance) within radius, each pair once, grouped by query.

    A pair is reported from the first chunk whose probes reach it; later chunks that also reach it skip it,
    which keeps the output free of duplicates without a sort.
    """
    begin = np.empty(len(masks), np.int64)
    end = np.empty(len(masks), np.int64)
    candidates = np.empty(4096, np.int64)
    candidate_chunk = np.empty(4096, np.int64)
    distances = np.empty(4096, np.int32)
    out_q = np.empty(1024, np.int64)
    out_b = np.empty(1024, np.int64)
    out_d = np.empty(1024, np.int32)
    found = 0
    for qi in range(query_words.shape[0]):
        total = _probe_ranges(query_chunks[qi], group_bits, offsets, flips, masks, mask_begin, begin, end)
        if total + 1 > len(candidates):  # +1: the branch-free scan writes one slot past the kept ones
            candidates, candidate_chunk = _grow(candidates, total + 1), _grow(candidate_chunk, total + 1)
            distances = _grow(distances, total + 1)
        if found + total > len(out_q):
            out_q, out_b, out_d = _grow(out_q, found + total), _grow(out_b, found + total), _grow(out_d, found + total)
        found = _gather_and_verify(
            query_words,
            query_chunks,
            qi,
            bank_bytes,
            bank_words,
            orders,
            starts,
            widths,
            group_bits,
            flips,
            mask_spare,
            mask_begin,
            begin,
            end,
            radius,
            candidates,
            candidate_chunk,
            distances,
            out_q,
            out_b,
            out_d,
            found,
        )
    return out_q[:found], out_b[:found], out_d[:found]


@njit(cache=True, nogil=True)
def counting_sort(values: np.ndarray, group_bits: int, order: np.ndarray, offsets: np.ndarray) -> None:
    """Fill `order` with entries (row << group_bits | low bits of the value) sorted by group (= value >>
    group_bits, stable) and `offsets` with each group's start. One pass, no comparison sort.

    The caller allocates both with numpy, whose large arrays get transparent huge pages: random probes into
    them then rarely miss the TLB.
    """
    low_mask = np.uint32((1 << group_bits) - 1)
    offsets[:] = 0
    for v in values:
        offsets[(v >> group_bits) + 1] += 1
    for k in range(len(offsets) - 1):
        offsets[k + 1] += offsets[k]
    cursor = offsets[:-1].copy()
    for row in range(len(values)):
        group = values[row] >> group_bits
        order[cursor[group]] = (np.uint32(row) << np.uint32(group_bits)) | (values[row] & low_mask)
        cursor[group] += 1
