"""The HTML report: numbers equal the run's files, the page is private and self-contained, hostile names are
escaped, and in headless Chromium every chart is drawn with the expected bars and nothing is requested."""

from __future__ import annotations

import json
import re
import stat
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from safeset.cli.main import app
from safeset.errors import SafesetError
from safeset.findings import FINDINGS_SCHEMA
from safeset.report import ReportOptions, gather, write_report
from tests.browser import Browser


def findings_rows(run_dir: Path) -> list[dict]:
    return pq.read_table(run_dir / "findings.parquet").to_pylist()


def test_report_counts_equal_the_run_files(demo_run: tuple[Path, Path]) -> None:
    run_dir, release = demo_run
    rows = findings_rows(run_dir)
    data = gather(run_dir, release)
    assert dict(data.by_detector) == Counter(r["detector"] for r in rows)
    assert dict(data.by_bank) == Counter(r["bank"] for r in rows)
    pdq_evidence = [r["evidence"] for r in rows if r["detector"] == "pdq" or "pdq distance" in r["evidence"]]
    assert len(pdq_evidence) > 0
    expected = sorted(int(re.search(r"distance (\d+)", e).group(1)) for e in pdq_evidence)
    assert sorted(data.pdq_distances.astype(int).tolist()) == expected
    flagged = {(r["shard"], r["row"]): r["domain"] or "(no domain recorded)" for r in rows}
    assert dict(data.domains) == Counter(flagged.values())
    assert data.flagged_rows == len(flagged)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [s.shard for s in data.shards] == [s["shard"] for s in summary["shards"]]
    accounting = json.loads(next((run_dir / "releases").glob("*/accounting.json")).read_text())
    assert data.release is not None and data.release["release_id"] == accounting["release_id"]


def test_report_file_is_private_and_leaks_nothing(demo_run: tuple[Path, Path], tmp_path: Path) -> None:
    run_dir, release = demo_run
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", str(run_dir), str(release), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    page = out.read_text()
    for tag in ("<script", "<img", "<a ", "<link", "<iframe", "<object", "url(", "@import", "src="):
        assert tag not in page.lower()
    assert "http://" not in page and "https://" not in page
    assert "default-src 'none'" in page
    dataset = run_dir.parent / "dataset"
    for sidecar in dataset.glob("*.parquet"):
        for row in pq.read_table(sidecar).to_pylist():
            assert row["url"] not in page and (not row.get("caption") or row["caption"] not in page)


def synthetic_run(root: Path, shards: int, names: dict[str, str] | None = None) -> Path:
    """A run directory in the documented layout, with many shards, failed ones and scored findings."""
    names = names or {}
    root.mkdir()
    records, findings = [], []
    for i in range(shards):
        shard = f"{i:05d}.parquet"
        failed = i % 50 == 7
        records.append(
            {
                "shard": shard,
                "rows_in": 1000 + i,
                "rows_flagged": 0 if failed else i % 4,
                "rows_errored": 1000 + i if failed else i % 3,
                "error": "truncated parquet footer" if failed else None,
            }
        )
        if failed:
            continue
        for j in range(i % 4):
            detector, evidence = [
                ("neighbor", f"cosine {0.85 + (i % 15) / 100:.6f} to 0000{j} (hop 1)"),
                ("model", f"nsfw score {0.5 + (i % 50) / 100:.4f} > 0.5"),
                ("score", f"punsafe={0.9 + (i % 10) / 100:.6g}"),
                ("pdq", f"pdq:{'ab' * 32} L{j + 1} distance {i % 32} (original, quality 90)"),
            ][j]
            findings.append(
                {
                    "key": f"{i}-{j}",
                    "shard": shard,
                    "row": j,
                    "detector": detector,
                    "bank": names.get("bank", "bank-a") if j % 2 else "bank-b",
                    "evidence": evidence,
                    "action": "review",
                    "domain": names.get("domain", f"site{i % 23}.example"),
                }
            )
    summary = {
        "rows_in": sum(r["rows_in"] for r in records),
        "rows_flagged": sum(r["rows_flagged"] for r in records),
        "rows_errored": sum(r["rows_errored"] for r in records),
        "shards": records,
        "shards_total": shards + 5,
        "shards_failed": sum(1 for r in records if r["error"]),
        "banks": [{"name": names.get("bank", "bank-a")}, {"name": "bank-b"}],
    }
    (root / "summary.json").write_text(json.dumps(summary))
    pq.write_table(pa.Table.from_pylist(findings, schema=FINDINGS_SCHEMA), root / "findings.parquet")
    return root


def test_many_shards_get_the_compact_strip_and_scores_are_parsed(tmp_path: Path) -> None:
    run_dir = synthetic_run(tmp_path / "run", 300)
    data = write_report(run_dir, tmp_path / "r.html", options=ReportOptions(strip_above=40))
    page = (tmp_path / "r.html").read_text()
    assert re.search(r'data-chart="shards" data-bars="300"', page)
    assert set(data.scores) == {"neighbor", "model", "score"}
    rows = pq.read_table(run_dir / "findings.parquet").to_pylist()
    for detector in ("neighbor", "model", "score"):
        assert len(data.scores[detector]) == sum(r["detector"] == detector for r in rows)
    neighbor = [float(r["evidence"].split()[1]) for r in rows if r["detector"] == "neighbor"]
    assert sorted(data.scores["neighbor"].tolist()) == sorted(neighbor)
    assert "truncated parquet footer" in page  # failed shards named under the strip
    assert "295 of 305 shards" not in page and "300 of 305 shards scanned" in page
    assert data.release is None and "No release has been written" in page


def test_hostile_names_are_escaped(tmp_path: Path) -> None:
    hostile = '<script>alert(1)</script><img src=x onerror="fetch(`http://evil`)">'
    run_dir = synthetic_run(tmp_path / "run", 5, {"bank": hostile, "domain": hostile})
    write_report(run_dir, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;" in page


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "summary.json").unlink(), "no scan summary"),
        (lambda d: (d / "summary.json").write_bytes(b"\xff\xfe{"), "scan summary .* is unreadable or damaged"),
        (lambda d: (d / "summary.json").write_text("[1, 2]"), "not a JSON object"),
        (lambda d: (d / "summary.json").write_text('{"shards": [{"rows_in": "many"}]}'), "shard entry 0"),
        (lambda d: (d / "findings.parquet").write_bytes(b"PAR1 garbage"), "unreadable or damaged findings"),
        (lambda d: pq.write_table(pa.table({"key": ["a"]}), d / "findings.parquet"), "lack column"),
    ],
)
def test_damaged_runs_are_one_clear_error(tmp_path: Path, damage, message: str) -> None:
    run_dir = synthetic_run(tmp_path / "run", 3)
    damage(run_dir)
    with pytest.raises(SafesetError, match=message):
        gather(run_dir)
    result = CliRunner().invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert not (tmp_path / "r.html").exists()


def test_cases_section_without_a_case_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "safeset.cases", None)  # as if the case store were not installed
    run_dir = synthetic_run(tmp_path / "run", 3)
    data = write_report(run_dir, tmp_path / "r.html", cases_url="sqlite:///nowhere.db")
    assert data.case_states is None and "not part of this installation" in (tmp_path / "r.html").read_text()


def test_report_in_chromium(demo_run: tuple[Path, Path], tmp_path: Path, browser: Browser) -> None:
    from selenium.webdriver.common.by import By

    run_dir, release = demo_run
    out = tmp_path / "report.html"
    data = write_report(run_dir, out, release)
    browser.driver.get(out.as_uri())
    charts = {
        svg.get_attribute("data-chart"): svg for svg in browser.driver.find_elements(By.CSS_SELECTOR, "svg.chart")
    }
    shards_drawn = sum(3 - (s.rows_flagged == 0) - (s.rows_errored == 0) for s in data.shards)
    expected = {
        "detector": len(data.by_detector),
        "bank": len(data.by_bank),
        "pdq-distance": int(max(31, data.pdq_distances.max())) + 1,
        "domains": min(len(data.domains), 15) + (len(data.domains) > 15),
        "shards": shards_drawn,
        "release": sum(
            1
            for v in (
                data.release["rows_kept"],
                data.release["rows_removed"] - data.release["rows_removed_cover"],
                data.release["rows_removed_cover"],
                data.release["rows_errored"],
            )
            if v
        ),
    }
    assert set(expected) <= set(charts)
    for name, bars in expected.items():
        drawn = charts[name].find_elements(By.CSS_SELECTOR, "rect.bar")
        assert len(drawn) == bars, name
        assert all(b.size["width"] > 0 for b in drawn), name  # laid out, not just present in the markup
    assert browser.requests() == [out.as_uri()]
    assert browser.outside_requests() == []
    shot = browser.screenshot(tmp_path / "report.png")
    assert shot.stat().st_size > 10_000


def test_case_states_from_the_store(demo_run: tuple[Path, Path], tmp_path: Path) -> None:
    from safeset.cases import CaseState, CaseStore

    run_dir, release = demo_run
    url = f"sqlite:///{tmp_path / 'cases.db'}"
    with CaseStore.open(url) as store:
        store.import_run(run_dir, who="scanner")
        ids = [c.id for c in store.list_cases()]
        store.transition(ids[:2], CaseState.DISMISSED, "tester", "benign stand-in")
        expected = Counter(c.state.value for c in store.list_cases())
    out = tmp_path / "r.html"
    result = CliRunner().invoke(app, ["report", str(run_dir), str(release), "--out", str(out), "--cases", url])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert f'data-chart="cases" data-bars="{len(expected)}"' in page
    data = gather(run_dir, release, url)
    assert dict(data.case_states or []) == expected
