"""Release integrity: shards pinned at scan time, staged and versioned releases, failed shards, exit codes.

Each test here is a case from the release-integrity issue that went wrong on the earlier main with exit status 0.
"""

from __future__ import annotations

import errno
import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xxhash
from typer.testing import CliRunner

from safeset.banks.store import BankStore
from safeset.cli.main import app
from safeset.errors import SafesetError
from safeset.io.columns import ColumnOptions
from safeset.release import clean as clean_module
from safeset.rundir import shard_file_stem
from tests.conftest import laion_table, write_list
from tests.helpers import assert_reconciles, clean, findings, scan

runner = CliRunner()


def invoke(*args: object) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture
def keyed_laion(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """Two LAION-style parts with a `key` column, and an md5 bank holding three rows of the first part."""
    root = tmp_path / "laion"
    root.mkdir()
    for part in range(2):
        table = laion_table(40, offset=part * 40)
        table = table.append_column("key", pa.array([f"k{part}-{i:03d}" for i in range(40)]))
        pq.write_table(table, root / f"part-{part:05d}.parquet", row_group_size=16)
    first = pq.read_table(root / "part-00000.parquet")
    flagged = [first["md5"][i].as_py() for i in (3, 17, 30)]
    banks = tmp_path / "banks"
    BankStore(banks).add("known", "md5", write_list(tmp_path / "md5.txt", flagged))
    return root, banks, [f"k0-{i:03d}" for i in (3, 17, 30)]


def test_a_shard_resorted_after_the_scan_is_refused_and_nothing_is_released(
    keyed_laion: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    root, banks, _ = keyed_laion
    scan(root, banks, tmp_path / "run", columns=_key_columns())
    part = root / "part-00000.parquet"
    table = pq.read_table(part)
    pq.write_table(table.take(pa.array(list(reversed(range(table.num_rows))))), part, row_group_size=16)
    with pytest.raises(SafesetError, match=r"part-00000\.parquet changed since the scan"):
        clean(root, tmp_path / "run", tmp_path / "release")
    assert not (tmp_path / "release").exists()
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name]
    assert not (tmp_path / "run" / "releases").exists() or not any((tmp_path / "run" / "releases").iterdir())


def test_unchanged_keyed_shards_are_cleaned_by_key(keyed_laion: tuple[Path, Path, list[str]], tmp_path: Path) -> None:
    root, banks, flagged_keys = keyed_laion
    scan(root, banks, tmp_path / "run", columns=_key_columns())
    manifest = clean(root, tmp_path / "run", tmp_path / "release")
    assert_reconciles(manifest)
    kept = pq.read_table(tmp_path / "release" / "part-00000.parquet")["key"].to_pylist()
    assert not set(flagged_keys) & set(kept) and len(kept) == 37


def test_a_clean_that_fails_midway_leaves_nothing_in_out(
    keyed_laion: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    root, banks, _ = keyed_laion
    scan(root, banks, tmp_path / "run", columns=_key_columns())
    # The second shard changes after the first has been written to the staging folder.
    second = root / "part-00001.parquet"
    pq.write_table(pq.read_table(second).slice(1), second)
    (tmp_path / "release").mkdir()  # an empty folder given as --out stays empty
    with pytest.raises(SafesetError, match=r"part-00001\.parquet changed since the scan"):
        clean(root, tmp_path / "run", tmp_path / "release")
    assert list((tmp_path / "release").iterdir()) == []
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name]


def test_each_clean_keeps_its_own_private_record(keyed_laion: tuple[Path, Path, list[str]], tmp_path: Path) -> None:
    root, banks, flagged_keys = keyed_laion
    run = tmp_path / "run"
    scan(root, banks, run, columns=_key_columns())
    first = clean(root, run, tmp_path / "release-a")
    second = clean(root, run, tmp_path / "release-b", cover_ratio=2.0)
    assert first["release_id"] != second["release_id"]
    records = sorted((run / "releases").iterdir())
    assert len(records) == 2
    for record, manifest in (
        (run / "releases" / first["release_id"], first),
        (run / "releases" / second["release_id"], second),
    ):
        assert record in records
        assert (record.stat().st_mode & 0o777) == 0o700
        accounting = json.loads((record / "accounting.json").read_text())
        assert accounting["rows_removed"] == manifest["rows_removed"]
        assert set(pq.read_table(record / "removed.parquet")["key"].to_pylist()) == set(flagged_keys)
        assert ((record / "removed.parquet").stat().st_mode & 0o777) == 0o600
    assert first["rows_removed"] == 3 and second["rows_removed"] > 3
    # The public manifest names no private record and no key.
    public = (tmp_path / "release-a" / "_safeset" / "release.json").read_text()
    assert first["release_id"] not in public and flagged_keys[0] not in public


def test_shard_ids_map_to_distinct_result_files(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    one, two = laion_table(10), laion_table(10, offset=100)
    pq.write_table(one, root / "a" / "00000.parquet")
    pq.write_table(two, root / "a__00000.parquet")
    banks = tmp_path / "banks"
    BankStore(banks).add("known", "md5", write_list(tmp_path / "m.txt", [one["md5"][2].as_py(), two["md5"][5].as_py()]))
    summary = scan(root, banks, tmp_path / "run")
    assert shard_file_stem("a/00000.parquet") != shard_file_stem("a__00000.parquet")
    assert summary["rows_flagged"] == 2
    assert sorted((f["shard"], f["row"]) for f in findings(tmp_path / "run")) == [
        ("a/00000.parquet", 2),
        ("a__00000.parquet", 5),
    ]


def test_failed_shards_exit_1_withheld_and_listed(laion_dir: Path, tmp_path: Path) -> None:
    banks = tmp_path / "banks"
    md5 = pq.read_table(laion_dir / "part-00001.parquet")["md5"][4].as_py()
    BankStore(banks).add("known", "md5", write_list(tmp_path / "m.txt", [md5]))
    (laion_dir / "part-00000.parquet").write_bytes(b"PAR1 this is not a parquet file")  # the first shard
    code, output = invoke("scan", laion_dir, "--banks", banks, "--out", tmp_path / "run")
    assert code == 1, output
    assert "Traceback" not in output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["shards_failed"] == 1 and summary["rows_flagged"] == 1
    code, output = invoke("clean", laion_dir, tmp_path / "run", "--out", tmp_path / "release")
    assert code == 1 and "part-00000.parquet" in output
    release = json.loads((tmp_path / "release" / "_safeset" / "release.json").read_text())
    assert release["failed_shards"] == ["part-00000.parquet"]
    assert not (tmp_path / "release" / "part-00000.parquet").exists()
    code, output = invoke(
        "clean", laion_dir, tmp_path / "run", "--out", tmp_path / "release-2", "--allow-failed-shards"
    )
    assert code == 0, output
    records = [json.loads((r / "accounting.json").read_text()) for r in (tmp_path / "run" / "releases").iterdir()]
    assert sorted(r["failed_shards_allowed"] for r in records) == [False, True]
    assert all(r["failed_shards"] == ["part-00000.parquet"] for r in records)


@pytest.mark.parametrize("where", ["dataset", "inside", "file", "not-a-run"])
def test_scan_out_must_be_new_empty_or_a_run(laion_dir: Path, tmp_path: Path, where: str) -> None:
    banks = tmp_path / "banks"
    BankStore(banks).add("known", "md5", write_list(tmp_path / "m.txt", ["0" * 32]))
    out = {
        "dataset": laion_dir,
        "inside": laion_dir / "run",
        "file": tmp_path / "afile",
        "not-a-run": tmp_path / "busy",
    }[where]
    if where == "file":
        out.write_text("x")
    if where == "not-a-run":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    code, output = invoke("scan", laion_dir, "--banks", banks, "--out", out)
    assert code == 2 and "error:" in output and "Traceback" not in output
    if where == "not-a-run":
        assert (out / "notes.txt").read_text() == "mine" and len(list(out.iterdir())) == 1


def test_damaged_run_dir_is_one_line(laion_dir: Path, tmp_path: Path) -> None:
    banks = tmp_path / "banks"
    BankStore(banks).add("known", "md5", write_list(tmp_path / "m.txt", ["0" * 32]))
    run = tmp_path / "run"
    assert invoke("scan", laion_dir, "--banks", banks, "--out", run)[0] == 0
    (run / "shards" / f"{shard_file_stem('part-00000.parquet')}.json").write_text("{ not json")
    code, output = invoke("scan", laion_dir, "--banks", banks, "--out", run, "--resume")
    assert code == 2 and "damaged" in output and "Traceback" not in output
    (run / "run.json").write_bytes(b"\xff\xfe")
    code, output = invoke("scan", laion_dir, "--banks", banks, "--out", run, "--resume")
    assert code == 2 and "run.json" in output
    (run / "summary.json").write_text("[]")
    code, output = invoke("clean", laion_dir, run, "--out", tmp_path / "release")
    assert code == 2 and "damaged" in output


def test_planted_symlinks_receive_nothing(laion_dir: Path, tmp_path: Path) -> None:
    banks = tmp_path / "banks"
    md5 = pq.read_table(laion_dir / "part-00000.parquet")["md5"][1].as_py()
    BankStore(banks).add("known", "md5", write_list(tmp_path / "m.txt", [md5]))
    run = tmp_path / "run"
    scan(run_dir=run, dataset=laion_dir, banks=banks)
    # Someone with write access to the run dir plants symlinks where a resumed run will write.
    outside = tmp_path / "outside.parquet"
    outside.write_bytes(b"precious")
    stem = shard_file_stem("part-00000.parquet")
    for name in (f"{stem}.json", f"{stem}.findings.parquet", f"{stem}.errors.parquet"):
        (run / "shards" / name).unlink()
        (run / "shards" / name).symlink_to(outside)
    (run / "findings.parquet").unlink()
    (run / "findings.parquet").symlink_to(outside)
    scan(laion_dir, banks, run, resume=True)
    assert outside.read_bytes() == b"precious"
    assert not (run / "findings.parquet").is_symlink()
    assert [f["row"] for f in findings(run)] == [1]


def test_full_disk_during_clean_is_reported_as_such(
    laion_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    banks = tmp_path / "banks"
    BankStore(banks).add("known", "md5", write_list(tmp_path / "m.txt", ["0" * 32]))
    assert invoke("scan", laion_dir, "--banks", banks, "--out", tmp_path / "run")[0] == 0

    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))

    monkeypatch.setattr(clean_module.ParquetDataset, "write_shard", no_space)
    code, output = invoke("clean", laion_dir, tmp_path / "run", "--out", tmp_path / "release")
    assert code == 2 and "no space left on device" in output and "Traceback" not in output
    assert not (tmp_path / "release").exists()


def test_metadata_only_scan_of_image_shards_cannot_be_released(webdataset_dir: Path, tmp_path: Path) -> None:
    banks = tmp_path / "banks"
    BankStore(banks).add("known", "md5", write_list(tmp_path / "m.txt", ["0" * 32]))
    scan(webdataset_dir, banks, tmp_path / "run", metadata_only=True)
    with pytest.raises(SafesetError, match="did not read the images"):
        clean(webdataset_dir, tmp_path / "run", tmp_path / "release")
    assert not (tmp_path / "release").exists()


def test_pins_record_every_file_of_a_shard(keyed_laion: tuple[Path, Path, list[str]], tmp_path: Path) -> None:
    root, banks, _ = keyed_laion
    summary = scan(root, banks, tmp_path / "run", columns=_key_columns())
    pins = {s["shard"]: s["pins"] for s in summary["shards"]}
    data = (root / "part-00000.parquet").read_bytes()
    assert pins["part-00000.parquet"][0]["file"] == "part-00000.parquet"
    assert pins["part-00000.parquet"][0]["size"] == len(data)
    assert pins["part-00000.parquet"][0]["xxh3_128"] == xxhash.xxh3_128_hexdigest(data)
    assert pins["part-00000.parquet"][0]["xxh3_128"] != pins["part-00001.parquet"][0]["xxh3_128"]


def _key_columns() -> ColumnOptions:
    return ColumnOptions(key_col="key")


def test_kept_errored_rows_never_carry_unchecked_members(webdataset_dir: Path, tmp_path: Path) -> None:
    """With --keep-errored a row whose sample holds a member the scan could not classify is kept, without it."""
    shard = webdataset_dir / "00000.tar"
    with tarfile.open(shard) as source:
        members = [(m, source.extractfile(m).read()) for m in source if m.isfile()]  # type: ignore[union-attr]
    first_key = members[0][0].name.split(".")[0]
    odd = tarfile.TarInfo(f"{first_key}.dat")
    odd.size = len(b"unclassifiable payload")
    with tarfile.open(shard, "w") as target:
        for info, data in members[:1]:
            target.addfile(info, io.BytesIO(data))
        target.addfile(odd, io.BytesIO(b"unclassifiable payload"))
        for info, data in members[1:]:
            target.addfile(info, io.BytesIO(data))
    banks = tmp_path / "banks"
    BankStore(banks).add("known", "md5", write_list(tmp_path / "m.txt", ["0" * 32]))
    summary = scan(webdataset_dir, banks, tmp_path / "run")
    assert summary["rows_errored"] >= 1
    manifest = clean(webdataset_dir, tmp_path / "run", tmp_path / "release", keep_errored=True)
    assert_reconciles(manifest)
    assert manifest["members_withheld"] == 1
    with tarfile.open(tmp_path / "release" / "00000.tar") as released:
        names = [m.name for m in released]
    assert f"{first_key}.dat" not in names and any(n.startswith(first_key + ".") for n in names)


def test_full_disk_during_scan_is_reported_as_such(
    laion_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    banks = tmp_path / "banks"
    BankStore(banks).add("known", "md5", write_list(tmp_path / "m.txt", ["0" * 32]))
    import safeset.scan.task as scan_module

    def no_space(path: Path, *args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(scan_module, "write_parquet", no_space)
    code, output = invoke("scan", laion_dir, "--banks", banks, "--out", tmp_path / "run")
    assert code == 1 and "no space left on device" in output and "--resume" in output
    assert "Traceback" not in output and "unreadable" not in output


def test_the_summary_says_which_column_keys_the_rows(tmp_path: Path) -> None:
    root = tmp_path / "laion"
    root.mkdir()
    table = laion_table(12).append_column("SAMPLE_ID", pa.array(range(1000, 1012), type=pa.int64()))
    pq.write_table(table, root / "part-00000.parquet")
    banks = tmp_path / "banks"
    BankStore(banks).add("known", "md5", write_list(tmp_path / "m.txt", [table["md5"][4].as_py()]))
    summary = scan(root, banks, tmp_path / "run")
    assert summary["dataset"]["row_key"] == "column 'SAMPLE_ID' (detected)"
    assert summary["dataset"]["hash_columns"] == {"md5": "md5"}
    assert [f["key"] for f in findings(tmp_path / "run")] == ["1004"]
    code, output = invoke("scan", root, "--banks", banks, "--out", tmp_path / "run2")
    assert code == 0 and "rows keyed by: column 'SAMPLE_ID' (detected)" in output


def test_kept_errored_folder_images_the_scan_never_read_stay_out(tmp_path: Path) -> None:
    """--keep-errored keeps rows whose bytes were read but not fully checked; an image refused unread is withheld."""
    from PIL import Image

    root = tmp_path / "photos"
    root.mkdir()
    for name, size in (("small", 8), ("large", 64)):
        Image.new("RGB", (size, size), (size, 100, 50)).save(root / f"{name}.png")
    (root / "large.txt").write_text("a large picture")
    limit = (root / "small.png").stat().st_size + 10
    assert (root / "large.png").stat().st_size > limit
    banks = tmp_path / "banks"
    BankStore(banks).add("known", "md5", write_list(tmp_path / "m.txt", ["0" * 32]))
    summary = scan(root, banks, tmp_path / "run", max_member_bytes=limit)
    assert summary["rows_errored"] == 1
    manifest = clean(root, tmp_path / "run", tmp_path / "release", keep_errored=True)
    assert_reconciles(manifest)
    assert (manifest["rows_kept"], manifest["rows_errored"]) == (1, 1)
    assert sorted(p.name for p in (tmp_path / "release").iterdir() if p.is_file()) == ["small.png"]
