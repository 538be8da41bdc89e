"""Helpers shared by tests: run a scan and a clean through the public Python API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from safeset.banks.store import BankStore
from safeset.io.columns import ColumnOptions
from safeset.policy.actions import ReleasePolicy
from safeset.release.clean import clean_dataset
from safeset.scan.config import ScanConfig
from safeset.scan.driver import run_scan


def scan(dataset: Path, banks: Path, run_dir: Path, **options: Any) -> dict[str, Any]:
    columns = options.pop("columns", ColumnOptions())
    processes = options.pop("processes", 1)
    resume = options.pop("resume", False)
    names = options.pop("bank_names", None) or tuple(b.name for b in BankStore(banks).list())
    config = ScanConfig(
        dataset=str(dataset),
        input_format=options.pop("input_format", "auto"),
        banks_dir=str(banks),
        bank_names=names,
        columns=columns,
        **options,
    )
    return run_scan(config, run_dir, processes=processes, resume=resume).summary


def clean(dataset: Path, run_dir: Path, out: Path, **policy: bool) -> dict[str, Any]:
    return clean_dataset(dataset, run_dir, out, ReleasePolicy(**policy))


def findings(run_dir: Path) -> list[dict[str, Any]]:
    return pq.read_table(run_dir / "findings.parquet").to_pylist()


def errors(run_dir: Path) -> list[dict[str, Any]]:
    return pq.read_table(run_dir / "errors.parquet").to_pylist()


def release_manifest(release: Path) -> dict[str, Any]:
    return json.loads((release / "_safeset" / "release.json").read_text())


def assert_reconciles(manifest: dict[str, Any]) -> None:
    for shard in manifest["shards"]:
        assert shard["rows_in"] == shard["rows_kept"] + shard["rows_removed"] + shard["rows_errored"], shard
    assert manifest["rows_in"] == manifest["rows_kept"] + manifest["rows_removed"] + manifest["rows_errored"]
