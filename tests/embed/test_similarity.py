"""The exact neighbour search: planted clusters with known cosines, top-k, backends and block sizes agree."""

from __future__ import annotations

import numpy as np
import pytest

from safeset.expansion.similarity import search, torch_cuda_available
from safeset.io.embeddings import VectorBlock
from tests.embed.layout import at_cosine, exact_cosines, random_unit

DIM = 48
TAU = 0.85


def planted(rng: np.random.Generator, seeds: int = 6, background: int = 3000):
    """Random rows plus, per seed, rows planted just above and just below τ and near-copies."""
    seed_vectors = random_unit(seeds, DIM, rng)
    rows = [random_unit(background, DIM, rng)]
    above, below = [], []
    for s in seed_vectors:
        for cosine in (0.999, 0.95, 0.9, 0.87, TAU + 0.01):
            above.append(at_cosine(s, cosine, rng))
        for cosine in (TAU - 0.01, 0.8, 0.5):
            below.append(at_cosine(s, cosine, rng))
    rows += [np.array(above), np.array(below)]
    stored = np.concatenate(rows).astype(np.float16)
    order = rng.permutation(len(stored))
    stored = stored[order]
    position = np.argsort(order)  # where each planted row ended up
    above_rows = position[background : background + len(above)]
    below_rows = position[background + len(above) :]
    return seed_vectors, stored, above_rows, below_rows


def as_blocks(stored: np.ndarray, shard_rows: int = 1100, block: int = 500):
    """Rows split over shards (index, VectorBlock) as readers stream them."""
    for index, lo in enumerate(range(0, len(stored), shard_rows)):
        part = stored[lo : lo + shard_rows]
        for b in range(0, len(part), block):
            yield index, VectorBlock(np.arange(b, min(b + block, len(part)), dtype=np.int64), part[b : b + block])


def global_rows(result, shard_rows: int = 1100) -> np.ndarray:
    return result.shard_index * shard_rows + result.row


@pytest.mark.parametrize("backend", ["numpy", "torch-cpu"])
def test_every_planted_neighbour_above_tau_is_found_and_none_below(backend: str) -> None:
    if backend.startswith("torch"):
        pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    seeds, stored, above, below = planted(rng)
    result = search(seeds, as_blocks(stored), TAU, backend=backend, memory_bytes=1 << 20)
    found = set(global_rows(result).tolist())
    assert set(above.tolist()) <= found
    assert not found & set(below.tolist())
    truth = exact_cosines(seeds, stored)
    assert found == set(np.flatnonzero((truth >= TAU).any(axis=0)).tolist())
    rows = global_rows(result)
    best = truth[:, rows]
    assert np.allclose(result.score, best.max(axis=0), atol=1e-12)
    assert np.array_equal(result.seed, best.argmax(axis=0))
    assert np.array_equal(result.seeds_within, (best >= TAU).sum(axis=0))


def test_results_do_not_depend_on_block_size_or_backend() -> None:
    pytest.importorskip("torch")
    rng = np.random.default_rng(12)
    seeds, stored, _, _ = planted(rng, seeds=40)
    runs = [
        search(seeds, as_blocks(stored, block=block), 0.3, backend=backend, memory_bytes=memory)
        for block, backend, memory in ((500, "numpy", 1 << 20), (97, "numpy", 1 << 16), (1100, "torch-cpu", 1 << 28))
    ]
    for other in runs[1:]:
        for name in ("shard_index", "row", "seed", "score", "seeds_within"):
            assert np.array_equal(getattr(runs[0], name), getattr(other, name)), name
    assert len(runs[0].row) > 100  # a low τ: many pairs near the float32 filter's margin were decided exactly


@pytest.mark.parametrize("backend", ["numpy", "torch-cpu"])
@pytest.mark.parametrize(("tau", "k"), [(-1.0, 3), (0.2, 5), (TAU, 2)])
def test_top_k_matches_brute_force(backend: str, tau: float, k: int) -> None:
    if backend.startswith("torch"):
        pytest.importorskip("torch")
    rng = np.random.default_rng(13)
    seeds, stored, _, _ = planted(rng, seeds=8)
    stored[100] = stored[200]  # an exact tie: the earlier row wins
    excluded = {0: np.array([3, 100, 1099])}
    result = search(seeds, as_blocks(stored), tau, top_k=k, excluded=excluded, backend=backend, memory_bytes=1 << 18)
    truth = exact_cosines(seeds, stored)
    truth[:, [3, 100, 1099]] = -np.inf
    expected = set()
    for s in range(len(seeds)):
        candidates = np.flatnonzero(truth[s] >= tau)
        best = candidates[np.lexsort((candidates, -truth[s, candidates]))][:k]
        expected |= set(best.tolist())
    assert set(global_rows(result).tolist()) == expected


def test_zero_and_invalid_rows_never_match() -> None:
    rng = np.random.default_rng(14)
    seeds = random_unit(2, DIM, rng)
    stored = np.stack([seeds[0], np.zeros(DIM), seeds[1], seeds[0]]).astype(np.float16)
    stored[3, 0] = np.inf
    valid = np.array([True, True, False, True])
    result = search(seeds, [(0, VectorBlock(np.arange(4), stored, valid))], -1.0, backend="numpy")
    assert result.row.tolist() == [0]


@pytest.mark.gpu
def test_cuda_backend_equals_numpy() -> None:
    if not torch_cuda_available():
        pytest.skip("no CUDA device")
    rng = np.random.default_rng(15)
    seeds, stored, _, _ = planted(rng, seeds=200, background=50_000)
    cpu = search(seeds, as_blocks(stored, 20_000, 5_000), 0.3, top_k=20, backend="numpy")
    gpu = search(seeds, as_blocks(stored, 20_000, 5_000), 0.3, top_k=20, backend="torch")
    for name in ("shard_index", "row", "seed", "score", "seeds_within"):
        assert np.array_equal(getattr(cpu, name), getattr(gpu, name)), name
