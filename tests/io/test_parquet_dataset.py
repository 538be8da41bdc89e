"""LAION-schema parquet: metadata-only matching, column mapping, pass-through columns, bad shards."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from safeset.banks.store import BankStore
from safeset.errors import ColumnError
from safeset.io.columns import ColumnOptions
from tests.conftest import write_list
from tests.helpers import assert_reconciles, clean, findings, scan


@pytest.fixture
def laion_banks(tmp_path: Path) -> Path:
    banks = tmp_path / "banks"
    store = BankStore(banks)
    # Rows 3 and 71 by image md5; row 10 by URL written in another case and scheme; row 88 by its URL's MD5.
    store.add(
        "md5", "md5", write_list(tmp_path / "m.txt", [hashlib.md5(f"image-{i}".encode()).hexdigest() for i in (3, 71)])
    )
    store.add("urls", "url", write_list(tmp_path / "u.txt", ["HTTP://IMG0.EXAMPLE.ORG/p/10.jpg"]))
    url88 = "img3.example.org/p/88.jpg"
    store.add("urlmd5", "url-md5", write_list(tmp_path / "h.txt", [hashlib.md5(url88.encode()).hexdigest()]))
    return banks


def test_metadata_only_matching_without_images(laion_dir: Path, laion_banks: Path, tmp_path: Path) -> None:
    summary = scan(laion_dir, laion_banks, tmp_path / "run")
    assert summary["dataset"]["read_images"] is False
    assert (summary["rows_in"], summary["rows_flagged"], summary["rows_errored"]) == (100, 4, 0)
    got = sorted((f["key"], f["detector"], f["bank"], f["action"]) for f in findings(tmp_path / "run"))
    assert got == [
        ("part-00000.parquet:10", "url", "urls", "remove"),
        ("part-00000.parquet:3", "md5", "md5", "remove"),
        ("part-00001.parquet:21", "md5", "md5", "remove"),
        ("part-00001.parquet:38", "url-md5", "urlmd5", "remove"),
    ]
    evidence = {f["key"]: f["evidence"] for f in findings(tmp_path / "run")}
    assert "metadata column md5" in evidence["part-00000.parquet:3"]
    assert {f["domain"] for f in findings(tmp_path / "run")} == {"example.org"}


def test_url_hash_banks_under_each_algorithm(laion_dir: Path, tmp_path: Path) -> None:
    banks = tmp_path / "hb"
    form = "img2.example.org/p/57.jpg"  # row 57's URL in the ThreatExchange form
    for algo in ("sha1", "sha256"):
        digest = getattr(hashlib, algo)(form.encode()).hexdigest()
        BankStore(banks).add(f"u{algo}", f"url-{algo}", write_list(tmp_path / f"{algo}.txt", [digest]))
    scan(laion_dir, banks, tmp_path / "run")
    got = sorted((f["key"], f["detector"]) for f in findings(tmp_path / "run"))
    assert got == [("part-00001.parquet:7", "url-sha1"), ("part-00001.parquet:7", "url-sha256")]


def test_key_column_and_passthrough_release(laion_dir: Path, laion_banks: Path, tmp_path: Path) -> None:
    scan(laion_dir, laion_banks, tmp_path / "run", columns=ColumnOptions(key_col="hash"))
    keys = {f["key"] for f in findings(tmp_path / "run")}
    assert str(3 * 7919 - 10**12) in keys
    manifest = clean(laion_dir, tmp_path / "run", tmp_path / "release")
    assert_reconciles(manifest)
    assert (manifest["rows_kept"], manifest["rows_removed"]) == (96, 4)
    for part in ("part-00000.parquet", "part-00001.parquet"):
        original = pq.read_table(laion_dir / part)
        cleaned = pq.read_table(tmp_path / "release" / part)
        assert cleaned.schema == original.schema  # every column passes through, types and metadata intact
        kept_keys = set(cleaned["hash"].to_pylist())
        expected = original.filter(pc.is_in(original["hash"], value_set=pa.array(sorted(kept_keys), pa.int64())))
        assert cleaned.equals(expected)
        assert not kept_keys & {int(k) for k in keys}


def test_missing_requested_column_is_refused_before_work(laion_dir: Path, laion_banks: Path, tmp_path: Path) -> None:
    with pytest.raises(ColumnError) as err:
        scan(laion_dir, laion_banks, tmp_path / "run", columns=ColumnOptions(url_col="image_link"))
    message = str(err.value)
    assert "'image_link' not found" in message and "URL, TEXT, WIDTH" in message
    assert not (tmp_path / "run").exists()


def test_unreadable_parquet_shard_is_reported_and_others_finish(
    laion_dir: Path, laion_banks: Path, tmp_path: Path
) -> None:
    broken = laion_dir / "part-00001.parquet"
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2])  # truncated: footer gone
    summary = scan(laion_dir, laion_banks, tmp_path / "run")
    by_shard = {s["shard"]: s for s in summary["shards"]}
    assert by_shard["part-00000.parquet"]["error"] is None
    assert "part-00001.parquet" in by_shard["part-00001.parquet"]["error"]
    assert summary["shards_failed"] == 1
    manifest = clean(laion_dir, tmp_path / "run", tmp_path / "release")
    assert_reconciles(manifest)
    assert not (tmp_path / "release" / "part-00001.parquet").exists()


def test_banks_that_cannot_apply_are_refused(laion_dir: Path, tmp_path: Path) -> None:
    from safeset.errors import SafesetError

    table = pq.read_table(laion_dir / "part-00000.parquet").drop_columns(["md5"])
    only = tmp_path / "nomd5"
    only.mkdir()
    pq.write_table(table, only / "a.parquet")
    banks = tmp_path / "b"
    BankStore(banks).add("m", "md5", write_list(tmp_path / "m.txt", ["0" * 32]))
    with pytest.raises(SafesetError, match="no images to hash"):
        scan(only, banks, tmp_path / "run")


def test_shards_are_read_one_row_group_at_a_time(laion_dir: Path) -> None:
    from safeset.io.parquet import ParquetDataset

    dataset = ParquetDataset(laion_dir)
    shard = dataset.shards()[0]
    batches = list(dataset.iter_batches(shard, 32, False))
    # Row groups of 20 rows: a batch never spans two, so no more than one group is held at a time.
    assert [len(b) for b in batches] == [20, 20, 10]
    assert np.concatenate([b.rows for b in batches]).tolist() == list(range(50))
    urls = [url for b in batches if b.urls is not None for url in b.urls.to_pylist()]
    assert urls == pq.read_table(shard.path)["URL"].to_pylist()


def test_write_shard_streams_row_groups_and_accepts_members(laion_dir: Path, tmp_path: Path) -> None:
    from safeset.io.parquet import ParquetDataset

    dataset = ParquetDataset(laion_dir)
    shard = dataset.shards()[1]
    result = dataset.write_shard(shard, np.array([49, 0, 19, 20]), tmp_path / "out", members=None)
    original = pq.read_table(shard.path)
    cleaned = pq.read_table(tmp_path / "out" / shard.id)
    assert result.rows_written == 46 == cleaned.num_rows
    keep = np.ones(50, dtype=bool)
    keep[[0, 19, 20, 49]] = False
    assert cleaned.equals(original.filter(pa.array(keep)))
