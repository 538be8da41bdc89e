"""The audit loop end to end, on SQLite and on a real PostgreSQL server: scan → `cases import` → verify against
local Arachnid Shield and HMA servers (hashes and URLs only) → confirmed cases seed a second scan, which finds their
planted embedding neighbours → the hotline report holds exactly the confirmed cases → `clean` withholds them,
and the store records it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from safeset.banks.store import BankStore
from safeset.cli.main import app
from tests.conftest import write_list
from tests.embed.layout import at_cosine, exact_cosines, random_unit, write_laion_layout
from tests.services.fakes import FakeArachnid, FakeHma

CONFIRMED_ROWS = (10, 350)  # rows whose md5 is in the bank and whose URL the services know
UNCONFIRMED_ROW = 123  # a bank match the services do not know: verified, not confirmed, never a seed
NEAR = (0.97, 0.9, 0.86)  # neighbours planted around every one of the three rows above


def url_of(row: int) -> str:
    return f"https://img{row % 5}.example.org/p/{row}.jpg"  # tests.conftest.laion_table's URL column


def key_of(row: int) -> str:
    part = 0 if row < 300 else 1
    return f"{part:05d}{row - part * 300:04d}"


def listed_cases(store_url: str) -> list[dict]:
    return [json.loads(line) for line in invoke("cases", "list", "--cases", store_url, "--json").splitlines() if line]


def invoke(*args: object) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(11)
    vectors = random_unit(500, 32, rng)
    spots = iter([20, 120, 299, 300, 310, 420, 499, 5, 77])
    for seed in (*CONFIRMED_ROWS, UNCONFIRMED_ROW):
        for cosine in NEAR:
            vectors[next(spots)] = at_cosine(vectors[seed], cosine, rng)
    root = write_laion_layout(tmp_path / "laion", [vectors[:300], vectors[300:]])
    return root, vectors.astype(np.float16)


@pytest.mark.slow
def test_candidates_verified_confirmed_seed_the_next_scan_and_are_withheld(
    planted: tuple[Path, np.ndarray], store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, stored = planted
    banks = tmp_path / "banks"
    md5s = [hashlib.md5(f"image-{row}".encode()).hexdigest() for row in (*CONFIRMED_ROWS, UNCONFIRMED_ROW)]
    BankStore(banks).add("known", "md5", write_list(tmp_path / "md5.txt", md5s))
    BankStore(tmp_path / "other").add("other", "url", write_list(tmp_path / "u.txt", ["https://nowhere.example.com/x"]))

    # 1. A first scan finds three candidates; they become three cases.
    invoke("scan", root, "--banks", banks, "--out", tmp_path / "run1")
    invoke("cases", "import", tmp_path / "run1", "--cases", store_url, "--who", "tester")
    listed = listed_cases(store_url)
    assert len(listed) == 3 and {c["state"] for c in listed} == {"candidate"}

    # 2. Verification through two services that see URLs only; both know the two confirmed rows' URLs.
    known_urls = [url_of(row) for row in CONFIRMED_ROWS]
    with FakeArachnid(known_urls=known_urls) as arachnid, FakeHma(url_banks={"HOTLINE": known_urls}) as hma:
        monkeypatch.setenv("ARACHNID_SHIELD_USERNAME", arachnid.username)
        monkeypatch.setenv("ARACHNID_SHIELD_PASSWORD", arachnid.password)
        invoke("cases", "verify", "--cases", store_url, "--service", "arachnid", "--endpoint", arachnid.url,
               "--limit", "2", "--who", "tester")  # fmt: skip
        invoke("cases", "verify", "--cases", store_url, "--service", "hma", "--endpoint", hma.url, "--who", "tester")
        assert arachnid.violations == [] and hma.violations == []
        assert arachnid.requests and hma.requests  # each service answered part of the candidates
        sent = [r.body for r in arachnid.requests] + [r.path for r in hma.requests]
        assert not any(b"\xff\xd8" in body for body in sent if isinstance(body, bytes))  # no JPEG bytes left
    listed = listed_cases(store_url)
    states = {key: c["state"] for c in listed for key in c["keys"]}
    assert {states[key_of(r)] for r in CONFIRMED_ROWS} == {"confirmed"}
    assert states[key_of(UNCONFIRMED_ROW)] == "not-confirmed"

    # 3. The confirmed cases seed a second scan whose banks know none of them: their neighbours are found, and
    # only theirs (the unconfirmed row's planted neighbours are not).
    invoke("scan", root, "--banks", tmp_path / "other", "--out", tmp_path / "run2", "--seeds-from", store_url,
           "--expand", "neighbor", "--neighbor-seed-detector", "case")  # fmt: skip
    findings = pq.read_table(tmp_path / "run2" / "findings.parquet").to_pylist()
    seeds = {f["key"] for f in findings if f["detector"] == "case"}
    assert seeds == {key_of(r) for r in CONFIRMED_ROWS}
    truth = exact_cosines(stored[list(CONFIRMED_ROWS)], stored)
    truth[:, list(CONFIRMED_ROWS)] = -np.inf
    expected = {key_of(int(r)) for r in np.flatnonzero((truth >= 0.85).any(axis=0))}
    neighbours = {f["key"] for f in findings if f["detector"] == "neighbor"}
    assert neighbours == expected and len(expected) == 2 * len(NEAR)
    assert all("case " in f["evidence"] or f["detector"] != "case" for f in findings)

    # 4. The hotline report holds exactly the confirmed cases.
    report = tmp_path / "report.json"
    invoke("cases", "report", "--cases", store_url, "--format", "json", "--out", report)
    exported = json.loads(report.read_text())
    records = exported["cases"] if isinstance(exported, dict) else exported
    assert sorted(k for record in records for k in record["keys"]) == sorted(key_of(r) for r in CONFIRMED_ROWS)

    # 5. The release of the second scan withholds the confirmed rows (their neighbours go to review, kept).
    invoke("clean", root, tmp_path / "run2", "--out", tmp_path / "release", "--roadmap-bound", "0")  # no decoys
    kept = {k for f in sorted((tmp_path / "release").rglob("*.parquet")) for k in pq.read_table(f)["key"].to_pylist()}
    assert not {key_of(r) for r in CONFIRMED_ROWS} & kept
    assert expected <= kept
    invoke("cases", "withheld", tmp_path / "run2", "--cases", store_url, "--who", "tester")
    states = {key: c["state"] for c in listed_cases(store_url) for key in c["keys"]}
    assert {states[key_of(r)] for r in CONFIRMED_ROWS} == {"withheld"}
    assert states[key_of(UNCONFIRMED_ROW)] == "not-confirmed"
    invoke("cases", "verify-log", "--cases", store_url)
