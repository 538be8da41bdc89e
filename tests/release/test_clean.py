"""The release: same format, flagged rows gone (bytes included), counts reconciled, no roadmap published."""

from __future__ import annotations

import hashlib
import json
import stat
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from safeset.banks.store import BankStore
from safeset.demo import DemoRow
from safeset.errors import SafesetError
from tests.conftest import image_rows, write_list
from tests.helpers import assert_reconciles, clean, release_manifest, scan


def all_release_bytes(release: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(release.rglob("*")) if p.is_file())


def test_no_flagged_bytes_reach_the_release(
    webdataset_dir: Path, md5_bank: tuple[Path, list[DemoRow]], tmp_path: Path
) -> None:
    banks, known = md5_bank
    scan(webdataset_dir, banks, tmp_path / "run")
    manifest = clean(webdataset_dir, tmp_path / "run", tmp_path / "release")
    assert_reconciles(manifest)
    assert manifest["rows_removed"] == 3
    everything = all_release_bytes(tmp_path / "release")
    for row in known:
        assert row.image is not None and row.image not in everything
    names = sorted(p.name for p in (tmp_path / "release").iterdir())
    assert names == [
        "00000.parquet",
        "00000.tar",
        "00000_stats.json",
        "00001.parquet",
        "00001.tar",
        "00001_stats.json",
        "00002.parquet",
        "00002.tar",
        "00002_stats.json",
        "_safeset",
    ]


def test_kept_samples_are_byte_identical_and_stats_recounted(
    webdataset_dir: Path, md5_bank: tuple[Path, list[DemoRow]], demo_shards: list[list[DemoRow]], tmp_path: Path
) -> None:
    banks, known = md5_bank
    scan(webdataset_dir, banks, tmp_path / "run")
    clean(webdataset_dir, tmp_path / "run", tmp_path / "release")
    removed = {r.key for r in known}
    for shard_id, rows in enumerate(demo_shards):
        with tarfile.open(tmp_path / "release" / f"{shard_id:05d}.tar") as tar:
            images = {m.name.split(".")[0]: tar.extractfile(m).read() for m in tar if m.name.endswith(".jpg")}  # type: ignore[union-attr]
        expected = {r.key: r.image for r in rows if r.image is not None and r.key not in removed}
        assert images == expected
        meta = pq.read_table(tmp_path / "release" / f"{shard_id:05d}.parquet")
        assert set(meta["key"].to_pylist()) == {r.key for r in rows} - removed
        import json

        stats = json.loads((tmp_path / "release" / f"{shard_id:05d}_stats.json").read_text())
        assert stats["count"] == meta.num_rows
        assert stats["successes"] == meta["status"].to_pylist().count("success")
        assert sum(stats["status_dict"].values()) == meta.num_rows


def test_review_rows_are_kept_unless_asked(
    webdataset_dir: Path, demo_shards: list[list[DemoRow]], tmp_path: Path
) -> None:
    banks = tmp_path / "banks"
    row = image_rows(demo_shards)[5]
    BankStore(banks).add(
        "candidates",
        "md5",
        write_list(tmp_path / "c.txt", [hashlib.md5(row.image or b"").hexdigest()]),
        action="review",
    )
    summary = scan(webdataset_dir, banks, tmp_path / "run")
    assert summary["rows_by_action"] == {"review": 1}
    kept = clean(webdataset_dir, tmp_path / "run", tmp_path / "r1")
    assert (kept["rows_removed"], kept["rows_kept"]) == (0, 36)
    dropped = clean(webdataset_dir, tmp_path / "run", tmp_path / "r2", drop_review=True)
    assert (dropped["rows_removed"], dropped["rows_kept"]) == (1, 35)


def test_manifest_has_counts_only_and_removals_stay_private(
    webdataset_dir: Path, md5_bank: tuple[Path, list[DemoRow]], tmp_path: Path
) -> None:
    banks, known = md5_bank
    scan(webdataset_dir, banks, tmp_path / "run")
    manifest = clean(webdataset_dir, tmp_path / "run", tmp_path / "release")
    public = (tmp_path / "release" / "_safeset" / "release.json").read_text()
    for row in known:
        assert row.key not in public and row.url not in public
    assert release_manifest(tmp_path / "release")["rows_removed"] == 3
    record = Path("releases") / manifest["release_id"]
    for private in (record / "removed.parquet", "findings.parquet", "errors.parquet", "summary.json"):
        assert stat.S_IMODE((tmp_path / "run" / private).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o700
    removed = pq.read_table(tmp_path / "run" / record / "removed.parquet")
    assert set(removed["key"].to_pylist()) == {r.key for r in known}


def test_release_refuses_unsafe_targets(
    webdataset_dir: Path, md5_bank: tuple[Path, list[DemoRow]], tmp_path: Path
) -> None:
    banks, _ = md5_bank
    scan(webdataset_dir, banks, tmp_path / "run")
    with pytest.raises(SafesetError, match="outside the dataset"):
        clean(webdataset_dir, tmp_path / "run", webdataset_dir / "release")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(SafesetError, match="not empty"):
        clean(webdataset_dir, tmp_path / "run", tmp_path / "full")
    with pytest.raises(SafesetError, match="no finished scan"):
        clean(webdataset_dir, tmp_path / "nothing", tmp_path / "r")


def test_cover_removals_hide_the_flagged_rows(
    webdataset_dir: Path, md5_bank: tuple[Path, list[DemoRow]], tmp_path: Path
) -> None:
    banks, known = md5_bank
    scan(webdataset_dir, banks, tmp_path / "run")
    first = clean(webdataset_dir, tmp_path / "run", tmp_path / "r1", cover_ratio=3.0, cover_seed=11)
    assert_reconciles(first)
    cover = first["rows_removed_cover"]
    assert cover > 0 and first["rows_removed"] == 3 + cover
    public = release_manifest(tmp_path / "r1")
    assert public["rows_removed"] == 3 + cover and "rows_removed_cover" not in json.dumps(public)
    again = clean(webdataset_dir, tmp_path / "run", tmp_path / "r2", cover_ratio=3.0, cover_seed=11)
    assert again["shards"] == [{**s, "files": s["files"]} for s in first["shards"]]
    kept_keys = {
        key for shard in range(3) for key in pq.read_table(tmp_path / "r1" / f"{shard:05d}.parquet")["key"].to_pylist()
    }
    assert not kept_keys & {r.key for r in known}
    assert len(kept_keys) == first["rows_kept"]
