"""Cleaning: rewrite each shard without the rows a scan's findings (and errors) say must go.

Invariant, checked per shard at the end of every run: rows in = rows kept + rows removed + rows errored.
The release gets a manifest of counts only; the list of removed keys stays in the run directory (0600),
because published next to the release it would be a roadmap to the removed material.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from safeset import __version__
from safeset.errors import SafesetError
from safeset.findings import split_by_shard
from safeset.fsutil import read_parquet, write_json, write_parquet
from safeset.io.columns import ColumnOptions
from safeset.io.detect import open_dataset
from safeset.policy.actions import ACTION_RANK, Action, ReleasePolicy


@dataclass
class ShardAccount:
    shard: str
    rows_in: int
    rows_kept: int
    rows_removed: int
    rows_errored: int
    rows_removed_cover: int = 0
    files: list[str] = field(default_factory=list)
    note: str | None = None


class AccountingError(SafesetError):
    pass


def _strongest_action(actions: list[str]) -> Action:
    return max((Action(a) for a in actions), key=lambda a: ACTION_RANK[a])


def clean_dataset(
    dataset: Path,
    run_dir: Path,
    out: Path,
    policy: ReleasePolicy | None = None,
    on_shard: Callable[[ShardAccount], None] | None = None,
) -> dict[str, Any]:
    policy = policy or ReleasePolicy()
    summary_path = run_dir / "summary.json"
    run_path = run_dir / "run.json"
    if not summary_path.exists() or not run_path.exists():
        raise SafesetError(f"{run_dir} holds no finished scan (summary.json missing); run `safeset scan` first")
    summary = json.loads(summary_path.read_text())
    config = json.loads(run_path.read_text())["config"]
    if Path(config["dataset"]).resolve() != dataset.resolve():
        raise SafesetError(f"{run_dir} is a scan of {config['dataset']}, not of {dataset}")
    if out.resolve() == dataset.resolve() or dataset.resolve() in out.resolve().parents:
        raise SafesetError("the release must be written outside the dataset folder")
    if out.exists() and any(out.iterdir()):
        raise SafesetError(f"{out} exists and is not empty; choose a new release folder")

    fmt = open_dataset(dataset, config["input_format"], ColumnOptions(**config["columns"]))
    findings = read_parquet(run_dir / "findings.parquet")
    errors = read_parquet(run_dir / "errors.parquet")
    findings_by_shard, errors_by_shard = split_by_shard(findings), split_by_shard(errors)
    empty_findings, empty_errors = findings.slice(0, 0), errors.slice(0, 0)
    per_shard = {r["shard"]: r for r in summary["shards"]}
    out.mkdir(parents=True, exist_ok=True)

    cover_rate = _cover_rate(policy, summary, findings)
    accounts: list[ShardAccount] = []
    removed_parts: list[pa.Table] = []
    for shard in fmt.shards():
        result = per_shard.get(shard.id)
        if result is None:
            raise SafesetError(f"shard {shard.id} is not in the scan in {run_dir}; the dataset changed since the scan")
        if result["error"]:
            # A shard that could not be read is withheld whole, and all of it counts as errored.
            account = ShardAccount(shard.id, result["rows_in"], 0, 0, result["rows_in"], note=result["error"])
            accounts.append(account)
            if on_shard:
                on_shard(account)
            continue
        mine = findings_by_shard.get(shard.id, empty_findings)
        row_actions: dict[int, list[str]] = {}
        for row, action in zip(mine["row"].to_pylist(), mine["action"].to_pylist(), strict=True):
            row_actions.setdefault(row, []).append(action)
        removed_rows = sorted(r for r, acts in row_actions.items() if policy.drops(_strongest_action(acts)))
        my_errors = errors_by_shard.get(shard.id, empty_errors)
        errored_rows = sorted(set(my_errors["row"].to_pylist()) - set(removed_rows))
        dropped = removed_rows + ([] if policy.keep_errored else errored_rows)
        cover_rows = _cover_rows(shard.id, result["rows_in"], cover_rate, policy.cover_seed, set(dropped))
        dropped += cover_rows
        written = fmt.write_shard(shard, np.array(sorted(dropped), dtype=np.int64), out)
        n_errored = 0 if policy.keep_errored else len(errored_rows)
        account = ShardAccount(
            shard=shard.id,
            rows_in=result["rows_in"],
            rows_kept=written.rows_written,
            rows_removed=len(removed_rows) + len(cover_rows),
            rows_errored=n_errored,
            rows_removed_cover=len(cover_rows),
            files=written.files,
        )
        if account.rows_in != account.rows_kept + account.rows_removed + account.rows_errored:
            raise AccountingError(
                f"shard {shard.id}: rows in {account.rows_in} != kept {account.rows_kept} + removed "
                f"{account.rows_removed} + errored {account.rows_errored}; the release is incomplete"
            )
        accounts.append(account)
        if removed_rows:
            keyed = mine.filter(pc.is_in(mine["row"], value_set=pa.array(removed_rows, type=pa.int64())))
            removed_parts.append(keyed.select(["key", "shard", "row", "detector", "bank", "action"]))
        if on_shard:
            on_shard(account)

    totals = {
        k: sum(getattr(a, k) for a in accounts)
        for k in ("rows_in", "rows_kept", "rows_removed", "rows_errored", "rows_removed_cover")
    }
    if totals["rows_in"] != totals["rows_kept"] + totals["rows_removed"] + totals["rows_errored"]:
        raise AccountingError(f"totals do not reconcile: {totals}")
    manifest = {
        **totals,
        "policy": asdict(policy),
        "shards": [asdict(a) for a in accounts],
        "source_scan": {"run_dir": str(run_dir.resolve()), "banks": [b["name"] for b in summary["banks"]]},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "safeset_version": __version__,
    }
    # Counts only; kept under _safeset/ so img2dataset's "*.json means finished shard" rule ignores it.
    write_json(out / "_safeset" / "release.json", _public_manifest(manifest))
    removed = pa.concat_tables(removed_parts) if removed_parts else None
    if removed is not None:
        write_parquet(run_dir / "removed.parquet", removed, private=True)
    write_json(run_dir / "release_accounting.json", manifest, private=True)
    return manifest


def _cover_rate(policy: ReleasePolicy, summary: dict[str, Any], findings: pa.Table) -> float:
    """Probability with which each row is withheld as cover: the same everywhere, so it reveals no location."""
    if policy.cover_ratio <= 0 or summary["rows_in"] == 0:
        return 0.0
    flagged = len(set(zip(findings["shard"].to_pylist(), findings["row"].to_pylist(), strict=True)))
    return min(1.0, policy.cover_ratio * flagged / summary["rows_in"])


def _cover_rows(shard: str, rows_in: int, rate: float, seed: int, taken: set[int]) -> list[int]:
    if rate <= 0 or rows_in == 0:
        return []
    # Seeded per shard, so a re-run (or a resumed one) withholds exactly the same rows.
    rng = np.random.default_rng([seed, zlib.crc32(shard.encode())])
    chosen = np.flatnonzero(rng.random(rows_in) < rate).tolist()
    return [r for r in chosen if r not in taken]


def _public_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """Per-shard counts without the run directory's path or any keys."""
    public = {k: v for k, v in manifest.items() if k not in ("source_scan", "policy", "rows_removed_cover")}
    public["shards"] = [
        {k: v for k, v in shard.items() if k in ("shard", "rows_in", "rows_kept", "rows_removed", "rows_errored")}
        for shard in manifest["shards"]
    ]
    return public
