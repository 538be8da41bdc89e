"""Helpers shared by tests: run a scan and a clean through the public Python API."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from safeset.banks.store import BankStore
from safeset.policy.actions import ReleasePolicy
from safeset.release.clean import clean_dataset
from safeset.scan.config import config_from_dict
from safeset.scan.driver import run_scan


def scan(
    dataset: Path,
    banks: Path,
    run_dir: Path,
    policy: dict[str, Any] | None = None,
    processes: int = 1,
    resume: bool = False,
    **settings: Any,
) -> dict[str, Any]:
    """Scan with every bank unless `bank_names` says otherwise; `policy` is a policy file's sections as a dict
    (`{"pdq": {"radius": 24}}`), `settings` top-level ScanConfig fields."""
    settings.setdefault("bank_names", tuple(b.name for b in BankStore(banks).list()))
    config = replace(config_from_dict(policy or {}, dataset=str(dataset), banks_dir=str(banks)), **settings)
    return run_scan(config, run_dir, processes=processes, resume=resume).summary


def clean(dataset: Path, run_dir: Path, out: Path, **policy: Any) -> dict[str, Any]:
    """Clean without decoys unless asked: tests count exactly which rows leave."""
    return clean_dataset(dataset, run_dir, out, ReleasePolicy(**{"roadmap_bound": 0.0, **policy}))


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
