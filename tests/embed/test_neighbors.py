"""Neighbour expansion end to end: a LAION-layout folder, seeds from an md5 bank, `scan --neighbors`, clean."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from safeset.banks.store import BankStore
from safeset.cli.main import app
from safeset.errors import InputError, SafesetError
from safeset.rundir import shard_file_stem
from tests.conftest import laion_table, write_list
from tests.embed.layout import at_cosine, exact_cosines, random_unit, write_laion_layout
from tests.helpers import assert_reconciles, clean, findings, release_manifest, scan

DIM = 32
SEEDS = (10, 350)  # global rows whose md5 is in the bank
PART_ROWS = (300, 200)


def key_of(global_row: int) -> str:
    part = 0 if global_row < PART_ROWS[0] else 1
    return f"{part:05d}{global_row - part * PART_ROWS[0]:04d}"


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    """Background rows plus neighbours of each seed at known cosines (above and below 0.85), in both parts."""
    rng = np.random.default_rng(31)
    vectors = random_unit(sum(PART_ROWS), DIM, rng)
    spots = iter([20, 120, 299, 300, 310, 420, 499, 5, 77, 333])
    for seed in SEEDS:
        for cosine in (0.97, 0.9, 0.86, 0.84, 0.6):
            vectors[next(spots)] = at_cosine(vectors[seed], cosine, rng)
    root = write_laion_layout(tmp_path / "laion", [vectors[:300], vectors[300:]])
    banks = tmp_path / "banks"
    md5s = [hashlib.md5(f"image-{row}".encode()).hexdigest() for row in SEEDS]  # laion_table's md5 column
    BankStore(banks).add("known", "md5", write_list(tmp_path / "md5.txt", md5s))
    return root, banks, vectors.astype(np.float16)


def expected_neighbours(stored: np.ndarray, seeds: tuple[int, ...], tau: float) -> set[int]:
    truth = exact_cosines(stored[list(seeds)], stored)
    truth[:, list(seeds)] = -np.inf
    return set(np.flatnonzero((truth >= tau).any(axis=0)).tolist())


def test_scan_neighbors_on_laion_layout_then_clean(planted: tuple[Path, Path, np.ndarray], tmp_path: Path) -> None:
    root, banks, stored = planted
    result = CliRunner().invoke(
        app, ["scan", str(root), "--banks", str(banks), "--out", str(tmp_path / "run"), "--neighbors"]
    )
    assert result.exit_code == 0, result.output
    rows = findings(tmp_path / "run")
    md5 = [f for f in rows if f["detector"] == "md5"]
    neighbours = [f for f in rows if f["detector"] == "neighbor"]
    assert sorted(f["key"] for f in md5) == sorted(key_of(s) for s in SEEDS)
    expected = expected_neighbours(stored, SEEDS, 0.85)
    assert len(expected) == 6  # the planted 0.97, 0.9, 0.86 of each seed; nothing from the background
    assert sorted(f["key"] for f in neighbours) == sorted(key_of(r) for r in expected)
    assert all(f["action"] == "review" and f["bank"] == "known" for f in neighbours)
    truth = exact_cosines(stored[list(SEEDS)], stored)
    for f in neighbours:
        global_row = f["row"] + (PART_ROWS[0] if f["shard"].endswith("0001.parquet") else 0)
        best = int(np.argmax(truth[:, global_row]))
        assert f["evidence"].startswith(f"cosine {truth[best, global_row]:.6f} to {key_of(SEEDS[best])} (hop 1")
        assert f["domain"] == "example.org"

    manifest = clean(root, tmp_path / "run", tmp_path / "release")
    assert_reconciles(manifest)
    assert manifest["rows_removed"] == 2  # the md5 matches; neighbours stay for review by default
    removed_keep = np.ones(len(stored), dtype=bool)
    removed_keep[list(SEEDS)] = False
    for part, (lo, hi) in enumerate(((0, 300), (300, 500))):
        released = np.load(tmp_path / "release" / "img_emb" / f"img_emb_{part:04d}.npy")
        assert np.array_equal(released, stored[lo:hi][removed_keep[lo:hi]])  # still aligned, removed rows gone
        text = np.load(tmp_path / "release" / "text_emb" / f"text_emb_{part:04d}.npy")
        meta = pq.read_table(tmp_path / "release" / "metadata" / f"metadata_{part:04d}.parquet")
        assert len(text) == len(released) == meta.num_rows
    dropped = clean(root, tmp_path / "run", tmp_path / "release2", drop_review=True)
    assert dropped["rows_removed"] == 8 and release_manifest(tmp_path / "release2")["rows_removed"] == 8


def test_expansion_is_identical_after_resume_and_with_top_k(
    planted: tuple[Path, Path, np.ndarray], tmp_path: Path
) -> None:
    root, banks, _ = planted
    neighbor = {"threshold": 0.85}
    scan(root, banks, tmp_path / "run", expanders=("neighbor",), policy={"neighbor": neighbor})
    reference = pq.read_table(tmp_path / "run" / "findings.parquet")
    marker = tmp_path / "run" / "shards" / f"{shard_file_stem('metadata/metadata_0001.parquet')}.json"
    marker.unlink()  # as if the run had been killed before its last shard finished
    (tmp_path / "run" / "summary.json").unlink()
    summary = scan(root, banks, tmp_path / "run", expanders=("neighbor",), policy={"neighbor": neighbor}, resume=True)
    assert summary["shards_resumed"] == 1
    assert pq.read_table(tmp_path / "run" / "findings.parquet").equals(reference)
    # top-1 per seed within τ: each seed's closest planted row (the 0.97 one) only.
    scan(root, banks, tmp_path / "top", expanders=("neighbor",), policy={"neighbor": {**neighbor, "top_k": 1}})
    top = sorted(f["key"] for f in findings(tmp_path / "top") if f["detector"] == "neighbor")
    assert top == [key_of(20), key_of(420)]


def test_second_hop_is_bounded_and_names_its_path(tmp_path: Path) -> None:
    rng = np.random.default_rng(32)
    vectors = random_unit(200, DIM, rng)
    seed = 10
    vectors[50] = at_cosine(vectors[seed], 0.9, rng)  # hop 1
    vectors[150] = at_cosine(vectors[50], 0.9, rng)  # hop 2: near row 50, not near the seed
    root = write_laion_layout(tmp_path / "laion", [vectors])
    banks = tmp_path / "banks"
    BankStore(banks).add("known", "md5", write_list(tmp_path / "m.txt", [hashlib.md5(b"image-10").hexdigest()]))
    stored = vectors.astype(np.float16)
    hop1 = expected_neighbours(stored, (seed,), 0.85)
    assert hop1 == {50}
    hop2 = expected_neighbours(stored, (50,), 0.85) - {seed}
    assert hop2 == {150}
    scan(root, banks, tmp_path / "run", expanders=("neighbor",), policy={"neighbor": {"hops": 2}})
    rows = {f["row"]: f for f in findings(tmp_path / "run") if f["detector"] == "neighbor"}
    assert sorted(rows) == [50, 150]
    assert "(hop 2, via neighbour of 000000010)" in rows[150]["evidence"]
    assert "to 000000050" in rows[150]["evidence"]


def test_seed_file_of_keys_or_vectors(planted: tuple[Path, Path, np.ndarray], tmp_path: Path) -> None:
    root, _, stored = planted
    empty_banks = tmp_path / "no-seeds"
    BankStore(empty_banks).add("nothing", "md5", write_list(tmp_path / "z.txt", ["0" * 32]))
    keys = write_list(tmp_path / "keys.txt", ["# seeds from a hotline", key_of(350)])
    scan(root, empty_banks, tmp_path / "run", expanders=("neighbor",), policy={"neighbor": {"seed_file": str(keys)}})
    found = sorted(f["row"] + 300 * f["shard"].endswith("0001.parquet") for f in findings(tmp_path / "run"))
    assert found == sorted(expected_neighbours(stored, (350,), 0.85))
    vectors = tmp_path / "seeds.npy"
    np.save(vectors, stored[[10]].astype(np.float32))
    scan(
        root, empty_banks, tmp_path / "run2", expanders=("neighbor",), policy={"neighbor": {"seed_file": str(vectors)}}
    )
    rows = findings(tmp_path / "run2")
    # A vector seed is no dataset row, so the row it equals is found as a neighbour at cosine 1.
    assert sorted(f["row"] for f in rows) == sorted([10, *expected_neighbours(stored, (10,), 0.85)])
    assert all(f["bank"] == "seed-file" and "seeds.npy#0" in f["evidence"] for f in rows)
    bad = write_list(tmp_path / "bad.txt", [key_of(350), "no-such-key"])
    with pytest.raises(InputError, match=r"bad.txt:2: seed key 'no-such-key' is not in the dataset"):
        scan(
            root, empty_banks, tmp_path / "run3", expanders=("neighbor",), policy={"neighbor": {"seed_file": str(bad)}}
        )


def test_neighbors_without_embeddings_is_refused_up_front(tmp_path: Path) -> None:
    path = tmp_path / "plain.parquet"
    pq.write_table(laion_table(20), path)
    banks = tmp_path / "banks"
    BankStore(banks).add("known", "md5", write_list(tmp_path / "m.txt", [hashlib.md5(b"image-1").hexdigest()]))
    with pytest.raises(SafesetError, match=r"no embeddings found .* pass --embeddings"):
        scan(path, banks, tmp_path / "run", expanders=("neighbor",))
    assert not (tmp_path / "run" / "shards").exists()  # refused before any work
    result = CliRunner().invoke(
        app, ["scan", str(path), "--banks", str(banks), "--out", str(tmp_path / "r2"), "--neighbors"]
    )
    assert result.exit_code == 2 and "no embeddings found" in result.output
