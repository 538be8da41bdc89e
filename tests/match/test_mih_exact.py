"""The compiled multi-index search against brute force: exact at every radius, on every bank shape and format."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safeset.kinds.pdq import kernels as mih_kernels
from safeset.kinds.pdq.index import MultiIndexHash, as_words, chunk_flips, chunk_layout


def flip_bits(rng: np.random.Generator, hashes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Each row with exactly counts[i] distinct random bits flipped."""
    ranks = np.argsort(np.argsort(rng.random((len(hashes), 256)), axis=1), axis=1)
    return hashes ^ np.packbits(ranks < np.asarray(counts)[:, None], axis=1)


def clustered_bank(rng: np.random.Generator, families: int, size: int) -> np.ndarray:
    centres = rng.integers(0, 256, (families, 32), dtype=np.uint8)
    members = np.repeat(centres, size, axis=0)
    return flip_bits(rng, members, rng.integers(0, 41, len(members)))


def brute_force(queries: np.ndarray, bank: np.ndarray, radius: int) -> set[tuple[int, int, int]]:
    if len(queries) == 0 or len(bank) == 0:
        return set()
    dist = np.bitwise_count(as_words(queries)[:, None, :] ^ as_words(bank)[None, :, :]).sum(axis=2)
    q, b = np.nonzero(dist <= radius)
    return set(zip(q.tolist(), b.tolist(), dist[q, b].tolist(), strict=True))


def found(
    index: MultiIndexHash, queries: np.ndarray, radius: int, probe: bool | None = True
) -> set[tuple[int, int, int]]:
    q, b, d = index.search(queries, radius, probe=probe)
    pairs = set(zip(q.tolist(), b.tolist(), d.tolist(), strict=True))
    assert len(pairs) == len(q), "a pair was reported twice"
    assert (np.diff(q * (len(index) + 1) + b) > 0).all(), "pairs must come sorted by (query, bank)"
    return pairs


def queries_near(rng: np.random.Generator, bank: np.ndarray, count: int, max_bits: int) -> np.ndarray:
    near = flip_bits(rng, bank[rng.integers(0, len(bank), count)], rng.integers(0, max_bits + 1, count))
    return np.concatenate([near, rng.integers(0, 256, (count // 4, 32), dtype=np.uint8)])


@pytest.fixture(scope="module")
def banks() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(12)
    random = rng.integers(0, 256, (6000, 32), dtype=np.uint8)
    return {"random": random, "clustered": clustered_bank(rng, 300, 20)}


@pytest.mark.parametrize("kind", ["random", "clustered"])
@pytest.mark.parametrize(("chunks", "group_bits"), [(None, None), (11, 0), (13, 4), (16, 6)])
def test_matches_brute_force_at_every_radius(
    banks: dict[str, np.ndarray], kind: str, chunks: int | None, group_bits: int | None
) -> None:
    rng = np.random.default_rng(5)
    bank = banks[kind]
    index = MultiIndexHash.build(bank, chunks=chunks, group_bits=group_bits)
    queries = queries_near(rng, bank, 80, 50)
    for radius in (0, 8, 31, 47):
        expected = brute_force(queries, bank, radius)
        assert found(index, queries, radius) == expected, (radius, index.layout)
        assert found(index, queries, radius, probe=None) == expected  # the strategy chosen by cost


def test_duplicates_in_the_bank_are_each_reported() -> None:
    rng = np.random.default_rng(6)
    bank = np.repeat(rng.integers(0, 256, (500, 32), dtype=np.uint8), 3, axis=0)
    index = MultiIndexHash.build(bank, chunks=12)
    queries = flip_bits(rng, bank[::3][:50], np.full(50, 10))
    pairs = found(index, queries, 31)
    assert pairs == brute_force(queries, bank, 31)
    assert {(q, b // 3) for q, b, _ in pairs} >= {(i, i) for i in range(50)}
    assert len(pairs) >= 150  # each query matches its three copies


def test_empty_bank_and_empty_queries_find_nothing() -> None:
    empty = MultiIndexHash.build(np.zeros((0, 32), np.uint8))
    q, b, d = empty.search(np.zeros((3, 32), np.uint8), 31)
    assert len(q) == len(b) == len(d) == 0
    index = MultiIndexHash.build(np.zeros((10, 32), np.uint8), chunks=11)
    assert len(index.search(np.zeros((0, 32), np.uint8), 31)[0]) == 0


def test_single_entry_bank() -> None:
    rng = np.random.default_rng(8)
    bank = rng.integers(0, 256, (1, 32), dtype=np.uint8)
    queries = flip_bits(rng, np.repeat(bank, 40, axis=0), np.arange(40))
    for chunks in (None, 11):
        index = MultiIndexHash.build(bank, chunks=chunks)
        assert found(index, queries, 31) == {(i, 0, i) for i in range(32)}


def test_large_radius_falls_back_to_brute_force_and_stays_exact(banks: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(9)
    bank = banks["random"][:3000]
    index = MultiIndexHash.build(bank, chunks=11)
    queries = queries_near(rng, bank, 20, 100)
    assert found(index, queries, 100, probe=None) == brute_force(queries, bank, 100)


def test_saved_index_searches_like_the_built_one(tmp_path, banks: dict[str, np.ndarray]) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(10)
    bank = banks["clustered"]
    index = MultiIndexHash.build(bank, chunks=11, group_bits=3)
    index.save(tmp_path)
    loaded = MultiIndexHash.load(tmp_path)
    assert loaded.group_bits == [3] * 11 and loaded.layout == index.layout
    queries = queries_near(rng, bank, 100, 40)
    assert found(loaded, queries, 31) == found(index, queries, 31) == brute_force(queries, bank, 31)


def test_index_saved_before_group_bits_still_loads(tmp_path, banks: dict[str, np.ndarray]) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(11)
    bank = banks["random"]
    MultiIndexHash.build(bank, chunks=12, group_bits=0).save(tmp_path)
    layout = np.load(tmp_path / "mih_layout.npy")
    np.save(tmp_path / "mih_layout.npy", layout[:, :2])  # the earlier two-column layout
    loaded = MultiIndexHash.load(tmp_path)
    assert loaded.chunk_group_bits() == [0] * 12
    queries = queries_near(rng, bank, 100, 31)
    assert found(loaded, queries, 31) == brute_force(queries, bank, 31)


def test_group_bits_that_leave_no_room_for_row_numbers_are_refused() -> None:
    with pytest.raises(ValueError, match="group bits"):
        MultiIndexHash.build(np.zeros((100, 32), np.uint8), chunks=11, group_bits=23)


@pytest.mark.parametrize("radius", [0, 5, 10, 31, 47, 60])
def test_flips_cover_the_radius(radius: int) -> None:
    """The pigeonhole bound behind exactness: sum(f + 1) over probed chunks exceeds the radius."""
    for n, m in ((10_000, 16), (1_000_000, 13), (10_000_000, 11)):
        flips = chunk_flips(n, chunk_layout(m), radius, [0] * m)
        assert sum(f + 1 for f in flips) == radius + 1
        assert min(flips) >= -1


def test_brute_force_kernel_grows_its_output() -> None:
    bank = np.zeros((3000, 4), np.uint64)  # 3 queries x 3000 identical rows: more pairs than the first buffer
    q, _, d = mih_kernels.brute_force(np.zeros((3, 4), np.uint64), bank, 0)
    assert len(q) == 9000 and (d == 0).all() and (np.bincount(q) == 3000).all()


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    size=st.integers(1, 400),
    chunks=st.sampled_from([13, 16, 23, 32]),
    radius=st.integers(0, 47),
)
def test_property_exact_on_small_clustered_banks(seed: int, size: int, chunks: int, radius: int) -> None:
    rng = np.random.default_rng(seed)
    bank = clustered_bank(rng, max(1, size // 5), 5)
    group_bits = int(rng.integers(0, 4))
    index = MultiIndexHash.build(bank, chunks=chunks, group_bits=group_bits)
    queries = queries_near(rng, bank, 20, 47)
    assert found(index, queries, radius) == brute_force(queries, bank, radius)
