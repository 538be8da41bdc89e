"""Hotline report export holds exactly the confirmed (and reported) cases; confirmed cases feed back as seeds."""

from __future__ import annotations

import csv
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from safeset.cases import CaseState, CaseStore
from safeset.cases.report import export_report
from safeset.cases.seeds import case_seed_findings, seed_identities
from safeset.findings import FINDINGS_SCHEMA
from tests.cases.conftest import MD5_A, PDQ_D, standard_run


def _confirm_one(store: CaseStore, tmp_path: Path) -> tuple[int, int]:
    """Import the standard run; confirm the MD5 A case (keys a, b), dismiss the key-only one."""
    store.import_run(standard_run(tmp_path / "run"), "alice")
    by_identity = {c.identity: c.id for c in store.list_cases()}
    confirmed = by_identity[f"md5:{MD5_A}"]
    store.transition([confirmed], CaseState.SUBMITTED, "alice", "sent")
    store.transition([confirmed], CaseState.CONFIRMED, "alice", "known", "track-7")
    store.transition([by_identity["key:c"]], CaseState.DISMISSED, "bob", "a benign photo of a bridge")
    return confirmed, by_identity[f"pdq:{PDQ_D}"]


@pytest.mark.parametrize("fmt", ["json", "csv", "ncmec"])
def test_report_holds_exactly_the_confirmed_cases(store: CaseStore, tmp_path: Path, fmt: str) -> None:
    confirmed, _ = _confirm_one(store, tmp_path)
    out = tmp_path / f"report.{fmt}"
    result = export_report(store, fmt, out, "alice")
    assert os.stat(out).st_mode & 0o777 == 0o600
    assert result.cases == 1 and result.marked_reported == 0
    text = out.read_text()
    if fmt == "json":
        [record] = json.loads(text)["cases"]
        assert record["case_id"] == confirmed and sorted(record["keys"]) == ["a", "b"]
        assert record["md5"] == MD5_A and record["verification_reference"] == "track-7"
        assert record["detection"] == ["md5/known", "url/urls"] and record["sha1"] is None
    elif fmt == "csv":
        rows = list(csv.DictReader(text.splitlines()))
        assert sorted(r["key"] for r in rows) == ["a", "b"]  # one line per dataset key
        assert {r["case_id"] for r in rows} == {str(confirmed)} and rows[0]["verification_reference"] == "track-7"
        assert rows[0]["sha1"] == "" and rows[0]["md5"] == MD5_A
    else:
        [image] = ET.fromstring(text).findall("image")
        assert image.findtext("id") == f"case-{confirmed}"
        assert image.findtext("fingerprints/md5") == MD5_A
        assert sorted(k.text for k in image.findall("datasetKeys/key")) == ["a", "b"]
        assert image.find("verification").get("service-reference") == "track-7"
    assert store.get_case(confirmed).state is CaseState.CONFIRMED  # exporting alone moves nothing


def test_mark_reported_moves_and_logs(store: CaseStore, tmp_path: Path) -> None:
    confirmed, _ = _confirm_one(store, tmp_path)
    result = export_report(store, "json", tmp_path / "r.json", "alice", mark_reported=True)
    assert result.marked_reported == 1
    assert store.get_case(confirmed).state is CaseState.REPORTED
    assert store.audit_trail(confirmed)[-1].reason == "exported in the json report r.json"
    again = export_report(store, "json", tmp_path / "r2.json", "alice", mark_reported=True)
    assert (again.cases, again.marked_reported) == (1, 0)  # reported cases are still exported, not moved again


def test_confirmed_cases_become_seed_findings(store_url: str, tmp_path: Path) -> None:
    with CaseStore.open(store_url) as store:
        confirmed, _ = _confirm_one(store, tmp_path)
    seeds = case_seed_findings(store_url)
    assert seeds.schema == FINDINGS_SCHEMA
    rows = sorted(seeds.to_pylist(), key=lambda r: r["key"])
    assert [(r["key"], r["shard"], r["row"]) for r in rows] == [("a", "s0.tar", 0), ("b", "s0.tar", 5)]
    assert {(r["detector"], r["bank"], r["action"], r["domain"]) for r in rows} == {
        ("case", "cases", "remove", "example.org")
    }
    assert rows[0]["evidence"] == f"case {confirmed} confirmed (track-7)"
    assert case_seed_findings(store_url, run_keys={"b", "zzz"}).column("key").to_pylist() == ["b"]
    assert seed_identities(store_url) == {"md5": [MD5_A], "pdq": [], "keys": ["a", "b"]}


def test_csv_cells_never_become_spreadsheet_formulas() -> None:
    """Keys and URLs come from scraped data: a cell a spreadsheet would evaluate is written as text."""
    from safeset.cases.report import _csv

    record = {
        "case_id": 1,
        "keys": ["=HYPERLINK(\"http://x\")", "plain", "-2+3", "@SUM(A1)"],
        "urls": ["+cmd|' /C calc'!A0"],
        "detection": ["md5/known"],
    }
    text, count = _csv([record])
    rows = list(csv.DictReader(text.splitlines()))
    assert count == 4 and [r["key"] for r in rows] == ["'=HYPERLINK(\"http://x\")", "plain", "'-2+3", "'@SUM(A1)"]
    assert all(r["urls"].startswith("'+") for r in rows)
