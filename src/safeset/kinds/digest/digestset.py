"""A set of fixed-width digests (MD5, SHA-1, SHA-256) with vectorised membership tests.

Digests are kept sorted with their first 8 bytes as big-endian uint64 prefixes. A bitmap over the top bits of
the prefix rejects almost every non-member first; the few that pass read a bucket directory over the prefixes'
top bits (built in memory on first lookup) and the one or two prefixes it points to, in one compiled pass per
batch (numpy's binary search is kept as the tested reference). StringSet applies the same scheme to strings,
through a 64-bit hash, confirming each hash match by comparing the strings; DigestedStrings finds strings by
their MD5 (which a scan computes for URL forms anyway) and confirms each digest match by comparing them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from safeset.errors import InputError
from safeset.kinds.digest.stringset_kernels import (
    digest_lookup,
    hash_strings,
    lookup,
    lookup_bytes,
    string_buffers,
    verified_lookup,
)
from safeset.signals.url_kernels import FormBytes, digest_strings


def prefixes(digests: np.ndarray) -> np.ndarray:
    """First 8 bytes of each digest as uint64, ordered like the bytes (big-endian)."""
    return np.ascontiguousarray(digests[:, :8]).view(">u8").ravel().astype(np.uint64)


def bucket_directory(prefix: np.ndarray) -> tuple[np.ndarray, int]:
    """(directory, bits) over sorted prefixes: the entries whose prefix has top bits b are
    prefix[directory[b]:directory[b + 1]]. About one entry per bucket (capped at 2^22 buckets, 16 MiB), so a
    lookup reads a bucket and one or two prefixes instead of a binary search's ~20 scattered reads."""
    count = len(prefix)
    bits = int(min(DIRECTORY_MAX_BITS, max(1, np.ceil(np.log2(max(count, 2))))))
    buckets = np.bincount((np.asarray(prefix) >> np.uint64(64 - bits)).astype(np.int64), minlength=1 << bits)
    directory = np.zeros((1 << bits) + 1, dtype=np.int64 if count >= 2**31 else np.int32)
    np.cumsum(buckets, out=directory[1:])
    return directory, bits


DIRECTORY_MAX_BITS = 22


def filter_bits_for(count: int) -> int:
    # About 8 bitmap bits per entry keeps the false-pass rate near 12 %; capped at 2^30 bits (128 MiB).
    return int(min(30, max(12, np.ceil(np.log2(max(count, 1))) + 3)))


def unique_rows(digests: np.ndarray) -> np.ndarray:
    """Distinct rows of an (n, k) uint8 array in lexicographic byte order: the result of
    `np.unique(digests, axis=0)`, which sorts opaque void records (~6 s per million MD5s)."""
    return np.ascontiguousarray(digests[unique_row_index(digests)])


def unique_row_index(digests: np.ndarray) -> np.ndarray:
    """Index of the first occurrence of each distinct row, in the rows' lexicographic byte order. The rows are
    sorted on their first 8 bytes as a big-endian integer (whose order is the bytes' order); only rows sharing
    those 8 bytes (duplicates, in practice) are then ordered on the rest. Both sorts are stable, so of equal
    rows the earliest comes first."""
    n, width = digests.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    padded = np.zeros((n, -(-width // 8) * 8), dtype=np.uint8)
    padded[:, :width] = digests
    words = padded.view(">u8").astype(np.uint64)
    order = np.argsort(words[:, 0], kind="stable")
    leading = words[order, 0]
    same = leading[1:] == leading[:-1]
    tied = np.zeros(n, dtype=bool)
    tied[1:] |= same
    tied[:-1] |= same
    if tied.any() and words.shape[1] > 1:
        at = np.flatnonzero(tied)  # runs of equal first words, in ascending order of that word
        rows = order[at]
        order[at] = rows[np.lexsort(words[rows].T[::-1])]  # the first word stays the primary key
    ordered = words[order]
    first = np.ones(n, dtype=bool)
    first[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    return order[first].astype(np.int64)


@dataclass
class DigestSet:
    digests: np.ndarray  # (m, k) uint8, sorted, unique
    prefix: np.ndarray  # (m,) uint64
    bitmap: np.ndarray  # packed bits, little bit order
    bits: int
    #: (m,) int32: the list-file line each digest came from (its first line if listed twice), aligned with
    #: `digests`, so that a finding names its bank entry; None for banks imported before lines were kept.
    lines: np.ndarray | None = None
    #: The bucket directory over `prefix` (`bucket_directory`), built on first lookup: not stored, so banks
    #: imported before it load as they are, and a bank that is never queried never reads its prefixes.
    _directory: tuple[np.ndarray, int] | None = field(default=None, repr=False, compare=False)

    @property
    def width(self) -> int:
        return int(self.digests.shape[1])

    def __len__(self) -> int:
        return int(self.digests.shape[0])

    @classmethod
    def build(cls, digests: np.ndarray, lines: np.ndarray | None = None) -> DigestSet:
        digests = np.ascontiguousarray(digests, dtype=np.uint8)
        first = unique_row_index(digests)
        digests = np.ascontiguousarray(digests[first])  # sorted: prefix order
        prefix = prefixes(digests) if len(digests) else np.zeros(0, dtype=np.uint64)
        bits = filter_bits_for(len(digests))
        table = np.zeros(1 << bits, dtype=bool)
        table[(prefix >> np.uint64(64 - bits)).astype(np.int64)] = True
        kept_lines = None if lines is None else np.asarray(lines)[first].astype(np.int32)
        return cls(digests, prefix, np.packbits(table, bitorder="little"), bits, kept_lines)

    FILES = ("digests.npy", "prefix.npy", "bitmap.npy")
    LINES_FILE = "lines.npy"

    def save(self, folder: Path) -> None:
        for name, array in zip(self.FILES, (self.digests, self.prefix, self.bitmap), strict=True):
            np.save(folder / name, array)
        if self.lines is not None:
            np.save(folder / self.LINES_FILE, self.lines)

    @classmethod
    def load(cls, folder: Path, bits: int) -> DigestSet:
        """Memory-mapped: worker processes share the pages, and a 20 M-entry bank opens instantly. A missing or
        damaged file is an InputError naming it, never a traceback."""
        arrays = []
        for name in cls.FILES:
            try:
                arrays.append(np.load(folder / name, mmap_mode="r"))
            except (OSError, ValueError, EOFError) as exc:
                raise InputError(f"bank {folder.name!r}: cannot load stored file ({exc})", folder / name) from exc
        digests, prefix, bitmap = arrays
        if digests.ndim != 2 or prefix.shape != (len(digests),) or len(bitmap) * 8 != 1 << bits:
            raise InputError(f"bank {folder.name!r}: stored digest files do not agree", folder)
        lines = None
        if (folder / cls.LINES_FILE).is_file():  # absent in banks imported before lines were kept
            try:
                lines = np.load(folder / cls.LINES_FILE, mmap_mode="r")
            except (OSError, ValueError, EOFError) as exc:
                where = folder / cls.LINES_FILE
                raise InputError(f"bank {folder.name!r}: cannot load stored file ({exc})", where) from exc
            if lines.shape != (len(digests),):
                raise InputError(f"bank {folder.name!r}: stored digest files do not agree", folder / cls.LINES_FILE)
        return cls(digests, prefix, bitmap, bits, lines)

    def contains(self, queries: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """Boolean mask: which query digests (n, k) are in the set (rows with valid=False never are)."""
        return self.lookup(queries, valid) >= 0

    def lines_of(self, index: np.ndarray) -> list[int | None]:
        """Source lines of the entries at these indexes (None for every one when the bank kept no lines)."""
        if self.lines is None:
            return [None] * len(index)
        return [int(line) for line in np.asarray(self.lines)[index]]

    def lookup(self, queries: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """Index of each query digest (n, k) in the set, -1 where absent (or valid=False): one compiled pass
        (bitmap test, the directory bucket of the prefix, byte comparison) instead of numpy's gather, searchsorted
        and compares, each a pass of its own with its temporaries."""
        n = len(queries)
        if n == 0 or len(self) == 0 or self.width < 8 or queries.ndim != 2 or queries.shape[1] != self.width:
            return self.lookup_reference(queries, valid)
        if valid is None:
            valid = np.ones(n, dtype=bool)
        return digest_lookup(queries, valid, *self.index())

    def directory(self) -> tuple[np.ndarray, int]:
        if self._directory is None:
            self._directory = bucket_directory(self.prefix)
        return self._directory

    def index(self) -> tuple[np.ndarray, int, np.ndarray, np.ndarray, np.ndarray, int]:
        """What the compiled lookups read: (bitmap, bits, prefix, digests, directory, directory bits)."""
        directory, directory_bits = self.directory()
        arrays = (np.asarray(self.bitmap), np.asarray(self.prefix), np.asarray(self.digests))
        return arrays[0], self.bits, arrays[1], arrays[2], directory, directory_bits

    def lookup_reference(self, queries: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """`lookup` in numpy: the reference the compiled lookup is tested against."""
        n = len(queries)
        hits = np.full(n, -1, dtype=np.int64)
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
        hits[idx[exact]] = pos[exact]
        # Distinct digests sharing an 8-byte prefix are astronomically rare; check the runs exhaustively.
        for i, p in zip(idx[~exact], pos[~exact], strict=True):
            end = np.searchsorted(self.prefix, self.prefix[p], side="right")
            same = np.flatnonzero((self.digests[p:end] == queries[i]).all(axis=1))
            if len(same):
                hits[i] = p + int(same[0])
        return hits


# --------------------------------------------------------------------------------------------------------------
# Strings: exact membership for many small batches. Arrow's `is_in` builds a hash table of the whole value set
# on every call, which for a 100 k-entry list costs ~20 ms per 4,096-row batch; this index is built once.



class StringSet:
    """Exact membership of strings in a fixed set, with the semantics of `pc.is_in` (a null query is in the
    set only if the set holds a null), built once and queried batch after batch.

    Values are indexed by a 64-bit hash (sorted, with a bitmap over its top bits as in DigestSet); a query
    whose hash is present is then compared with the stored string itself, so collisions cost time, never
    correctness. The lookup is one compiled pass over the Arrow buffers (`stringset_kernels`).
    """

    def __init__(self, values: pa.Array | pa.ChunkedArray) -> None:
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        self.has_null = values.null_count > 0
        values = values.drop_null() if self.has_null else values
        hashes = hash_strings(values)
        self.order = np.argsort(hashes, kind="stable")
        self.hashes = hashes[self.order]
        self.values = values
        empty = (np.zeros(0, np.uint8), np.zeros(1, np.int64), None)
        data, offsets, _ = string_buffers(values) if len(values) else empty
        self.stored = (data, offsets)  # the values' buffers, taken once: every lookup compares against them
        self.bits = filter_bits_for(len(values))
        table = np.zeros(1 << self.bits, dtype=bool)
        table[(self.hashes >> np.uint64(64 - self.bits)).astype(np.int64)] = True
        self.bitmap = np.packbits(table, bitorder="little")

    def __len__(self) -> int:
        return len(self.values)

    def contains(self, queries: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Boolean mask: which queries are in the set."""
        if isinstance(queries, pa.ChunkedArray):
            queries = queries.combine_chunks()
        hits = self.positions(queries) >= 0
        if self.has_null:
            hits |= ~np.asarray(queries.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        return hits

    def positions(self, queries: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Index of each query among the set's (non-null) values as given, -1 where absent or null."""
        if isinstance(queries, pa.ChunkedArray):
            queries = queries.combine_chunks()
        n = len(queries)
        hits = np.full(n, -1, dtype=np.int64)
        if n == 0 or len(self) == 0:
            return hits
        if queries.type != self.values.type:
            queries = queries.cast(self.values.type)
        return lookup(queries, self.bitmap, self.bits, self.hashes, self.order, self.stored)

    def positions_bytes(self, data: np.ndarray, offsets: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """`positions` of queries given as bytes + int64 offsets (row i is data[offsets[i]:offsets[i + 1]] where
        valid[i]), e.g. a batch's URL normal form, with no Arrow array built for them."""
        n = len(valid)
        if n == 0 or len(self) == 0:
            return np.full(n, -1, dtype=np.int64)
        return lookup_bytes(data, offsets, valid, self.bitmap, self.bits, self.hashes, self.order, self.stored)


class DigestedStrings:
    """Exact membership of strings, looked up by their MD5: a batch's URL forms are hashed once anyway (URL-MD5
    banks need the digests), so a url bank finds a form through a DigestSet of its entries' MD5s -- the same
    bitmap and directory reads as a digest bank -- and compares the strings only where a digest is found, so
    that a collision costs time, never a match. Built once per matcher from the stored strings (no bank format
    change). Should two stored strings share an MD5 (only ever made on purpose), the set falls back to the
    hashed `StringSet`, which needs no digests."""

    def __init__(self, values: pa.Array | pa.ChunkedArray) -> None:
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        self.values = values.drop_null() if values.null_count else values
        digests, _ = digest_strings(self.values, "md5")
        # The set keeps each digest's first row: as `lines`, the position of the first string with that digest.
        self.digests = DigestSet.build(digests, np.arange(len(self.values)))
        self.value_of = np.asarray(self.digests.lines, dtype=np.int64)
        empty = (np.zeros(0, np.uint8), np.zeros(1, np.int64), None)
        data, offsets, _ = string_buffers(self.values) if len(self.values) else empty
        self.stored = (data, offsets)
        distinct = len(pc.unique(self.values)) if len(self.values) else 0
        self.exact = StringSet(self.values) if len(self.digests) < distinct else None

    def __len__(self) -> int:
        return len(self.values)

    def positions(self, digests: np.ndarray, valid: np.ndarray, forms: FormBytes) -> np.ndarray:
        """Index of each row's string (forms' row i, whose MD5 is digests[i]) among the values, -1 where absent
        or not valid."""
        n = len(valid)
        if n == 0 or len(self) == 0:
            return np.full(n, -1, dtype=np.int64)
        if self.exact is not None:
            data, offsets = forms.packed()
            return self.exact.positions_bytes(data, offsets, valid)
        spans = (forms.data, forms.starts, forms.ends)
        return verified_lookup(digests, valid, self.digests.index(), self.value_of, spans, self.stored)
