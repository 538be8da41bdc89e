"""Row keys and metadata hash columns as datasets name them: detected (`SAMPLE_ID`, `sha256hash`, ...) or chosen
with `--key-col` / `--hash-col NAME:KIND`."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from safeset.banks.store import BankStore
from safeset.cli.main import app
from safeset.errors import ColumnError, SafesetError
from safeset.io.columns import ColumnOptions, detect_hash_columns, parse_hash_col, resolve_columns
from tests.helpers import findings, scan

runner = CliRunner()
IMAGES = [f"image bytes {i}".encode() for i in range(6)]


def _write(root: Path, table: pa.Table) -> Path:
    root.mkdir()
    pq.write_table(table, root / "part-00000.parquet")
    return root


def _bank(tmp_path: Path, kind: str, *rows: int) -> Path:
    banks = tmp_path / "banks"
    digests = [getattr(hashlib, kind)(IMAGES[r]).hexdigest() for r in rows]
    (tmp_path / f"{kind}.txt").write_text("\n".join(digests) + "\n")
    BankStore(banks).add(f"known-{kind}", kind, tmp_path / f"{kind}.txt")
    return banks


@pytest.mark.parametrize(
    ("names", "key", "origin"),
    [
        (["URL", "TEXT", "SAMPLE_ID"], "SAMPLE_ID", "detected"),
        (["url", "caption", "sample_id", "id"], "sample_id", "detected"),
        (["SAMPLE_ID", "key", "url"], "key", "detected"),  # img2dataset's own key first
        (["url", "id"], "id", "detected"),
        (["url", "caption"], None, "none"),
    ],
)
def test_row_key_detected_in_order_of_preference(names: list[str], key: str | None, origin: str) -> None:
    cmap = resolve_columns(names, ColumnOptions(), "f.parquet", set())
    assert (cmap.key, cmap.key_origin) == (key, origin)
    assert cmap.key_description() == (f"column {key!r} (detected)" if key else "file:row (no key column found)")
    chosen = resolve_columns([*names, "my_key"], ColumnOptions(key_col="my_key"), "f.parquet", set())
    assert chosen.key_description() == "column 'my_key' (--key-col)"


def test_hash_columns_detected_and_chosen() -> None:
    assert detect_hash_columns(["URL", "sha256hash", "MD5"]) == {"md5": "MD5", "sha256": "sha256hash"}
    assert detect_hash_columns(["url", "sha1_hash", "width"]) == {"sha1": "sha1_hash"}
    assert detect_hash_columns(["url", "digest", "md5"], (("digest", "md5"),)) == {"md5": "digest"}
    assert parse_hash_col("my:col:SHA256") == ("my:col", "sha256")
    for bad in ("digest", ":md5", "digest:crc32"):
        with pytest.raises(SafesetError, match="--hash-col"):
            parse_hash_col(bad)
    with pytest.raises(ColumnError):
        resolve_columns(["url"], ColumnOptions(hash_cols=(("digest", "md5"),)), "f.parquet", set())


def test_scan_keys_rows_by_sample_id_and_matches_sha256hash(tmp_path: Path) -> None:
    table = pa.table(
        {
            "URL": [f"https://example.org/{i}.jpg" for i in range(6)],
            "SAMPLE_ID": pa.array([1000 + i for i in range(6)], pa.int64()),
            "sha256hash": [hashlib.sha256(b).hexdigest() for b in IMAGES],
        }
    )
    dataset = _write(tmp_path / "d", table)
    banks = _bank(tmp_path, "sha256", 2, 5)
    scan(dataset, banks, tmp_path / "run", metadata_only=True)
    got = {f["key"]: f["evidence"] for f in findings(tmp_path / "run")}
    assert set(got) == {"1002", "1005"}
    assert all(e.endswith("(metadata column sha256)") for e in got.values())


def test_cli_hash_col_names_an_unusual_column(tmp_path: Path) -> None:
    table = pa.table(
        {
            "url": [f"https://example.org/{i}.jpg" for i in range(6)],
            "key": [f"k{i}" for i in range(6)],
            "image_digest": [hashlib.md5(b).hexdigest() for b in IMAGES],
        }
    )
    dataset = _write(tmp_path / "d", table)
    banks = _bank(tmp_path, "md5", 3)
    base = ["scan", str(dataset), "--banks", str(banks), "--metadata-only"]
    refused = runner.invoke(app, [*base, "--out", str(tmp_path / "r0")])
    assert refused.exit_code == 2 and "no 'md5' column" in refused.output  # not detected under that name
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "r1"), "--hash-col", "image_digest:md5"])
    assert result.exit_code == 0, result.output
    assert [f["key"] for f in findings(tmp_path / "r1")] == ["k3"]
    bad = runner.invoke(app, [*base, "--out", str(tmp_path / "r2"), "--hash-col", "image_digest:crc32"])
    assert bad.exit_code == 2 and "unknown hash kind 'crc32'" in bad.output
    missing = runner.invoke(app, [*base, "--out", str(tmp_path / "r3"), "--hash-col", "nope:md5"])
    assert missing.exit_code == 2 and "nope" in missing.output
