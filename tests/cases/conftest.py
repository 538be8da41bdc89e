"""Case store fixtures: every store test runs against SQLite and against a real PostgreSQL server that this
session starts itself (initdb in a temporary folder, unix socket only, stopped at the end)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest

from safeset.cases import CaseStore
from safeset.findings import FINDINGS_SCHEMA
from safeset.fsutil import write_parquet
from safeset.rundir import shard_file


def _initdb() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found)
    installed = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(installed[-1]) if installed else None


@dataclass(frozen=True)
class PostgresServer:
    socket_dir: Path

    def url(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    initdb = _initdb()
    if initdb is None:
        pytest.skip("no PostgreSQL initdb binary (Debian package `postgresql`; `make test` installs it)")
    root = Path(tempfile.mkdtemp(prefix="safeset-pg-"))  # short: a unix socket path is limited to ~107 bytes
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        run_as = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    data = root / "data"
    subprocess.run(
        [*run_as, str(initdb), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"],
        check=True,
        capture_output=True,
    )
    pg_ctl = str(initdb.parent / "pg_ctl")
    options = f"-k {root} -c listen_addresses= -c fsync=off -c full_page_writes=off"
    subprocess.run(
        [*run_as, pg_ctl, "-D", str(data), "-l", str(root / "log"), "-o", options, "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield PostgresServer(root)
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _new_database(server: PostgresServer) -> str:
    import psycopg

    name = f"cases_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"host={server.socket_dir} user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.url(name)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty case store's URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cases.db'}"
    return _new_database(request.getfixturevalue("postgres_server"))


@pytest.fixture
def store(store_url: str) -> Iterator[CaseStore]:
    opened = CaseStore.open(store_url)
    try:
        yield opened
    finally:
        opened.close()


MD5_A = "0" * 31 + "a"
MD5_B = "b" * 32
PDQ_D = "f" * 64


def finding(key: str, shard: str, row: int, detector: str, bank: str, evidence: str, action: str = "remove") -> dict:
    return {
        "key": key,
        "shard": shard,
        "row": row,
        "detector": detector,
        "bank": bank,
        "evidence": evidence,
        "action": action,
        "domain": "example.org",
    }


def write_run(run_dir: Path, findings: list[dict], signals: dict[str, list[dict]] | None = None) -> Path:
    """A run directory as a finished scan leaves it (the files the case store reads), without running a scan."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_parquet(run_dir / "findings.parquet", pa.Table.from_pylist(findings, schema=FINDINGS_SCHEMA), private=True)
    schema = pa.schema(
        [("row", pa.int64()), ("key", pa.string()), ("image_md5", pa.binary(16)), ("image_pdq", pa.binary(32))]
    )
    for shard, rows in (signals or {}).items():
        write_parquet(shard_file(run_dir, shard, ".signals.parquet"), pa.Table.from_pylist(rows, schema=schema))
    return run_dir


def standard_run(run_dir: Path) -> Path:
    """Four flagged rows holding three items: rows a and b are the same image (md5 A: one from an md5 bank's
    evidence, one from the kept signals), c is a neighbour with nothing known but its key, d has only a PDQ."""
    return write_run(
        run_dir,
        [
            finding("a", "s0.tar", 0, "md5", "known", f"md5:{MD5_A} L1 (image bytes)"),
            finding("b", "s0.tar", 5, "url", "urls", "url L2 (canonical form)"),
            finding("c", "s1.tar", 2, "neighbor", "known", "cosine 0.912345 to a (hop 1)", "review"),
            finding("d", "s1.tar", 3, "pdq", "pdqbank", "pdq:abc L3 distance 12 (original, quality 90)"),
        ],
        {
            "s0.tar": [{"row": 5, "key": "b", "image_md5": bytes.fromhex(MD5_A), "image_pdq": None}],
            "s1.tar": [
                {"row": 2, "key": "c", "image_md5": None, "image_pdq": None},
                {"row": 3, "key": "d", "image_md5": None, "image_pdq": bytes.fromhex(PDQ_D)},
            ],
        },
    )
