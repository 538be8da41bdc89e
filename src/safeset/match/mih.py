"""Exact Hamming-radius search over 256-bit hashes by multi-index hashing (Norouzi, Punjani & Fleet, 2012).

The 256 bits are cut into m chunks. If two hashes differ in at most r bits, by pigeonhole at least one chunk
differs in at most floor(r / m) bits. So for each chunk we look up every value within floor(r / m) bit flips
of the query's chunk in a direct-addressed table (offsets into the bank sorted by that chunk), and verify the
candidates with a full 256-bit popcount. Recall is exact by construction: nothing within r is missed.

m is tuned to the bank: chunks of about log2(N) bits leave roughly one random candidate per probe, so the
work per query grows far slower than N. Small banks are searched by brute force (also exact), which is
cheaper than any index below a few thousand hashes. Queries are processed in batches, with every step a
numpy array operation.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

HASH_BYTES = 32
MAX_CHUNK_BITS = 24  # a direct-addressed table of 2^24 uint32 offsets is 64 MiB per chunk
DEFAULT_RADIUS = 31
# Relative costs per operation, fitted to timings with numpy 2 on one core (about 0.04 us per probe): a probe
# (two table gathers plus range expansion), a candidate (random gather of its index and its 32 bytes, XOR,
# popcount) and one bank hash of brute force (sequential XOR and popcount).
_PROBE_COST, _CANDIDATE_COST, _FLAT_COST = 1.0, 5.0, 0.1
# The offset tables may use up to this much memory: max(fixed floor, per bank hash).
_TABLE_BYTES_FLOOR, _TABLE_BYTES_PER_HASH = 128 << 20, 48
_CANDIDATES_PER_STEP = 1 << 21  # bounds the memory of one batch step (~100 MB of temporaries)


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
    """Every width-bit mask with at most max_flips bits set (0 first)."""
    masks = [0]
    for k in range(1, max_flips + 1):
        masks += [sum(1 << b for b in bits) for bits in itertools.combinations(range(width), k)]
    return np.array(masks, dtype=np.uint32)


def estimated_cost(n: int, m: int, radius: int) -> float:
    """Per-query cost of an m-chunk index over n random hashes at this radius (relative units)."""
    flips = radius // m
    total = 0.0
    for _, width in chunk_layout(m):
        probes = sum(math.comb(width, j) for j in range(flips + 1))
        total += probes * (_PROBE_COST + _CANDIDATE_COST * n / 2.0**width)
    return total


def choose_chunks(n: int, radius: int = DEFAULT_RADIUS) -> int:
    """Number of chunks for a bank of n hashes (0 means brute force is cheaper)."""
    best_m, best = 0, _FLAT_COST * n
    budget = max(_TABLE_BYTES_FLOOR, _TABLE_BYTES_PER_HASH * n)
    for m in range(math.ceil(256 / MAX_CHUNK_BITS), 65):
        if sum(4 << width for _, width in chunk_layout(m)) > budget:
            continue
        cost = estimated_cost(n, m, radius)
        if cost < best:
            best_m, best = m, cost
    return best_m


@dataclass
class MultiIndexHash:
    hashes: np.ndarray  # (n, 32) uint8
    words: np.ndarray  # (n, 4) uint64, the same bytes
    layout: list[tuple[int, int]]  # empty: brute force
    orders: list[np.ndarray]  # per chunk: bank positions sorted by chunk value (uint32)
    offsets: list[np.ndarray]  # per chunk: (2^width + 1) start of each value in `orders`

    def __len__(self) -> int:
        return len(self.hashes)

    @classmethod
    def build(cls, hashes: np.ndarray, radius: int = DEFAULT_RADIUS, chunks: int | None = None) -> MultiIndexHash:
        hashes = np.ascontiguousarray(hashes, dtype=np.uint8).reshape(-1, HASH_BYTES)
        m = choose_chunks(len(hashes), radius) if chunks is None else chunks
        layout = chunk_layout(m) if m else []
        if any(width > MAX_CHUNK_BITS for _, width in layout):
            raise ValueError(f"{m} chunks of {256 // m}+ bits exceed the {MAX_CHUNK_BITS}-bit table limit")
        orders, offsets = [], []
        for start, width in layout:
            values = chunk_values(hashes, start, width)
            order = np.argsort(values, kind="stable").astype(np.uint32)
            counts = np.bincount(values, minlength=1 << width)
            offsets.append(np.concatenate([[0], np.cumsum(counts)]).astype(np.uint32))
            orders.append(order)
        return cls(hashes, as_words(hashes), layout, orders, offsets)

    def save(self, folder: Path) -> None:
        np.save(folder / "pdq.npy", self.hashes)
        np.save(folder / "mih_layout.npy", np.array(self.layout, dtype=np.int64).reshape(-1, 2))
        for c, (order, offset) in enumerate(zip(self.orders, self.offsets, strict=True)):
            np.save(folder / f"mih_order_{c}.npy", order)
            np.save(folder / f"mih_offsets_{c}.npy", offset)

    @classmethod
    def load(cls, folder: Path) -> MultiIndexHash:
        # Memory-mapped: processes scanning shards in parallel share the pages.
        hashes = np.load(folder / "pdq.npy", mmap_mode="r")
        layout = [(int(s), int(w)) for s, w in np.load(folder / "mih_layout.npy")]
        orders = [np.load(folder / f"mih_order_{c}.npy", mmap_mode="r") for c in range(len(layout))]
        offsets = [np.load(folder / f"mih_offsets_{c}.npy", mmap_mode="r") for c in range(len(layout))]
        return cls(hashes, as_words(np.asarray(hashes)), layout, orders, offsets)

    def memory_bytes(self) -> int:
        return int(self.hashes.nbytes + sum(o.nbytes for o in self.orders) + sum(o.nbytes for o in self.offsets))

    def search(self, queries: np.ndarray, radius: int = DEFAULT_RADIUS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every (query, bank entry) pair within `radius` bits: (query index, bank index, distance), sorted.

        Exact: each pair within the radius is returned once, whatever the chunking.
        """
        queries = np.ascontiguousarray(queries, dtype=np.uint8).reshape(-1, HASH_BYTES)
        found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        if len(queries) == 0 or len(self) == 0:
            return _empty()
        if not self.layout:
            step = max(1, _CANDIDATES_PER_STEP // max(1, len(self)))
            for lo in range(0, len(queries), step):
                found.append(self._brute(queries[lo : lo + step], lo, radius))
        else:
            flips = radius // len(self.layout)
            per_query = estimated_cost(len(self), len(self.layout), radius) / _CANDIDATE_COST
            step = max(1, int(_CANDIDATES_PER_STEP // max(1.0, per_query)))
            for lo in range(0, len(queries), step):
                found.append(self._probe(queries[lo : lo + step], lo, radius, flips))
        q = np.concatenate([f[0] for f in found])
        b = np.concatenate([f[1] for f in found])
        d = np.concatenate([f[2] for f in found])
        order = np.lexsort((b, q))
        return q[order], b[order], d[order]

    def _brute(self, queries: np.ndarray, base: int, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        qwords = as_words(queries)
        dist = np.bitwise_count(qwords[:, None, :] ^ self.words[None, :, :]).sum(axis=2, dtype=np.int32)
        q, b = np.nonzero(dist <= radius)
        return q + base, b, dist[q, b]

    def _probe(
        self, queries: np.ndarray, base: int, radius: int, flips: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(queries)
        query_ids: list[np.ndarray] = []
        bank_ids: list[np.ndarray] = []
        for (start, width), order, offsets in zip(self.layout, self.orders, self.offsets, strict=True):
            probes = chunk_values(queries, start, width)[:, None] ^ flip_masks(width, flips)[None, :]
            begin = offsets[probes].astype(np.int64).ravel()
            lengths = offsets[probes + 1].astype(np.int64).ravel() - begin
            total = int(lengths.sum())
            if total == 0:
                continue
            # Expand each [begin, begin + length) run into positions, without a Python loop.
            run_starts = np.cumsum(lengths) - lengths
            positions = np.repeat(begin - run_starts, lengths) + np.arange(total)
            bank_ids.append(np.asarray(order[positions], dtype=np.int64))
            query_ids.append(np.repeat(np.repeat(np.arange(n), probes.shape[1]), lengths))
        if not bank_ids:
            return _empty()
        q = np.concatenate(query_ids)
        b = np.concatenate(bank_ids)
        dist = np.bitwise_count(self.words[b] ^ as_words(queries)[q]).sum(axis=1, dtype=np.int32)
        keep = dist <= radius
        q, b, dist = q[keep], b[keep], dist[keep]
        # A pair can be found through several chunks; keep one.
        _, first = np.unique(q * len(self) + b, return_index=True)
        return q[first] + base, b[first], dist[first]


def _empty() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int32)
