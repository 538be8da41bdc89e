"""Exact cosine search of many seeds against every row, streaming: blocked matrix products, then an exact check.

Cost is seeds × rows × d multiply-adds, so the work is one large GEMM per block of rows: the block is
converted from float16 to float32 once, normalised, multiplied with all (unit) seeds, and every score at or
above a per-seed floor becomes a candidate. Candidates are few, so each is then re-scored in float64 from
the stored values; that exact score alone decides. The float32 (or GPU) pass therefore only has to be right
to within `MARGIN`, and the result is the same whatever the backend, block size, thread count or resume:
a row is reported iff its exact cosine is ≥ τ (and, with top-k, it is among the seed's k best, ties going
to the earlier row).

Top-k keeps, per seed, the k best exact scores seen so far; the k-th becomes the seed's floor, so after
the first block almost nothing passes the filter and the extra cost over a plain threshold is one compare.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from safeset.io.embeddings import VectorBlock

#: Bound on |float32 score − exact score| we rely on. Accumulated float32 rounding over d ≤ 4096 terms of
#: unit vectors is below 3e-4; 2e-3 leaves room for GPU kernels too. Only the candidate set depends on it.
MARGIN = 2e-3
ROW_KEY_SHIFT = 40  # row keys are shard_index << 40 | row: ordered like (shard, row)
DEFAULT_MEMORY_BYTES = 256 << 20  # score matrix + converted block per GEMM


@dataclass
class Neighbours:
    """Rows within reach of at least one seed: the best seed for each, and how many seeds reached it."""

    shard_index: np.ndarray  # int64
    row: np.ndarray  # int64
    seed: np.ndarray  # int64, index into the seed matrix (ties: the lowest index)
    score: np.ndarray  # float64, exact cosine to that seed
    seeds_within: np.ndarray  # int64


def unit_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows scaled to unit length in float64, and which rows could be (finite and non-zero)."""
    wide = np.asarray(vectors, dtype=np.float64)
    norms = np.sqrt((wide * wide).sum(axis=1))
    usable = np.isfinite(norms) & (norms > 0)
    unit = np.zeros_like(wide)
    unit[usable] = wide[usable] / norms[usable, None]
    return unit, usable


class SimilarityBackend(ABC):
    """Finds candidate (row, seed) pairs of one block: approximate score ≥ the seed's floor."""

    name: str

    @abstractmethod
    def candidates(
        self, vectors: np.ndarray, masked: np.ndarray, floors: np.ndarray, needy: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(local rows, seed indices) whose score ≥ floor[seed]. Rows in `masked` never qualify. Seeds in `needy`
        hold fewer than k results yet: their floor is also lifted to this block's k-th best score − 2·MARGIN, so
        that a top-k search never has to take every row of the first block."""


class NumpyBackend(SimilarityBackend):
    """BLAS sgemm through numpy, on buffers allocated once."""

    name = "numpy"

    def __init__(self, seeds_unit: np.ndarray, memory_bytes: int = DEFAULT_MEMORY_BYTES) -> None:
        self.seeds = np.ascontiguousarray(seeds_unit, dtype=np.float32)
        n_seeds, dim = self.seeds.shape
        self.seed_chunk = max(1, min(n_seeds, 16384))
        # Score matrix (seed_chunk × b, float32) and mask (bytes) plus the converted block (b × d float32).
        self.block_rows = int(np.clip(memory_bytes // (5 * self.seed_chunk + 4 * dim), 256, 1 << 17))
        self._x = np.empty((self.block_rows, dim), dtype=np.float32)
        self._scores = np.empty(self.seed_chunk * self.block_rows, dtype=np.float32)
        self._mask = np.empty(self.seed_chunk * self.block_rows, dtype=bool)

    def candidates(
        self, vectors: np.ndarray, masked: np.ndarray, floors: np.ndarray, needy: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        b = len(vectors)
        x = self._x[:b]
        np.copyto(x, vectors, casting="same_kind")  # float16 → float32, once per row
        norms = np.sqrt(np.einsum("ij,ij->i", x, x))
        bad = ~(np.isfinite(norms) & (norms > 0))
        with np.errstate(divide="ignore", invalid="ignore"):
            x *= np.where(bad, 0.0, 1.0 / norms).astype(np.float32)[:, None]
        masked = np.union1d(masked, np.flatnonzero(bad))
        rows_out, seeds_out = [], []
        for s0 in range(0, len(self.seeds), self.seed_chunk):
            s1 = min(s0 + self.seed_chunk, len(self.seeds))
            scores = self._scores[: (s1 - s0) * b].reshape(s1 - s0, b)
            np.matmul(self.seeds[s0:s1], x.T, out=scores)
            if len(masked):
                scores[:, masked] = -np.inf
            floor = floors[s0:s1].astype(np.float32)
            local_needy = needy[(needy >= s0) & (needy < s1)] - s0
            if len(local_needy) and k <= b:
                kth = np.partition(scores[local_needy], b - k, axis=1)[:, b - k]
                floor[local_needy] = np.maximum(floor[local_needy], kth - 2 * MARGIN)
            mask = self._mask[: (s1 - s0) * b].reshape(s1 - s0, b)
            np.greater_equal(scores, floor[:, None], out=mask)
            flat = np.flatnonzero(mask)
            seeds_out.append(flat // b + s0)
            rows_out.append(flat % b)
        return np.concatenate(rows_out), np.concatenate(seeds_out)


class TorchBackend(SimilarityBackend):
    """The same filter with torch, on a CUDA device when one is present (the CPU device runs it in tests)."""

    name = "torch"

    def __init__(self, seeds_unit: np.ndarray, device: str | None = None, memory_bytes: int = 1 << 30) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.seeds = torch.from_numpy(np.ascontiguousarray(seeds_unit, dtype=np.float32)).to(self.device)
        n_seeds, dim = seeds_unit.shape
        self.seed_chunk = max(1, min(n_seeds, 32768))
        self.block_rows = int(np.clip(memory_bytes // (5 * self.seed_chunk + 6 * dim), 256, 1 << 18))

    def candidates(
        self, vectors: np.ndarray, masked: np.ndarray, floors: np.ndarray, needy: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        torch = self.torch
        b = len(vectors)
        x = torch.from_numpy(np.ascontiguousarray(vectors)).to(self.device).float()
        norms = torch.linalg.vector_norm(x, dim=1)
        bad = ~(torch.isfinite(norms) & (norms > 0))
        x = x / torch.where(bad, torch.ones_like(norms), norms)[:, None]
        masked_t = torch.from_numpy(np.asarray(masked, dtype=np.int64)).to(self.device)
        floors_t = torch.from_numpy(np.asarray(floors, dtype=np.float32)).to(self.device)
        rows_out, seeds_out = [], []
        # Full float32 products: TF32 would cost more than MARGIN of precision.
        previous = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        try:
            for s0 in range(0, len(self.seeds), self.seed_chunk):
                s1 = min(s0 + self.seed_chunk, len(self.seeds))
                scores = self.seeds[s0:s1] @ x.T
                scores[:, bad] = -torch.inf
                if len(masked_t):
                    scores[:, masked_t] = -torch.inf
                floor = floors_t[s0:s1].clone()
                local_needy = needy[(needy >= s0) & (needy < s1)] - s0
                if len(local_needy) and k <= b:
                    idx = torch.from_numpy(local_needy).to(self.device)
                    kth = torch.topk(scores[idx], k, dim=1).values[:, -1]
                    floor[idx] = torch.maximum(floor[idx], kth - 2 * MARGIN)
                seed_idx, row_idx = torch.nonzero(scores >= floor[:, None], as_tuple=True)
                seeds_out.append(seed_idx.cpu().numpy() + s0)
                rows_out.append(row_idx.cpu().numpy())
        finally:
            torch.backends.cuda.matmul.allow_tf32 = previous
        return np.concatenate(rows_out).astype(np.int64), np.concatenate(seeds_out).astype(np.int64)


def torch_cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def make_backend(name: str, seeds_unit: np.ndarray, memory_bytes: int = DEFAULT_MEMORY_BYTES) -> SimilarityBackend:
    """`auto`: torch on a CUDA device when both are present, else numpy. `torch` alone uses torch's default
    device choice (CUDA, else CPU); `torch-cpu` forces the CPU device (to test the GPU code path anywhere)."""
    if name == "auto":
        name = "torch" if torch_cuda_available() else "numpy"
    if name == "numpy":
        return NumpyBackend(seeds_unit, memory_bytes)
    if name in ("torch", "torch-cpu"):
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            from safeset.errors import SafesetError

            raise SafesetError("the torch backend needs PyTorch: pip install 'safeset[gpu]'") from exc
        return TorchBackend(seeds_unit, "cpu" if name == "torch-cpu" else None, max(memory_bytes, 1 << 28))
    from safeset.errors import SafesetError

    raise SafesetError(f"unknown similarity backend {name!r}; choose auto, numpy, torch or torch-cpu")


class NeighbourSearch:
    """Streams blocks of every shard past a fixed seed set; call `add_block` for each, then `result`."""

    def __init__(
        self,
        seeds: np.ndarray,
        threshold: float,
        top_k: int | None = None,
        backend: str = "auto",
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
    ) -> None:
        self.seed_unit64, usable = unit_rows(seeds)
        if not usable.all():
            from safeset.errors import SafesetError

            bad = np.flatnonzero(~usable)
            raise SafesetError(f"seed vectors {bad[:5].tolist()} are zero or not finite; they cannot seed a search")
        self.threshold = float(threshold)
        self.top_k = top_k
        self.backend = make_backend(backend, self.seed_unit64.astype(np.float32), memory_bytes)
        self.block_rows = self.backend.block_rows  # type: ignore[attr-defined]
        n = len(seeds)
        self.floors = np.full(n, self.threshold - MARGIN, dtype=np.float64)
        # Results so far: pairs (row key, seed, exact score); with top-k, at most k per seed.
        self._keys: list[np.ndarray] = []
        self._seeds: list[np.ndarray] = []
        self._scores: list[np.ndarray] = []
        self._held = np.zeros(n, dtype=np.int64)  # top-k: results held per seed

    def add_block(self, shard_index: int, block: VectorBlock, excluded_rows: np.ndarray) -> None:
        """Search one block. `excluded_rows` (sorted shard rows) never qualify: the seeds' own rows."""
        if not len(block.rows):
            return
        if len(block.rows) > self.block_rows:  # the backend's buffers hold block_rows rows
            for lo in range(0, len(block.rows), self.block_rows):
                part = slice(lo, lo + self.block_rows)
                valid = block.valid[part] if block.valid is not None else None
                self.add_block(shard_index, VectorBlock(block.rows[part], block.vectors[part], valid), excluded_rows)
            return
        lo, hi = np.searchsorted(excluded_rows, [block.rows[0], block.rows[-1] + 1])
        masked = excluded_rows[lo:hi] - block.rows[0]
        if block.valid is not None:
            masked = np.union1d(masked, np.flatnonzero(~block.valid))
        needy = np.flatnonzero(self._held < self.top_k) if self.top_k else np.empty(0, dtype=np.int64)
        local, seed = self.backend.candidates(block.vectors, masked, self.floors, needy, self.top_k or 0)
        if not len(local):
            return
        exact = self._exact(block.vectors, local, seed)
        keep = exact >= self.threshold
        local, seed, exact = local[keep], seed[keep], exact[keep]
        self._keys.append((np.int64(shard_index) << ROW_KEY_SHIFT) | block.rows[local])
        self._seeds.append(seed.astype(np.int64))
        self._scores.append(exact)
        if self.top_k:
            self._prune()

    def _exact(self, vectors: np.ndarray, local: np.ndarray, seed: np.ndarray, chunk: int = 8192) -> np.ndarray:
        out = np.empty(len(local), dtype=np.float64)
        for lo in range(0, len(local), chunk):
            rows = np.asarray(vectors[local[lo : lo + chunk]], dtype=np.float64)
            norms = np.sqrt((rows * rows).sum(axis=1))
            dots = (rows * self.seed_unit64[seed[lo : lo + chunk]]).sum(axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                out[lo : lo + chunk] = np.where(norms > 0, dots / norms, -np.inf)
        return out

    def _pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self._keys:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty, np.empty(0, dtype=np.float64)
        keys, seeds, scores = np.concatenate(self._keys), np.concatenate(self._seeds), np.concatenate(self._scores)
        self._keys, self._seeds, self._scores = [keys], [seeds], [scores]
        return keys, seeds, scores

    def _prune(self) -> None:
        """Keep each seed's k best (ties: earlier row), and raise its floor to its k-th best − MARGIN."""
        assert self.top_k is not None
        keys, seeds, scores = top_k_per_seed(*self._pairs(), self.top_k)
        self._keys, self._seeds, self._scores = [keys], [seeds], [scores]
        self._held = np.bincount(seeds, minlength=len(self._held))
        full = np.flatnonzero(self._held >= self.top_k)
        last = np.flatnonzero(np.r_[seeds[1:] != seeds[:-1], True]) if len(seeds) else np.empty(0, dtype=np.int64)
        kth = np.full(len(self._held), -np.inf)
        kth[seeds[last]] = scores[last]
        self.floors[full] = np.maximum(self.threshold, kth[full]) - MARGIN

    def pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row key, seed, exact score) of every qualifying pair so far (with top-k: each seed's k best)."""
        return self._pairs()

    def result(self) -> Neighbours:
        """One entry per row, in (shard, row) order: its best seed (ties: lowest seed index)."""
        return neighbours_from_pairs(*self._pairs())


def top_k_per_seed(
    keys: np.ndarray, seeds: np.ndarray, scores: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each seed's k best pairs (ties: the earlier row), grouped by seed."""
    order = np.lexsort((keys, -scores, seeds))
    keys, seeds, scores = keys[order], seeds[order], scores[order]
    starts = np.flatnonzero(np.r_[True, seeds[1:] != seeds[:-1]]) if len(seeds) else np.empty(0, dtype=np.int64)
    rank = np.arange(len(seeds)) - np.repeat(starts, np.diff(np.r_[starts, len(seeds)]))
    keep = rank < k
    return keys[keep], seeds[keep], scores[keep]


def combine_pairs(
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], top_k: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs found shard by shard (each already holding its shard's top k) as the whole dataset's: a seed's k
    best overall are among the union of its k best per shard, so the result equals one sequential search."""
    if not parts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0, dtype=np.float64)
    keys, seeds, scores = (np.concatenate([p[i] for p in parts]) for i in range(3))
    return top_k_per_seed(keys, seeds, scores, top_k) if top_k else (keys, seeds, scores)


def neighbours_from_pairs(keys: np.ndarray, seeds: np.ndarray, scores: np.ndarray) -> Neighbours:
    """One entry per row, in (shard, row) order: its best seed (ties: lowest seed index)."""
    if not len(keys):
        empty = np.empty(0, dtype=np.int64)
        return Neighbours(empty, empty, empty, np.empty(0, dtype=np.float64), empty)
    order = np.lexsort((seeds, -scores, keys))
    keys, seeds, scores = keys[order], seeds[order], scores[order]
    first = np.r_[True, keys[1:] != keys[:-1]]
    counts = np.diff(np.r_[np.flatnonzero(first), len(keys)])
    keys, seeds, scores = keys[first], seeds[first], scores[first]
    return Neighbours(
        shard_index=keys >> ROW_KEY_SHIFT,
        row=keys & ((np.int64(1) << ROW_KEY_SHIFT) - 1),
        seed=seeds,
        score=scores,
        seeds_within=counts.astype(np.int64),
    )


def search(
    seeds: np.ndarray,
    blocks: Iterable[tuple[int, VectorBlock]],
    threshold: float,
    top_k: int | None = None,
    excluded: dict[int, np.ndarray] | None = None,
    backend: str = "auto",
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
) -> Neighbours:
    """Convenience: run a NeighbourSearch over (shard index, block) pairs."""
    finder = NeighbourSearch(seeds, threshold, top_k, backend, memory_bytes)
    none = np.empty(0, dtype=np.int64)
    for shard_index, block in blocks:
        finder.add_block(shard_index, block, (excluded or {}).get(shard_index, none))
    return finder.result()
