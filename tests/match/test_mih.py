"""Multi-index hashing must find exactly what brute force finds: every pair within the radius, once."""

from __future__ import annotations

import numpy as np
import pytest

from safeset.kinds.pdq.index import MultiIndexHash, as_words, choose_chunks


def balanced_hashes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random hashes with exactly 128 bits set, like PDQ's median threshold produces."""
    order = np.argsort(rng.random((n, 256)), axis=1)[:, :128]
    bits = np.zeros((n, 256), dtype=bool)
    np.put_along_axis(bits, order, True, axis=1)
    return np.packbits(bits, axis=1)


def flip(rng: np.random.Generator, hashes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Each hash with counts[i] distinct bits flipped."""
    out = hashes.copy()
    for i, k in enumerate(counts):
        for bit in rng.choice(256, int(k), replace=False):
            out[i, bit // 8] ^= np.uint8(1 << (bit % 8))
    return out


def brute_force(queries: np.ndarray, bank: np.ndarray, radius: int) -> set[tuple[int, int, int]]:
    dist = np.bitwise_count(as_words(queries)[:, None, :] ^ as_words(bank)[None, :, :]).sum(axis=2)
    q, b = np.nonzero(dist <= radius)
    return set(zip(q.tolist(), b.tolist(), dist[q, b].tolist(), strict=True))


def clustered(rng: np.random.Generator, families: int, size: int) -> np.ndarray:
    """Families of near-duplicates (as real banks hold: many edits of one picture), 2-40 bits apart."""
    centres = balanced_hashes(rng, families)
    members = np.repeat(centres, size, axis=0)
    return flip(rng, members, rng.integers(0, 40, len(members)))


@pytest.mark.parametrize("kind", ["random", "clustered"])
@pytest.mark.parametrize("chunks", [None, 11, 16, 23])
def test_recall_is_exact(kind: str, chunks: int | None) -> None:
    rng = np.random.default_rng(7)
    bank = balanced_hashes(rng, 6000) if kind == "random" else clustered(rng, 300, 20)
    near = flip(rng, bank[rng.integers(0, len(bank), 300)], rng.integers(0, 48, 300))
    queries = np.concatenate([near, balanced_hashes(rng, 100)])
    index = MultiIndexHash.build(bank, chunks=chunks)
    for radius in (0, 10, 31, 40):
        q, b, d = index.search(queries, radius)
        found = set(zip(q.tolist(), b.tolist(), d.tolist(), strict=True))
        assert len(found) == len(q)  # no pair twice
        assert found == brute_force(queries, bank, radius), (kind, chunks, radius)
        assert (np.diff(q) >= 0).all()


def test_chunks_wider_than_the_table_limit_are_refused() -> None:
    with pytest.raises(ValueError, match="table limit"):
        MultiIndexHash.build(np.zeros((10, 32), np.uint8), chunks=8)


def test_index_is_tuned_to_the_bank_size() -> None:
    assert choose_chunks(500) == 0  # brute force is cheaper for tiny banks
    sizes = [choose_chunks(n) for n in (100_000, 1_000_000, 10_000_000)]
    assert all(m > 0 for m in sizes) and sizes == sorted(sizes, reverse=True)


def test_save_and_load_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    bank = balanced_hashes(rng, 5000)
    MultiIndexHash.build(bank, chunks=16).save(tmp_path)
    loaded = MultiIndexHash.load(tmp_path)
    queries = flip(rng, bank[:50], np.full(50, 20))
    q, b, _ = loaded.search(queries, 31)
    assert set(zip(q.tolist(), b.tolist(), strict=True)) >= {(i, i) for i in range(50)}
