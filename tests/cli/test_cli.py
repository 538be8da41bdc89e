"""The command-line contract: commands, options and clear one-line errors (exit 2, no traceback)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from typer.testing import CliRunner

from safeset.cli.main import app
from safeset.demo import DemoRow
from tests.conftest import image_rows, write_list

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_bank_scan_clean_round_trip(webdataset_dir: Path, demo_shards: list[list[DemoRow]], tmp_path: Path) -> None:
    banks = tmp_path / "banks"
    known = image_rows(demo_shards)[2]
    code, output = invoke(
        "bank",
        "add",
        "--banks",
        banks,
        "--name",
        "m",
        "--kind",
        "md5",
        write_list(tmp_path / "m.txt", [hashlib.md5(known.image or b"").hexdigest()]),
    )
    assert code == 0 and "1 md5 entries" in output
    code, output = invoke(
        "bank",
        "add",
        "--banks",
        banks,
        "--name",
        "optout",
        "--kind",
        "exclude-domain",
        write_list(tmp_path / "d.txt", ["optout.example.net"]),
    )
    assert code == 0
    code, output = invoke("bank", "list", "--banks", banks)
    assert code == 0 and "optout" in output and "exclude" in output
    code, output = invoke("scan", webdataset_dir, "--banks", banks, "--out", tmp_path / "run", "--processes", "1")
    assert code == 0, output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    optouts = sum("optout" in r.url for rows in demo_shards for r in rows)
    assert summary["rows_by_action"]["exclude"] == optouts - ("optout" in known.url)
    assert summary["rows_by_action"]["remove"] == 1
    code, output = invoke("clean", webdataset_dir, tmp_path / "run", "--out", tmp_path / "release")
    assert code == 0 and "removed" in output


def test_errors_are_one_clear_line(webdataset_dir: Path, tmp_path: Path) -> None:
    bad = write_list(tmp_path / "bad.txt", ["abc"])
    code, output = invoke("bank", "add", "--banks", tmp_path / "b", "--name", "x", "--kind", "md5", bad)
    assert code == 2 and f"{bad}:1" in output and "Traceback" not in output
    code, output = invoke("scan", webdataset_dir, "--banks", tmp_path / "empty", "--out", tmp_path / "run")
    assert code == 2 and "no banks" in output
    write_list(tmp_path / "ok.txt", ["0" * 32])
    invoke("bank", "add", "--banks", tmp_path / "b", "--name", "x", "--kind", "md5", tmp_path / "ok.txt")
    code, output = invoke("scan", tmp_path / "missing", "--banks", tmp_path / "b", "--out", tmp_path / "run")
    assert code == 2 and "does not exist" in output
    code, output = invoke(
        "scan", webdataset_dir, "--banks", tmp_path / "b", "--out", tmp_path / "run", "--url-col", "link"
    )
    assert code == 2 and "'link' not found" in output and "url, caption, key" in output
    code, output = invoke(
        "scan", webdataset_dir, "--banks", tmp_path / "b", "--out", tmp_path / "r2", "--executor", "mpi"
    )
    assert code == 2 and "unknown executor 'mpi'" in output
