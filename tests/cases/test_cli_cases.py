"""`safeset cases …` end to end after a real scan of a small benign webdataset: import, list, mark by keys,
report, verify (dry run through a registered adapter), verify-log, and one-line errors with exit 2."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from safeset.banks.store import BankStore
from safeset.cli.main import app
from safeset.demo import demo_rows, write_webdataset
from safeset.services.base import SERVICES, Outcome, Verdict, VerificationItem, register_service
from tests.conftest import write_list
from tests.helpers import scan

runner = CliRunner()


def invoke(*args: object) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """One scan for the module: an image in an MD5 bank and planted at two more rows (found by duplicate
    expansion), and a row flagged by URL. Returns the run directory and the keys by role."""
    root = tmp_path_factory.mktemp("scan")
    shards = demo_rows(shards=2, rows_per_shard=6)
    known, copy_a, copy_b, by_url = shards[0][1], shards[0][4], shards[1][2], shards[1][5]
    copy_a.image = copy_b.image = known.image
    write_webdataset(root / "ds", shards)
    banks = root / "banks"
    store = BankStore(banks)
    store.add("known", "md5", write_list(root / "md5.txt", [hashlib.md5(known.image or b"").hexdigest()]))
    store.add("urls", "url", write_list(root / "u.txt", [by_url.url]))
    scan(root / "ds", banks, root / "run", expanders=("duplicate",), options={"duplicate_pdq": False})
    keys = {"known": known.key, "copy_a": copy_a.key, "copy_b": copy_b.key, "url": by_url.key}
    return root / "run", keys


@pytest.fixture
def fake_service() -> Iterator[str]:
    class Echo:
        name = "echo-test"
        max_batch = 10

        def requests_for(self, items: Sequence[VerificationItem]) -> list[dict[str, Any]]:
            return [{"method": "POST", "url": "http://127.0.0.1:9/v1/md5", "body": [i.md5 for i in items]}]

        def verify(self, items: Sequence[VerificationItem]) -> list[Verdict]:
            return [Verdict(i.case_id, Outcome.CONFIRMED, reference=f"echo-{i.case_id}") for i in items]

    register_service("echo-test", lambda endpoint: Echo())
    yield "echo-test"
    SERVICES.pop("echo-test", None)


def test_scan_import_mark_report_verify_log(
    scanned: tuple[Path, dict[str, str]], store_url: str, tmp_path: Path, fake_service: str
) -> None:
    run_dir, keys = scanned
    code, output = invoke("cases", "import", run_dir, "--cases", store_url, "--who", "alice")
    assert code == 0, output
    assert "7 findings read: 2 new cases, 0 updated" in output  # the image and its copies: one case
    code, output = invoke("cases", "import", run_dir, "--cases", store_url)
    assert code == 0 and "0 new cases, 0 updated" in output, output

    code, output = invoke("cases", "list", "--cases", store_url, "--json")
    assert code == 0, output
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    by_keys = {tuple(sorted(r["keys"])): r for r in records}
    image_keys = tuple(sorted([keys["known"], keys["copy_a"], keys["copy_b"]]))
    assert set(by_keys) == {image_keys, (keys["url"],)}
    assert by_keys[image_keys]["identity"].startswith("md5:") and by_keys[image_keys]["state"] == "candidate"
    assert all(u.startswith("http") for u in by_keys[image_keys]["urls"]) and len(by_keys[image_keys]["urls"]) == 3
    assert "caption" not in output

    code, output = invoke("cases", "verify", "--cases", store_url, "--service", fake_service, "--dry-run")
    assert code == 0 and '"url": "http://127.0.0.1:9/v1/md5"' in output and "nothing changed" in output, output

    key_file = write_list(tmp_path / "keys.txt", [keys["copy_b"]])  # any one key marks the whole case
    code, output = invoke(
        "cases",
        "mark",
        "--cases",
        store_url,
        "--state",
        "confirmed",
        "--keys",
        key_file,
        "--reason",
        "hotline",
        "--who",
        "bob",
    )
    assert code == 0 and "1 cases now confirmed" in output, output

    report = tmp_path / "report.csv"
    code, output = invoke("cases", "report", "--cases", store_url, "--format", "csv", "--out", report)
    assert code == 0, output
    lines = report.read_text().splitlines()
    assert lines[0].startswith("case_id,key,urls,md5")
    assert sorted(line.split(",")[1] for line in lines[1:]) == sorted(image_keys)

    code, output = invoke("cases", "verify-log", "--cases", store_url)
    assert code == 0 and "audit log intact: 3 entries" in output, output
    engine = sa.create_engine(store_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_log SET who = 'mallory' WHERE seq = 3"))
    engine.dispose()
    code, output = invoke("cases", "verify-log", "--cases", store_url)
    assert code == 1 and "entry 3: contents do not match" in output, output


def test_default_store_is_in_the_run_dir(scanned: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(scanned[0], run_dir)
    code, output = invoke("cases", "import", run_dir, "--no-dataset")
    assert code == 0 and "2 new cases" in output, output
    assert (run_dir / "cases.db").stat().st_mode & 0o777 == 0o600


def test_errors_are_one_line_and_exit_2(tmp_path: Path, fake_service: str) -> None:
    db = tmp_path / "cases.db"
    for args, message in [
        (("list", "--cases", tmp_path / "missing.db"), "does not exist"),
        (("list", "--cases", "mysql://x@y/z"), "only sqlite"),
        (("import", tmp_path, "--cases", db), "no findings.parquet"),
    ]:
        code, output = invoke("cases", *args)
        assert code == 2 and message in output and "Traceback" not in output, output
    (tmp_path / "run").mkdir()
    invoke("cases", "import", tmp_path / "run")  # refused: no findings; no store made
    assert not (tmp_path / "run" / "cases.db").exists()
    from safeset.cases import CaseStore

    CaseStore.open(str(db)).close()
    bad_keys = tmp_path / "keys.txt"
    bad_keys.write_bytes(b"ok\n\xff\xfe\n")
    for args, message in [
        (
            ("mark", "--cases", db, "--state", "confirmed", "--keys", bad_keys, "--reason", "r"),
            "keys.txt:2: not valid UTF-8",
        ),
        (
            ("mark", "--cases", db, "--state", "confirmed", "--keys", tmp_path / "none", "--reason", "r"),
            "cannot be read",
        ),
        (("mark", "--cases", db, "--state", "reported", "--keys", bad_keys, "--reason", "r"), "choose from"),
        (("verify", "--cases", db, "--service", "nope"), "unknown service"),
        (("report", "--cases", db, "--format", "pdf", "--out", tmp_path / "r"), "choose from"),
    ]:
        code, output = invoke("cases", *args)
        assert code == 2 and message in output and "Traceback" not in output, output
