"""Embedding readers: LAION's npy layout, parquet list columns, webdataset .npy members, and their bad input."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from safeset.errors import ColumnError, InputError
from safeset.io.detect import detect_format, open_dataset
from safeset.io.embeddings import NpyVectors, open_embeddings
from safeset.io.webdataset import WebDatasetShards
from tests.conftest import laion_table
from tests.embed.layout import random_unit, write_laion_layout


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    rng = np.random.default_rng(7)
    parts = [random_unit(130, 16, rng), random_unit(70, 16, rng)]
    return write_laion_layout(tmp_path / "laion", parts), parts


def test_laion_layout_is_recognised_and_rows_line_up(layout: tuple[Path, list[np.ndarray]]) -> None:
    root, parts = layout
    assert detect_format(root) == "laion-embeddings"
    dataset = open_dataset(root)
    shards = dataset.shards()
    assert [s.id for s in shards] == ["metadata/metadata_0000.parquet", "metadata/metadata_0001.parquet"]
    source = open_embeddings(dataset)
    assert source.check(shards) == 16
    for shard, expected in zip(shards, parts, strict=True):
        vectors = source.for_shard(shard)
        streamed = np.concatenate([b.vectors for b in vectors.blocks(32)])
        assert np.array_equal(streamed, expected.astype(np.float16))
        rows = np.array([5, 3, 60, 61, 62])
        taken, valid = vectors.take(rows)
        assert valid.all() and np.array_equal(taken, expected.astype(np.float16)[rows])
        batch = next(dataset.iter_batches(shard, 50, read_images=False))
        contiguous, _ = vectors.take(batch.rows)
        assert np.array_equal(contiguous, expected.astype(np.float16)[:50])


def test_row_count_mismatch_names_both_files(layout: tuple[Path, list[np.ndarray]]) -> None:
    root, parts = layout
    np.save(root / "img_emb" / "img_emb_0001.npy", parts[1][:-1].astype(np.float16))
    dataset = open_dataset(root)
    with pytest.raises(InputError) as caught:
        open_embeddings(dataset).check(dataset.shards())
    message = str(caught.value)
    assert "img_emb_0001.npy" in message and "metadata_0001.parquet" in message and "69" in message


def test_dimension_mismatch_between_parts_is_refused(layout: tuple[Path, list[np.ndarray]]) -> None:
    root, _ = layout
    np.save(root / "img_emb" / "img_emb_0001.npy", np.zeros((70, 8), dtype=np.float16))
    dataset = open_dataset(root)
    with pytest.raises(InputError, match=r"img_emb_0001.npy.*dimension 8.*img_emb_0000.npy has 16"):
        open_embeddings(dataset).check(dataset.shards())


def test_missing_truncated_and_wrong_arrays_are_refused(layout: tuple[Path, list[np.ndarray]], tmp_path: Path) -> None:
    root, _ = layout
    dataset = open_dataset(root)
    path = root / "img_emb" / "img_emb_0001.npy"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(InputError, match="truncated"):
        open_embeddings(dataset).check(dataset.shards())
    np.save(path, np.zeros((70, 16), dtype=np.int32))
    with pytest.raises(InputError, match="float16 or float32"):
        NpyVectors(path)
    path.write_bytes(b"not an array")
    with pytest.raises(InputError, match=r"img_emb_0001\.npy: not a readable \.npy"):
        NpyVectors(path)
    path.unlink()
    with pytest.raises(InputError, match=r"no embedding file numbered 1 for shard metadata/metadata_0001\.parquet"):
        open_embeddings(dataset).check(dataset.shards())


def test_embeddings_path_pairs_parts_by_number(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    (tmp_path / "meta").mkdir()
    (tmp_path / "vectors").mkdir()
    parts = [random_unit(40, 8, rng), random_unit(25, 8, rng)]
    for number, vectors in enumerate(parts):
        pq.write_table(laion_table(len(vectors)), tmp_path / "meta" / f"part-{number:05d}-0a1b2c3d.parquet")
        np.save(tmp_path / "vectors" / f"img_emb_{number}.npy", vectors.astype(np.float32))
    dataset = open_dataset(tmp_path / "meta")
    source = open_embeddings(dataset, path=str(tmp_path / "vectors"))
    assert source.check(dataset.shards()) == 8
    got, _ = source.for_shard(dataset.shards()[1]).take(np.arange(25))
    assert np.array_equal(got, parts[1].astype(np.float32))


def _list_table(vectors: list[list[float] | None], fixed: bool) -> pa.Table:
    base = laion_table(len(vectors))
    if fixed:
        dim = len(next(v for v in vectors if v is not None))
        column = pa.array(vectors, type=pa.list_(pa.float32(), dim))
    else:
        column = pa.array(vectors, type=pa.list_(pa.float16()))
    return base.append_column("embedding", column)


@pytest.mark.parametrize("fixed", [True, False])
def test_parquet_list_column(tmp_path: Path, fixed: bool) -> None:
    rng = np.random.default_rng(5)
    matrix = random_unit(300, 12, rng).astype(np.float32)
    rows: list[list[float] | None] = [list(map(float, v)) for v in matrix]
    rows[17] = None  # a row without a vector: invalid, never matched
    path = tmp_path / "emb.parquet"
    pq.write_table(_list_table(rows, fixed), path, row_group_size=100)
    dataset = open_dataset(path)
    source = open_embeddings(dataset)  # found by its conventional name
    vectors = source.for_shard(dataset.shards()[0])
    assert vectors.dim == 12 and vectors.count == 300
    taken, valid = vectors.take(np.array([250, 16, 17, 99, 100]))
    assert valid.tolist() == [True, True, False, True, True]
    expected = matrix if fixed else matrix.astype(np.float16)
    assert np.array_equal(taken[[0, 1, 3, 4]], expected[[250, 16, 99, 100]].astype(np.float32))
    blocks = list(vectors.blocks(64))
    assert sum(len(b.rows) for b in blocks) == 300 and not blocks[0].valid[17]


def test_parquet_list_of_wrong_length_names_the_row(tmp_path: Path) -> None:
    rows: list[list[float] | None] = [[0.1, 0.2, 0.3]] * 10
    rows[6] = [0.1, 0.2]
    path = tmp_path / "bad.parquet"
    pq.write_table(_list_table(rows, fixed=False), path)
    dataset = open_dataset(path)
    with pytest.raises(InputError, match=r"bad.parquet:6: embedding of row 6 has 2 values, expected 3"):
        list(open_embeddings(dataset).for_shard(dataset.shards()[0]).blocks(4))
    with pytest.raises(ColumnError, match="'vectors' not found"):
        open_embeddings(dataset, column="vectors")


def _write_tar(path: Path, samples: list[tuple[str, np.ndarray | None]], bad_member: str | None = None) -> None:
    with tarfile.open(path, "w") as archive:
        for key, vector in samples:
            members = {f"{key}.txt": b"a benign caption"}
            if vector is not None:
                buffer = io.BytesIO()
                np.save(buffer, vector)
                members[f"{key}.npy"] = buffer.getvalue()
            if key == bad_member:
                members[f"{key}.npy"] = b"garbage"
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))


def test_webdataset_npy_members_follow_the_sidecar_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    vectors = random_unit(6, 10, rng).astype(np.float16)
    root = tmp_path / "wds"
    root.mkdir()
    # Sidecar lists keys in another order than the tar, and one failed download (no sample at all).
    keys = ["000000003", "000000001", "000000000", "000000002", "000000009"]
    pq.write_table(pa.table({"key": keys, "url": [f"https://example.org/{k}" for k in keys]}), root / "00000.parquet")
    tar_samples = [("000000000", vectors[0]), ("000000001", vectors[1]), ("000000002", None), ("000000003", vectors[3])]
    tar_samples.append(("000000007", vectors[5]))  # in the tar only: numbered after the sidecar's rows
    _write_tar(root / "00000.tar", tar_samples)
    dataset = WebDatasetShards(root)
    shard = dataset.shards()[0]
    got, valid = open_embeddings(dataset).for_shard(shard).take(np.arange(6))
    assert valid.tolist() == [True, True, True, False, False, True]
    assert np.array_equal(got[[0, 1, 2, 5]], vectors[[3, 1, 0, 5]])
    rows = {
        int(r): k
        for b in dataset.iter_batches(shard, 100, read_images=True)
        for r, k in zip(b.rows, b.keys_at(np.arange(len(b))), strict=True)
    }
    assert rows[5] == "000000007"  # the reader numbers the tar-only sample the same way
    _write_tar(root / "00000.tar", tar_samples, bad_member="000000001")
    with pytest.raises(InputError, match=r"00000.tar: member '000000001.npy' is not a readable .npy"):
        open_embeddings(WebDatasetShards(root)).for_shard(shard).take(np.arange(2))


def test_webdataset_npy_members_of_dotted_keys_and_damaged_tars(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    vectors = random_unit(2, 6, rng).astype(np.float32)
    root = tmp_path / "wds"
    root.mkdir()
    keys = ["img.001", "img.002"]
    pq.write_table(pa.table({"key": keys, "url": [f"https://example.org/{k}" for k in keys]}), root / "00000.parquet")
    _write_tar(root / "00000.tar", [("img.002", vectors[1]), ("img.001", vectors[0])])
    dataset = WebDatasetShards(root)
    shard = dataset.shards()[0]
    got, valid = open_embeddings(dataset).for_shard(shard).take(np.arange(2))
    assert valid.tolist() == [True, True] and np.array_equal(got, vectors)  # keyed by the sidecar, not the first dot
    # A tar whose end was cut off fails with the reader's own message instead of reading as complete.
    data = (root / "00000.tar").read_bytes()
    (root / "00000.tar").write_bytes(data[:1536])  # the first sample and half of the second one
    with pytest.raises(InputError, match=r"00000\.tar: truncated"):
        open_embeddings(WebDatasetShards(root)).for_shard(shard).take(np.arange(2))
