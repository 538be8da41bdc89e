"""img2dataset webdataset shards: joins with the sidecar parquet, and every bad-input case."""

from __future__ import annotations

import io
import struct
import tarfile
import zlib
from pathlib import Path

import pyarrow.parquet as pq

from safeset.demo import DemoRow, write_webdataset
from tests.helpers import assert_reconciles, clean, errors, findings, scan


def test_scan_flags_known_images_from_bytes_and_metadata(
    webdataset_dir: Path, md5_bank: tuple[Path, list[DemoRow]], tmp_path: Path
) -> None:
    banks, known = md5_bank
    summary = scan(webdataset_dir, banks, tmp_path / "run")
    assert summary["rows_in"] == 36 and summary["rows_errored"] == 0
    got = findings(tmp_path / "run")
    assert {f["key"] for f in got} == {r.key for r in known}
    sources = sorted(f["evidence"].split("(")[1] for f in got if f["key"] == known[0].key)
    assert sources == ["image bytes)", "metadata column md5)"]
    assert summary["rows_by_action"] == {"remove": 3}


def test_failed_downloads_are_rows_without_images(
    webdataset_dir: Path, md5_bank: tuple[Path, list[DemoRow]], tmp_path: Path
) -> None:
    banks, _ = md5_bank
    scan(webdataset_dir, banks, tmp_path / "run")
    manifest = clean(webdataset_dir, tmp_path / "run", tmp_path / "release")
    assert_reconciles(manifest)
    meta = pq.read_table(tmp_path / "release" / "00000.parquet")
    assert "failed_to_download" in meta["status"].to_pylist()  # passes through: not an error, no image


def test_corrupt_image_is_errored_and_withheld(
    tmp_path: Path, demo_shards: list[list[DemoRow]], md5_bank: tuple[Path, list[DemoRow]]
) -> None:
    banks, _ = md5_bank
    victim = demo_shards[1][2]
    assert victim.image is not None
    victim.image = victim.image[:200]
    write_webdataset(tmp_path / "ds", demo_shards)
    summary = scan(tmp_path / "ds", banks, tmp_path / "run")
    assert summary["rows_errored"] == 1
    (error,) = errors(tmp_path / "run")
    assert error["key"] == victim.key and "truncated" in error["reason"]
    manifest = clean(tmp_path / "ds", tmp_path / "run", tmp_path / "release")
    assert_reconciles(manifest)
    with tarfile.open(tmp_path / "release" / "00001.tar") as tar:
        assert not [m for m in tar.getnames() if m.startswith(victim.key)]
    kept = clean(tmp_path / "ds", tmp_path / "run", tmp_path / "release2", keep_errored=True)
    assert kept["rows_errored"] == 0 and kept["rows_kept"] == manifest["rows_kept"] + 1


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge size: must be refused from the header, never decoded."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_decompression_bomb_is_errored_not_decoded(
    tmp_path: Path, demo_shards: list[list[DemoRow]], md5_bank: tuple[Path, list[DemoRow]]
) -> None:
    banks, _ = md5_bank
    demo_shards[0][0].image = _png_header_only(60000, 60000)
    write_webdataset(tmp_path / "ds", demo_shards, md5_column=False)
    scan(tmp_path / "ds", banks, tmp_path / "run")
    (error,) = errors(tmp_path / "run")
    assert error["key"] == demo_shards[0][0].key and "exceeds" in error["reason"]


def test_truncated_tar_is_reported_and_other_shards_finish(
    webdataset_dir: Path, md5_bank: tuple[Path, list[DemoRow]], tmp_path: Path
) -> None:
    banks, _ = md5_bank
    shard = webdataset_dir / "00001.tar"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    summary = scan(webdataset_dir, banks, tmp_path / "run")
    failed = [s for s in summary["shards"] if s["error"]]
    assert [s["shard"] for s in failed] == ["00001.tar"]
    assert "00001.tar" in failed[0]["error"] and "truncated" in failed[0]["error"]
    assert failed[0]["rows_errored"] == failed[0]["rows_in"] == 12  # known from the sidecar parquet
    assert summary["rows_in"] == 36
    manifest = clean(webdataset_dir, tmp_path / "run", tmp_path / "release")
    assert_reconciles(manifest)
    assert not (tmp_path / "release" / "00001.tar").exists()
    assert (tmp_path / "release" / "00002.tar").exists()


def test_member_paths_escaping_the_shard_are_refused(
    demo_shards: list[list[DemoRow]], md5_bank: tuple[Path, list[DemoRow]], tmp_path: Path
) -> None:
    banks, _ = md5_bank
    for name in ("../evil.jpg", "/abs/evil.jpg"):
        webdataset_dir = tmp_path / f"ds{len(name)}"
        write_webdataset(webdataset_dir, demo_shards)
        with tarfile.open(webdataset_dir / "00002.tar", "a") as tar:
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"abc"))
        summary = scan(webdataset_dir, banks, tmp_path / f"run{len(name)}")
        (failed,) = [s for s in summary["shards"] if s["error"]]
        assert "refused" in failed["error"] and name in failed["error"]


def test_tar_without_sidecar_uses_member_metadata(
    tmp_path: Path, demo_shards: list[list[DemoRow]], md5_bank: tuple[Path, list[DemoRow]]
) -> None:
    banks, known = md5_bank
    write_webdataset(tmp_path / "ds", demo_shards)
    for sidecar in (tmp_path / "ds").glob("*.parquet"):
        sidecar.unlink()
    summary = scan(tmp_path / "ds", banks, tmp_path / "run")
    assert summary["rows_in"] == sum(r.image is not None for rows in demo_shards for r in rows)
    assert {f["key"] for f in findings(tmp_path / "run")} == {r.key for r in known}
    assert_reconciles(clean(tmp_path / "ds", tmp_path / "run", tmp_path / "release"))
