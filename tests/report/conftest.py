"""A real scanned-and-cleaned run (benign demo photos, stand-in banks) shared by the report tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from safeset.cli.main import app
from safeset.demo import PHOTOS, demo_rows, write_webdataset
from tests.browser import browser  # noqa: F401  (the fixture, for the Chromium tests here)


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code in (0, 1), (args, result.output)
    return result.stdout


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Scan (md5, url, pdq, opt-out banks; duplicate expansion) and clean a 3-shard demo webdataset."""
    base = tmp_path_factory.mktemp("report-demo")
    dataset, banks, run_dir, release, lists = (base / n for n in ("dataset", "banks", "run", "release", "lists"))
    shards = demo_rows(shards=3, rows_per_shard=24)
    shards[1][3].image = (shards[1][3].image or b"")[:100]  # one damaged image: an errored row
    write_webdataset(dataset, shards)
    lists.mkdir()
    rows = [r for s in shards for r in s]
    known = [r for r in rows if r.image is not None][::17][:3]
    (lists / "md5.txt").write_text("".join(hashlib.md5(r.image or b"").hexdigest() + "\n" for r in known))
    (lists / "urls.txt").write_text(rows[5].url + "\n")
    (lists / "optout.txt").write_text("optout.example.net\n")
    hashed = invoke("hash", "--mode", "exact", str(PHOTOS / "coffee.jpg"), str(PHOTOS / "rocket.jpg"))
    pdq = ["hash,quality"] + [",".join(line.split("\t")[2:4]) for line in hashed.splitlines() if line]
    (lists / "pdq.csv").write_text("\n".join(pdq) + "\n")
    for name, kind, source in (
        ("stand-in-md5", "md5", "md5.txt"),
        ("stand-in-urls", "url", "urls.txt"),
        ("optout", "exclude-domain", "optout.txt"),
        ("stand-in-pdq", "pdq", "pdq.csv"),
    ):
        invoke("bank", "add", "--banks", str(banks), "--name", name, "--kind", kind, str(lists / source))
    invoke("scan", str(dataset), "--banks", str(banks), "--out", str(run_dir), "--expand", "duplicate")
    invoke("clean", str(dataset), str(run_dir), "--out", str(release))
    return run_dir, release
