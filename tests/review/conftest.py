"""A real run (LAION-style parquet, metadata-only: md5 column, URL and score detectors) imported into a fresh
SQLite case store per test, and the review server on 127.0.0.1 in front of it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from safeset.cli.main import app
from tests.browser import browser  # noqa: F401  (the fixture, for the Chromium test here)
from tests.conftest import laion_table


def invoke(*args: str) -> None:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (args, result.output)


@pytest.fixture(scope="session")
def review_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("review-run")
    dataset, banks, run_dir = base / "laion", base / "banks", base / "run"
    dataset.mkdir()
    table = laion_table(100)  # punsafe (i % 100) / 100: rows 96-99 pass the score detector
    pq.write_table(table, dataset / "part-00000.parquet")
    urls = table["URL"].to_pylist()
    (base / "md5.txt").write_text("".join(hashlib.md5(f"image-{i}".encode()).hexdigest() + "\n" for i in (3, 4, 8)))
    (base / "urls.txt").write_text(urls[10] + "\n" + urls[11] + "\n")
    invoke("bank", "add", "--banks", str(banks), "--name", "hotline-md5", "--kind", "md5", str(base / "md5.txt"))
    invoke("bank", "add", "--banks", str(banks), "--name", "hotline-urls", "--kind", "url", str(base / "urls.txt"))
    invoke(
        "scan", str(dataset), "--banks", str(banks), "--out", str(run_dir), "--metadata-only", "--score", "punsafe>0.95"
    )
    return run_dir


@pytest.fixture
def case_store(review_run: Path, tmp_path: Path) -> Iterator[object]:
    from safeset.cases import CaseStore

    store = CaseStore.open(f"sqlite:///{tmp_path / 'cases.db'}")
    store.import_run(review_run, who="scanner")
    yield store
    store.close()
