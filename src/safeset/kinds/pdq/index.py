"""Exact Hamming-radius search over 256-bit hashes by multi-index hashing (Norouzi, Punjani & Fleet, 2012).

The 256 bits are cut into m chunks. If two hashes differ in at most r bits and chunk i is probed with up to
f_i bit flips, the pair is found as long as sum(f_i + 1) > r: by pigeonhole some chunk differs in at most f_i
bits. So for each chunk we look up every value within f_i flips of the query's chunk in a direct-addressed
table (offsets into the bank sorted by that chunk), and verify the candidates with a full 256-bit popcount.
The table may be indexed by the value's high bits only ("group bits" k > 0): each entry of the sorted array
then holds its bank row and the value's k low bits, the table is 2^k times smaller and one cache line of
entries serves the probes that differ only in the low bits, at the price of scanning 2^k times more entries.
The cost model picks k; on our machine the scanning costs more than it saves at 1 M-10 M hashes, so k = 0
there, but the format and kernels keep k for memory-tight banks.
Recall is exact by construction: nothing within r is missed. The flips are spread over the chunks at search
time where they cost least (a chunk may even be skipped, f_i = -1, when m > r + 1).

m is tuned to the bank: chunks of about log2(N) bits leave roughly one random candidate per probe, so the
work per query grows far slower than N. Small banks, and radii so large that probing would cost more, are
searched by brute force (also exact). The loops are compiled (`mih_kernels`, numba) over flat arrays.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from numba.typed import List

from safeset.kinds.pdq import kernels as mih_kernels

HASH_BYTES = 32
MAX_CHUNK_BITS = 24  # a direct-addressed table of 2^24 uint32 offsets is 64 MiB per chunk
DEFAULT_RADIUS = 31
# Relative costs per operation of the compiled kernels, fitted to timings on one core (a unit is ~30 ns, one
# cache miss with others in flight): a probed group (a random read of the offset table), an entry read from
# it (a random read of the sorted rows), a candidate (a random read of its 32 bytes, XOR, popcount) and one
# bank hash of brute force (a sequential read, XOR and popcount: memory bandwidth, ~4 ns).
_GROUP_COST, _ENTRY_COST, _CANDIDATE_COST, _FLAT_COST = 1.0, 1.0, 1.5, 0.12
MAX_GROUP_BITS = 6  # low bits of a chunk value kept in the entries; 2^k values share one table slot
# Memory target per bank hash (32-byte hash + 4 bytes a chunk + offset tables); small banks may use the floor.
_MAX_BYTES_PER_HASH, _TABLE_BYTES_FLOOR = 150, 4 << 20


def as_words(hashes: np.ndarray) -> np.ndarray:
    """(n, 32) uint8 -> (n, 4) uint64 view (bit order is irrelevant to Hamming distance)."""
    return np.ascontiguousarray(hashes, dtype=np.uint8).view(np.uint64).reshape(-1, 4)


def chunk_layout(m: int) -> list[tuple[int, int]]:
    """(start bit, width) of m chunks covering 256 bits, widths differing by at most one."""
    base, extra = divmod(256, m)
    widths = [base + 1] * extra + [base] * (m - extra)
    starts = np.concatenate([[0], np.cumsum(widths)[:-1]])
    return [(int(s), int(w)) for s, w in zip(starts, widths, strict=True)]


def chunk_values(hashes: np.ndarray, start: int, width: int) -> np.ndarray:
    """The integer value of bits [start, start+width) of each (n, 32) uint8 hash, most significant first."""
    first = start // 8
    window = np.zeros((len(hashes), 8), dtype=np.uint8)
    take = min(8, HASH_BYTES - first)
    window[:, :take] = hashes[:, first : first + take]
    wide = window.view(">u8").ravel()
    shift = np.uint64(64 - (start % 8) - width)
    return ((wide >> shift) & np.uint64((1 << width) - 1)).astype(np.uint32)


@lru_cache(maxsize=64)
def flip_masks(width: int, max_flips: int) -> np.ndarray:
    """Every width-bit mask with at most max_flips bits set (0 first, then by number of bits)."""
    masks = [0]
    for k in range(1, max_flips + 1):
        masks += [sum(1 << b for b in bits) for bits in itertools.combinations(range(width), k)]
    return np.array(masks, dtype=np.uint32)


def _masks_up_to(width: int, flips: int) -> int:
    return sum(math.comb(width, j) for j in range(flips + 1))


def chunk_cost(n: int, width: int, group_bits: int, flips: int) -> float:
    """Per-query cost of probing one chunk with up to `flips` flips (relative units; 0 if not probed)."""
    if flips < 0:
        return 0.0
    groups = _masks_up_to(width - group_bits, flips)
    entries = groups * n / 2.0 ** (width - group_bits)
    candidates = _masks_up_to(width, flips) * n / 2.0**width
    return groups * _GROUP_COST + entries * _ENTRY_COST + candidates * _CANDIDATE_COST


def choose_group_bits(n: int, width: int, flips: int) -> int:
    """Low bits kept in the entries: the cheapest that leaves room for the row number in 32 bits."""
    room = 32 - max(1, int(n - 1).bit_length())
    options = range(max(0, min(MAX_GROUP_BITS, room, width - 1)) + 1)
    return min(options, key=lambda bits: chunk_cost(n, width, bits, max(flips, 0)))


def chunk_flips(n: int, layout: list[tuple[int, int]], radius: int, group_bits: list[int] | None = None) -> list[int]:
    """Flips per chunk (-1: not probed) with sum(f + 1) = radius + 1, spent where they cost least.

    Greedy on the marginal cost of one more flip in a chunk, which grows with the flips already there.
    """
    bits = group_bits or [choose_group_bits(n, width, radius // len(layout)) for _, width in layout]
    flips = [-1] * len(layout)
    for _ in range(min(radius + 1, sum(width + 1 for _, width in layout))):
        extra = [
            chunk_cost(n, width, g, f + 1) - chunk_cost(n, width, g, f) if f < width else math.inf
            for (_, width), g, f in zip(layout, bits, flips, strict=True)
        ]
        flips[int(np.argmin(extra))] += 1
    return flips


def probing_cost(n: int, layout: list[tuple[int, int]], radius: int, group_bits: list[int] | None = None) -> float:
    """Per-query cost of probing an index with this layout over n random hashes (relative units)."""
    if radius + 1 > sum(width + 1 for _, width in layout):
        return math.inf  # the probes cannot cover this radius
    bits = group_bits or [choose_group_bits(n, width, radius // len(layout)) for _, width in layout]
    flips = chunk_flips(n, layout, radius, bits)
    return sum(chunk_cost(n, w, g, f) for (_, w), g, f in zip(layout, bits, flips, strict=True))


def estimated_cost(n: int, m: int, radius: int) -> float:
    """Per-query cost of an m-chunk index over n random hashes at this radius (relative units)."""
    return probing_cost(n, chunk_layout(m), radius)


def table_bytes(n: int, m: int, radius: int) -> int:
    """Bytes of the offset tables of an m-chunk index."""
    return sum(4 << (width - choose_group_bits(n, width, radius // m)) for _, width in chunk_layout(m))


def table_budget(n: int, m: int) -> int:
    """Bytes the offset tables of an m-chunk index may use, keeping the index near the per-hash target."""
    return max(_TABLE_BYTES_FLOOR, n * (_MAX_BYTES_PER_HASH - HASH_BYTES - 4 * m))


def choose_chunks(n: int, radius: int = DEFAULT_RADIUS) -> int:
    """Number of chunks for a bank of n hashes (0 means brute force is cheaper)."""
    best_m, best = 0, _FLAT_COST * n
    for m in range(math.ceil(256 / MAX_CHUNK_BITS), 65):
        if table_bytes(n, m, radius) > table_budget(n, m):
            continue
        cost = estimated_cost(n, m, radius)
        if cost < best:
            best_m, best = m, cost
    return best_m


def _readonly(array: np.ndarray) -> np.ndarray:
    """A read-only view, so built and memory-mapped indexes share one compiled signature."""
    view = np.asarray(array).view()
    view.setflags(write=False)
    return view


@dataclass
class MultiIndexHash:
    hashes: np.ndarray  # (n, 32) uint8
    words: np.ndarray  # (n, 4) uint64, the same bytes
    layout: list[tuple[int, int]]  # empty: brute force
    orders: list[np.ndarray]  # per chunk: (row << group bits | low bits of the value) by value (uint32)
    offsets: list[np.ndarray]  # per chunk: (2^(width - group bits) + 1) start of each group in `orders` (uint32)
    group_bits: list[int] = field(default_factory=list)  # per chunk; empty: 0 (the format before groups)
    _kernel_tables: tuple[List, List] | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.hashes)

    @classmethod
    def build(
        cls, hashes: np.ndarray, radius: int = DEFAULT_RADIUS, chunks: int | None = None, group_bits: int | None = None
    ) -> MultiIndexHash:
        """Index of (n, 32) uint8 hashes; chunks and group bits are tuned to n and radius unless given."""
        hashes = np.ascontiguousarray(hashes, dtype=np.uint8).reshape(-1, HASH_BYTES)
        if len(hashes) >= 1 << 32:
            raise ValueError("a bank of 2^32 or more hashes does not fit 32-bit row numbers")
        m = choose_chunks(len(hashes), radius) if chunks is None else chunks
        layout = chunk_layout(m) if m else []
        if any(width > MAX_CHUNK_BITS for _, width in layout):
            raise ValueError(f"{m} chunks of {256 // m}+ bits exceed the {MAX_CHUNK_BITS}-bit table limit")
        orders, offsets, chunk_bits = [], [], []
        for start, width in layout:
            bits = choose_group_bits(len(hashes), width, radius // m) if group_bits is None else group_bits
            if not 0 <= bits < width or max(1, len(hashes) - 1) >> (32 - bits):
                raise ValueError(f"{bits} group bits do not fit a {width}-bit chunk and {len(hashes)} rows")
            order, offset = np.empty(len(hashes), np.uint32), np.empty((1 << (width - bits)) + 1, np.uint32)
            mih_kernels.counting_sort(chunk_values(hashes, start, width), bits, order, offset)
            orders.append(order)
            offsets.append(offset)
            chunk_bits.append(bits)
        return cls(hashes, as_words(hashes), layout, orders, offsets, chunk_bits)

    def save(self, folder: Path) -> None:
        np.save(folder / "pdq.npy", self.hashes)
        # Rows of (start, width, group bits); indexes saved before groups have two columns (group bits 0).
        rows = [(s, w, g) for (s, w), g in zip(self.layout, self.chunk_group_bits(), strict=True)]
        np.save(folder / "mih_layout.npy", np.array(rows, dtype=np.int64).reshape(-1, 3))
        for c, (order, offset) in enumerate(zip(self.orders, self.offsets, strict=True)):
            np.save(folder / f"mih_order_{c}.npy", order)
            np.save(folder / f"mih_offsets_{c}.npy", offset)

    @classmethod
    def load(cls, folder: Path) -> MultiIndexHash:
        # Memory-mapped: processes scanning shards in parallel share the pages.
        hashes = np.load(folder / "pdq.npy", mmap_mode="r")
        rows = np.load(folder / "mih_layout.npy")
        layout = [(int(row[0]), int(row[1])) for row in rows]
        group_bits = [int(row[2]) if len(row) > 2 else 0 for row in rows]
        orders = [np.load(folder / f"mih_order_{c}.npy", mmap_mode="r") for c in range(len(layout))]
        offsets = [np.load(folder / f"mih_offsets_{c}.npy", mmap_mode="r") for c in range(len(layout))]
        return cls(hashes, as_words(np.asarray(hashes)), layout, orders, offsets, group_bits)

    def chunk_group_bits(self) -> list[int]:
        return self.group_bits or [0] * len(self.layout)

    def memory_bytes(self) -> int:
        return int(self.hashes.nbytes + sum(o.nbytes for o in self.orders) + sum(o.nbytes for o in self.offsets))

    def search(
        self, queries: np.ndarray, radius: int = DEFAULT_RADIUS, *, probe: bool | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every (query, bank entry) pair within `radius` bits: (query index, bank index, distance), sorted.

        Exact: each pair within the radius is returned once, whatever the chunking. `probe` forces the index
        (True) or brute force (False); by default the cheaper one for this bank and radius.
        """
        queries = np.ascontiguousarray(queries, dtype=np.uint8).reshape(-1, HASH_BYTES)
        if len(queries) == 0 or len(self) == 0 or radius < 0:
            return _empty()
        query_words = as_words(queries)
        bank_words = _readonly(self.words)
        group_bits = self.chunk_group_bits()
        if probe is None:
            probe = probing_cost(len(self), self.layout, radius, group_bits) < _FLAT_COST * len(self)
        if not self.layout or not probe:
            q, b, d = mih_kernels.brute_force(query_words, bank_words, radius)
            return q, b, d  # already in (query, bank) order
        flips = chunk_flips(len(self), self.layout, radius, group_bits)
        # Per chunk, the flips of the value's high bits (the probed groups); the rest may fall in the low bits.
        masks = [
            flip_masks(width - bits, f) if f >= 0 else np.zeros(0, np.uint32)
            for (_, width), bits, f in zip(self.layout, group_bits, flips, strict=True)
        ]
        spare = [f - np.bitwise_count(k).astype(np.int64) for k, f in zip(masks, flips, strict=True)]
        query_chunks = np.stack([chunk_values(queries, s, w) for s, w in self.layout], axis=1)
        orders, offsets = self._tables()
        q, b, d = mih_kernels.probe_search(
            query_words,
            query_chunks,
            _readonly(self.hashes),
            bank_words,
            orders,
            offsets,
            np.array([s for s, _ in self.layout], np.int64),
            np.array([w for _, w in self.layout], np.int64),
            np.array(group_bits, np.int64),
            np.array(flips, np.int64),
            np.concatenate(masks),
            np.concatenate(spare),
            np.concatenate([[0], np.cumsum([len(k) for k in masks])]).astype(np.int64),
            radius,
        )
        # Pairs come grouped by query; order each query's bank entries.
        order = np.lexsort((b, q))
        return q[order], b[order], d[order]

    def _tables(self) -> tuple[List, List]:
        """The per-chunk arrays as numba typed lists, made once per index."""
        if self._kernel_tables is None:
            orders, offsets = List(), List()
            for order, offset in zip(self.orders, self.offsets, strict=True):
                orders.append(_readonly(order))
                offsets.append(_readonly(offset))
            self._kernel_tables = (orders, offsets)
        return self._kernel_tables


def _empty() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int32)
