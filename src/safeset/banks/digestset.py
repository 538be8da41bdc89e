"""A set of fixed-width digests (MD5, SHA-1, SHA-256) with vectorised membership tests.

Digests are kept sorted; the first 8 bytes, as big-endian uint64, are searched with numpy's binary
search. A bitmap over the top bits of that prefix rejects almost every non-member first, so a batch of
queries costs one gather plus a binary search over the few that pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


def prefixes(digests: np.ndarray) -> np.ndarray:
    """First 8 bytes of each digest as uint64, ordered like the bytes (big-endian)."""
    return np.ascontiguousarray(digests[:, :8]).view(">u8").ravel().astype(np.uint64)


def filter_bits_for(count: int) -> int:
    # About 8 bitmap bits per entry keeps the false-pass rate near 12 %; capped at 2^30 bits (128 MiB).
    return int(min(30, max(12, np.ceil(np.log2(max(count, 1))) + 3)))


@dataclass
class DigestSet:
    digests: np.ndarray  # (m, k) uint8, sorted, unique
    prefix: np.ndarray  # (m,) uint64
    bitmap: np.ndarray  # packed bits, little bit order
    bits: int

    @property
    def width(self) -> int:
        return int(self.digests.shape[1])

    def __len__(self) -> int:
        return int(self.digests.shape[0])

    @classmethod
    def build(cls, digests: np.ndarray) -> DigestSet:
        digests = np.ascontiguousarray(digests, dtype=np.uint8)
        if len(digests):
            digests = np.unique(digests, axis=0)  # sorted lexicographically, which is prefix order
        prefix = prefixes(digests) if len(digests) else np.zeros(0, dtype=np.uint64)
        bits = filter_bits_for(len(digests))
        table = np.zeros(1 << bits, dtype=bool)
        table[(prefix >> np.uint64(64 - bits)).astype(np.int64)] = True
        return cls(digests, prefix, np.packbits(table, bitorder="little"), bits)

    def save(self, folder: Path) -> None:
        np.save(folder / "digests.npy", self.digests)
        np.save(folder / "prefix.npy", self.prefix)
        np.save(folder / "bitmap.npy", self.bitmap)

    @classmethod
    def load(cls, folder: Path, bits: int) -> DigestSet:
        # Memory-mapped: worker processes share the pages, and a 20 M-entry bank opens instantly.
        return cls(
            np.load(folder / "digests.npy", mmap_mode="r"),
            np.load(folder / "prefix.npy", mmap_mode="r"),
            np.load(folder / "bitmap.npy", mmap_mode="r"),
            bits,
        )

    def contains(self, queries: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """Boolean mask: which query digests (n, k) are in the set (rows with valid=False never are)."""
        n = len(queries)
        hits = np.zeros(n, dtype=bool)
        if n == 0 or len(self) == 0:
            return hits
        qprefix = prefixes(queries)
        slot = (qprefix >> np.uint64(64 - self.bits)).astype(np.int64)
        candidates = ((self.bitmap[slot >> 3] >> (slot & 7).astype(np.uint8)) & 1).astype(bool)
        if valid is not None:
            candidates &= valid
        idx = np.flatnonzero(candidates)
        if len(idx) == 0:
            return hits
        pos = np.searchsorted(self.prefix, qprefix[idx])
        pos_clipped = np.minimum(pos, len(self) - 1)
        same_prefix = self.prefix[pos_clipped] == qprefix[idx]
        idx, pos = idx[same_prefix], pos_clipped[same_prefix]
        if len(idx) == 0:
            return hits
        exact = (self.digests[pos] == queries[idx]).all(axis=1)
        hits[idx[exact]] = True
        # Distinct digests sharing an 8-byte prefix are astronomically rare; check the runs exhaustively.
        for i, p in zip(idx[~exact], pos[~exact], strict=True):
            end = np.searchsorted(self.prefix, self.prefix[p], side="right")
            hits[i] = bool((self.digests[p:end] == queries[i]).all(axis=1).any())
        return hits
