"""PDQ banks end to end: import formats, the `pdq` detector in a scan, propagation to perceptual copies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from safeset.banks.store import BankStore
from safeset.cli.main import app
from safeset.demo import PHOTOS, demo_rows, variant, write_webdataset
from safeset.errors import InputError
from safeset.signals import pdq
from tests.conftest import write_list
from tests.helpers import assert_reconciles, clean, findings, scan

runner = CliRunner()


def photo_hash(name: str) -> str:
    return pdq.hash_images([(PHOTOS / f"{name}.jpg").read_bytes()], "exact").hex(0)


def test_bank_formats_quality_filter_and_counts(tmp_path: Path) -> None:
    a, b, c = photo_hash("coffee"), photo_hash("chelsea"), photo_hash("rocket")
    store = BankStore(tmp_path / "banks")
    plain = store.add("plain", "pdq", write_list(tmp_path / "p.txt", ["# list", a, b.upper(), a]))
    assert plain.entries == 2 and plain.duplicates == 1 and plain.details["quality_unknown"] == 3
    csv_lines = ["hash,quality,source", f"{a},100,x", f"{b},30,y", f"{c},90,z"]
    with_header = store.add("header", "pdq", write_list(tmp_path / "h.csv", csv_lines))
    assert with_header.entries == 2 and with_header.details["dropped_low_quality"] == 1
    no_header = store.add("bare", "pdq", write_list(tmp_path / "b.csv", [f"{a},100", f"{b}\t49", f"pdq {c} 80"]))
    assert no_header.entries == 2 and no_header.details["dropped_low_quality"] == 1
    relaxed = store.add("relaxed", "pdq", tmp_path / "b.csv", options={"min_quality": 0})
    assert relaxed.entries == 3
    column = store.add(
        "te", "pdq", write_list(tmp_path / "te.csv", ["id,indicator", f"1,{a}", f"2,{b}"]), column="indicator"
    )
    assert column.entries == 2
    unbalanced = store.add("odd", "pdq", write_list(tmp_path / "o.txt", ["f" * 64, a]))
    assert unbalanced.details["not_128_bits"] == 1  # all ones: kept, counted


def test_malformed_lines_name_file_and_line(tmp_path: Path) -> None:
    a = photo_hash("coffee")
    source = write_list(tmp_path / "bad.txt", [a, a[:-1], a + ",101"])
    with pytest.raises(InputError, match=r"bad\.txt.*line 2"):
        BankStore(tmp_path / "banks").add("bad", "pdq", source)
    info = BankStore(tmp_path / "banks").add("bad", "pdq", source, skip_invalid=True)
    assert info.entries == 1 and info.skipped_invalid == 2


ROWS_PER_SHARD = 12


def _dataset_with_copies(tmp_path: Path) -> tuple[Path, Path, list[str], list[str]]:
    """Demo shards whose images are re-encoded and resized (some also mirrored) copies of the photos; the bank
    holds the PDQ of two originals. Returns the keys of their plain and of their mirrored copies."""
    shards = demo_rows(shards=3, rows_per_shard=ROWS_PER_SHARD)
    write_webdataset(tmp_path / "ds", shards)
    lists = write_list(tmp_path / "known.txt", [photo_hash("coffee"), photo_hash("rocket")])
    banks = tmp_path / "banks"
    BankStore(banks).add("known-pdq", "pdq", lists)
    plain, mirrored = [], []
    for s, rows in enumerate(shards):
        for i, row in enumerate(rows):
            if row.image is not None and row.url.split("/")[3] in ("coffee", "rocket"):
                # demo.variant mirrors every third picture
                (mirrored if (s * ROWS_PER_SHARD + i) % 3 == 1 else plain).append(row.key)
    return tmp_path / "ds", banks, plain, mirrored


def test_scan_finds_reencoded_resized_and_mirrored_copies(tmp_path: Path) -> None:
    dataset, banks, plain, mirrored = _dataset_with_copies(tmp_path)
    assert len(plain) >= 2 and len(mirrored) >= 2
    summary = scan(dataset, banks, tmp_path / "run")
    found = {f["key"]: f for f in findings(tmp_path / "run") if f["detector"] == "pdq"}
    assert set(plain) <= set(found) <= set(plain) | set(mirrored)  # every re-encoded copy, nothing unrelated
    # Mirroring plus halving plus JPEG can move a flipped copy just past the radius (one is at 32 bits here).
    assert set(found) & set(mirrored)
    assert all(f["evidence"].startswith("pdq:") and " distance " in f["evidence"] for f in found.values())
    assert summary["findings_by_detector"] == {"pdq": len(found)}
    reference_only = scan(dataset, banks, tmp_path / "plain", policy={"pdq": {"dihedral": False, "unletterbox": False}})
    flagged = {f["key"] for f in findings(tmp_path / "plain")}
    assert reference_only["rows_flagged"] == len(plain) and flagged == set(plain)  # no mirrored copy without dihedral
    manifest = clean(dataset, tmp_path / "run", tmp_path / "release")
    assert_reconciles(manifest)
    assert manifest["rows_removed"] == len(found)


def test_metadata_only_scan_refuses_a_pdq_bank(tmp_path: Path) -> None:
    dataset, banks, _, _ = _dataset_with_copies(tmp_path)
    from safeset.errors import SafesetError

    with pytest.raises(SafesetError, match="need image bytes"):
        scan(dataset, banks, tmp_path / "run", metadata_only=True)


def test_duplicates_within_pdq_radius_of_a_flagged_row_are_flagged(tmp_path: Path) -> None:
    shards = demo_rows(shards=2, rows_per_shard=12)
    seed = next(r for r in shards[0] if r.image is not None)
    name = seed.url.split("/")[3]
    same_photo = [r.key for rows in shards for r in rows if r.image is not None and r.url.split("/")[3] == name]
    write_webdataset(tmp_path / "ds", shards)
    banks = tmp_path / "banks"
    BankStore(banks).add("urls", "url", write_list(tmp_path / "u.txt", [seed.url]))
    scan(tmp_path / "ds", banks, tmp_path / "run", expanders=("duplicate",))
    dupes = {f["key"]: f for f in findings(tmp_path / "run") if f["detector"] == "duplicate"}
    unmirrored = [k for k in same_photo if k != seed.key]
    assert set(dupes) <= set(unmirrored) and len(dupes) >= 1
    assert all(f"copy of {seed.key} (pdq distance" in f["evidence"] for f in dupes.values())


def test_hash_command_prints_tsv_and_names_unreadable_files(tmp_path: Path) -> None:
    good = tmp_path / "copy.jpg"
    good.write_bytes(variant("chelsea", 2))
    bad = write_list(tmp_path / "notes.txt", ["not an image"])
    result = runner.invoke(app, ["hash", str(good), str(bad), str(tmp_path / "missing.jpg"), "--mode", "exact"])
    assert result.exit_code == 1
    lines = [line for line in result.stdout.splitlines() if line]
    assert len(lines) == 1
    path, md5, value, quality = lines[0].split("\t")
    assert path == str(good) and len(md5) == 32 and len(value) == 64 and 0 <= int(quality) <= 100
    assert (
        int(
            pdq.popcount_distance(
                np.frombuffer(bytes.fromhex(value), np.uint8), pdq.hash_images([good.read_bytes()], "exact").hashes[0]
            )
        )
        == 0
    )
    assert "notes.txt: not a recognised image format" in result.stderr and "missing.jpg: cannot read" in result.stderr
    dihedral = runner.invoke(app, ["hash", str(good), "--dihedral"])
    assert dihedral.exit_code == 0 and len(dihedral.stdout.strip().split("\t")) == 4 + 8


def test_bank_add_reports_quality_drops(tmp_path: Path) -> None:
    a = photo_hash("coffee")
    source = write_list(tmp_path / "h.csv", [f"{a},90", f"{photo_hash('rocket')},10"])
    result = runner.invoke(
        app, ["bank", "add", "--banks", str(tmp_path / "b"), "--name", "p", "--kind", "pdq", str(source)]
    )
    assert (
        result.exit_code == 0
        and "1 pdq entries" in result.stdout
        and "1 hashes below quality 50 dropped" in result.stdout
    )
