"""Propagation to copies: rows whose image bytes equal a flagged row's are flagged too."""

from __future__ import annotations

from pathlib import Path

import pytest

from safeset.banks.store import BankStore
from safeset.demo import demo_rows, write_webdataset
from safeset.errors import SafesetError
from tests.conftest import write_list
from tests.helpers import assert_reconciles, clean, findings, scan


def test_copies_of_a_flagged_image_are_flagged(tmp_path: Path) -> None:
    shards = demo_rows(shards=3, rows_per_shard=10)
    seed = shards[0][2]
    copies = [shards[1][4], shards[2][9]]
    for copy in copies:
        copy.image = seed.image  # the same image under other URLs, as happens on the web
    write_webdataset(tmp_path / "ds", shards)
    banks = tmp_path / "banks"
    BankStore(banks).add("urls", "url", write_list(tmp_path / "u.txt", [seed.url]))
    plain = scan(tmp_path / "ds", banks, tmp_path / "plain")
    assert plain["rows_flagged"] == 1
    md5_only = {"duplicate": {"pdq": False}}  # PDQ propagation would also find the other re-encoded copies
    summary = scan(tmp_path / "ds", banks, tmp_path / "run", expanders=("duplicate",), policy=md5_only)
    assert summary["rows_flagged"] == 3 and summary["findings_by_detector"] == {"duplicate": 2, "url": 1}
    dupes = [f for f in findings(tmp_path / "run") if f["detector"] == "duplicate"]
    assert sorted(f["key"] for f in dupes) == sorted(c.key for c in copies)
    assert all(f["action"] == "remove" and f["bank"] == "urls" and seed.key in f["evidence"] for f in dupes)
    assert [s["rows_flagged"] for s in summary["shards"]] == [1, 1, 1]
    manifest = clean(tmp_path / "ds", tmp_path / "run", tmp_path / "release")
    assert_reconciles(manifest)
    assert manifest["rows_removed"] == 3


def test_duplicate_expansion_needs_images(laion_dir: Path, tmp_path: Path) -> None:
    banks = tmp_path / "banks"
    BankStore(banks).add("urls", "url", write_list(tmp_path / "u.txt", ["https://img0.example.org/p/0.jpg"]))
    with pytest.raises(SafesetError, match="needs image bytes"):
        scan(laion_dir, banks, tmp_path / "run", expanders=("duplicate",))
