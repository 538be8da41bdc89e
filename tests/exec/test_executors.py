"""Executors spread shards differently but must give identical results: local pool and Ray."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from safeset.banks.store import BankStore
from safeset.demo import demo_rows, write_webdataset
from safeset.exec.local import LocalExecutor
from safeset.scan.config import ScanConfig
from safeset.scan.driver import run_scan
from tests.conftest import image_rows, write_list


@pytest.fixture
def dataset_and_banks(tmp_path: Path) -> tuple[Path, Path]:
    shards = demo_rows(shards=4, rows_per_shard=10)
    write_webdataset(tmp_path / "ds", shards)
    banks = tmp_path / "banks"
    known = image_rows(shards)[::9]
    BankStore(banks).add(
        "k", "md5", write_list(tmp_path / "k.txt", [hashlib.md5(r.image or b"").hexdigest() for r in known])
    )
    return tmp_path / "ds", banks


def _config(dataset: Path, banks: Path) -> ScanConfig:
    return ScanConfig(dataset=str(dataset), input_format="auto", banks_dir=str(banks), bank_names=("k",))


@pytest.mark.slow
def test_ray_executor_matches_local(dataset_and_banks: tuple[Path, Path], tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    from safeset.exec.ray import RayExecutor

    dataset, banks = dataset_and_banks
    local = run_scan(_config(dataset, banks), tmp_path / "local", executor=LocalExecutor(1)).summary
    seen: list[str] = []
    try:
        distributed = run_scan(
            _config(dataset, banks),
            tmp_path / "ray",
            executor=RayExecutor(num_cpus=2),
            on_shard=lambda result: seen.append(result.shard),
        ).summary
    finally:
        ray.shutdown()
    assert sorted(seen) == ["00000.tar", "00001.tar", "00002.tar", "00003.tar"]
    assert distributed["rows_flagged"] == local["rows_flagged"] > 0
    assert pq.read_table(tmp_path / "ray" / "findings.parquet").equals(
        pq.read_table(tmp_path / "local" / "findings.parquet")
    )
