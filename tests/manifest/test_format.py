"""The manifest on disk: tampering and hostile files end in one clear line, signatures are checked."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safeset.errors import SafesetError
from safeset.fsutil import sha256_file
from safeset.manifest.format import JSON_NAME, PARQUET_NAME, generate_keypair, read_manifest, write_manifest
from safeset.manifest.keys import MANIFEST_SCHEMA


def _table(n: int = 5) -> pa.Table:
    return pa.table(
        {
            "dataset_key": [f"k{i}" for i in range(n)],
            "sample_id": pa.nulls(n, pa.string()),
            "laion_hash": pa.array(range(n), type=pa.int64()),
            "image_sha256": pa.nulls(n, pa.binary(32)),
            "image_md5": pa.nulls(n, pa.binary(16)),
            "url_canonical_md5": pa.array([bytes([i]) * 16 for i in range(n)], type=pa.binary(16)),
            "url_te_md5": pa.array([bytes([i + 1]) * 16 for i in range(n)], type=pa.binary(16)),
        },
        schema=MANIFEST_SCHEMA,
    )


def _write(folder: Path, sign_key: Path | None = None) -> Path:
    return write_manifest(
        folder,
        _table(),
        source_dataset_digest="0" * 64,
        counts={"rows_withheld": 5},
        roadmap={"roadmap_bound": 0.01},
        key_column="key",
        sign_key=sign_key,
    )


def test_round_trip_and_parquet_tampering(tmp_path: Path) -> None:
    folder = _write(tmp_path / "m")
    manifest = read_manifest(folder)
    assert manifest.table.equals(_table()) and not manifest.signed
    pq.write_table(_table(4), folder / PARQUET_NAME)  # a row taken out
    with pytest.raises(SafesetError, match="sha256 differs"):
        read_manifest(folder)


def test_signature_detects_any_change_and_other_keys(tmp_path: Path) -> None:
    generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    generate_keypair(tmp_path / "other.pem", tmp_path / "other.pub")
    folder = _write(tmp_path / "m", sign_key=tmp_path / "k.pem")
    assert read_manifest(folder, tmp_path / "k.pub").signed
    with pytest.raises(SafesetError, match="signature does not match"):
        read_manifest(folder, tmp_path / "other.pub")
    # Tampering with the parquet and re-recording its digest in the json: only the signature can tell.
    pq.write_table(_table(4), folder / PARQUET_NAME)
    info = json.loads((folder / JSON_NAME).read_text())
    info["parquet_sha256"], info["counts"]["entries"] = sha256_file(folder / PARQUET_NAME), 4
    (folder / JSON_NAME).write_text(json.dumps(info))
    assert read_manifest(folder).table.num_rows == 4  # unsigned reading cannot know
    with pytest.raises(SafesetError, match="signature does not match"):
        read_manifest(folder, tmp_path / "k.pub")


def test_unsigned_manifest_refused_when_a_key_is_given(tmp_path: Path) -> None:
    generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    folder = _write(tmp_path / "m")
    with pytest.raises(SafesetError, match="not signed"):
        read_manifest(folder, tmp_path / "k.pub")
    with pytest.raises(SafesetError, match="not a readable PEM"):
        read_manifest(folder, tmp_path / "m" / PARQUET_NAME)


def _rewrite(folder: Path, table: pa.Table | bytes) -> None:
    """Replace the parquet and record its digest, as a careless or hostile editor would."""
    if isinstance(table, bytes):
        (folder / PARQUET_NAME).write_bytes(table)
    else:
        pq.write_table(table, folder / PARQUET_NAME)
    info = json.loads((folder / JSON_NAME).read_text())
    info["parquet_sha256"] = sha256_file(folder / PARQUET_NAME)
    (folder / JSON_NAME).write_text(json.dumps(info))


def test_truncated_parquet_and_wrong_types(tmp_path: Path) -> None:
    folder = _write(tmp_path / "m")
    whole = (folder / PARQUET_NAME).read_bytes()
    _rewrite(folder, whole[: len(whole) // 2])
    with pytest.raises(SafesetError, match="unreadable manifest table"):
        read_manifest(folder)
    _rewrite(folder, _table().set_column(2, "laion_hash", pa.array(["x"] * 5)))
    with pytest.raises(SafesetError, match="'laion_hash' has type string, expected int64"):
        read_manifest(folder)
    _rewrite(folder, _table().drop_columns(["url_te_md5"]))
    with pytest.raises(SafesetError, match="'url_te_md5' missing"):
        read_manifest(folder)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_hostile_manifest_json_is_one_line(tmp_path: Path, payload: bytes) -> None:
    folder = tmp_path / "m"
    if not folder.exists():
        _write(folder)
    (folder / JSON_NAME).write_bytes(payload)
    with pytest.raises(SafesetError) as error:
        read_manifest(folder)
    assert "\n" not in str(error.value) and str(folder) in str(error.value)


def test_refuses_a_folder_that_is_not_new(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "x").write_text("x")
    with pytest.raises(SafesetError, match="not an empty folder"):
        _write(tmp_path / "m")
    with pytest.raises(SafesetError, match="not a removal manifest"):
        read_manifest(tmp_path / "m")
