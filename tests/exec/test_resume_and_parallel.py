"""A killed scan resumes to the same findings and release bytes; parallel scans equal serial ones."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from safeset.banks.store import BankStore
from safeset.demo import demo_rows, write_webdataset
from safeset.errors import SafesetError
from tests.conftest import image_rows, write_list
from tests.helpers import clean, scan


@pytest.fixture
def many_shards(tmp_path: Path) -> tuple[Path, Path]:
    import hashlib

    shards = demo_rows(shards=10, rows_per_shard=30)
    write_webdataset(tmp_path / "ds", shards)
    banks = tmp_path / "banks"
    known = image_rows(shards)[::11]
    BankStore(banks).add(
        "known", "md5", write_list(tmp_path / "k.txt", [hashlib.md5(r.image or b"").hexdigest() for r in known])
    )
    BankStore(banks).add("urls", "url", write_list(tmp_path / "u.txt", [shards[4][7].url.upper()]))
    return tmp_path / "ds", banks


def release_files(release: Path) -> dict[str, bytes]:
    return {
        p.relative_to(release).as_posix(): p.read_bytes()
        for p in sorted(release.rglob("*"))
        if p.is_file() and p.parent.name != "_safeset"
    }


@pytest.mark.slow
def test_killed_scan_resumes_to_identical_results(many_shards: tuple[Path, Path], tmp_path: Path) -> None:
    dataset, banks = many_shards
    scan(dataset, banks, tmp_path / "reference", batch_rows=8)
    clean(dataset, tmp_path / "reference", tmp_path / "reference-release")

    run_dir = tmp_path / "killed"
    command = [
        sys.executable,
        "-m",
        "safeset",
        "scan",
        str(dataset),
        "--banks",
        str(banks),
        "--out",
        str(run_dir),
        "--batch-rows",
        "8",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = list((run_dir / "shards").glob("*.json")) if (run_dir / "shards").exists() else []
        if len(done) >= 2:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    process.wait()
    finished = len(list((run_dir / "shards").glob("*.json")))
    assert process.returncode == -signal.SIGKILL, "the scan was not interrupted"
    assert 2 <= finished < 10 and not (run_dir / "summary.json").exists()

    with pytest.raises(SafesetError, match="--resume"):
        scan(dataset, banks, run_dir, batch_rows=8)
    summary = scan(dataset, banks, run_dir, batch_rows=8, resume=True)
    assert summary["shards_resumed"] == finished
    assert pq.read_table(run_dir / "findings.parquet").equals(
        pq.read_table(tmp_path / "reference" / "findings.parquet")
    )
    clean(dataset, run_dir, tmp_path / "resumed-release")
    assert release_files(tmp_path / "resumed-release") == release_files(tmp_path / "reference-release")


def test_resume_refuses_changed_banks(many_shards: tuple[Path, Path], tmp_path: Path) -> None:
    dataset, banks = many_shards
    scan(dataset, banks, tmp_path / "run")
    BankStore(banks).add("more", "md5", write_list(tmp_path / "m.txt", ["0" * 32]))
    with pytest.raises(SafesetError, match="other settings or banks"):
        scan(dataset, banks, tmp_path / "run", resume=True)


@pytest.mark.slow
def test_parallel_scan_equals_serial(many_shards: tuple[Path, Path], tmp_path: Path) -> None:
    dataset, banks = many_shards
    serial = scan(dataset, banks, tmp_path / "serial")
    parallel = scan(dataset, banks, tmp_path / "parallel", processes=2)
    assert pq.read_table(tmp_path / "parallel" / "findings.parquet").equals(
        pq.read_table(tmp_path / "serial" / "findings.parquet")
    )
    assert [s["rows_flagged"] for s in parallel["shards"]] == [s["rows_flagged"] for s in serial["shards"]]
    assert serial["rows_flagged"] == len(image_rows(demo_rows(10, 30))[::11]) + 1
