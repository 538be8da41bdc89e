"""The scan driver: plans the shards still to do, runs the per-shard task on an executor, then the expansion
pass, then merges both into the run's findings, errors and summary."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc

from safeset import __version__
from safeset.banks.store import BankInfo
from safeset.errors import SafesetError
from safeset.exec.base import Executor, map_in_order
from safeset.exec.local import LocalExecutor
from safeset.expansion.base import ExpansionContext
from safeset.findings import ERRORS_SCHEMA, FINDINGS_SCHEMA, split_by_shard
from safeset.fsutil import make_private_dir, write_json, write_parquet
from safeset.io.base import ShardRef
from safeset.rundir import RunDir, check_run_dir, load_json, load_parquet
from safeset.scan.config import ScanConfig, to_plain
from safeset.scan.task import ScanTask, ShardResult, ShardScanner, count_rows


@dataclass
class ScanOutcome:
    summary: dict[str, Any]
    run_dir: Path


def run_scan(
    config: ScanConfig,
    run_dir: Path,
    processes: int = 1,
    resume: bool = False,
    on_start: Callable[[int, int], None] | None = None,
    on_shard: Callable[[ShardResult], None] | None = None,
    executor: Executor | None = None,
    seeds: pa.Table | None = None,
    on_pass: Callable[[str, int], None] | None = None,
    on_item: Callable[[], None] | None = None,
) -> ScanOutcome:
    """Scan every shard (on `executor`; by default `processes` local processes), then expand and merge.

    `seeds` are findings known before the scan (FINDINGS_SCHEMA: confirmed cases fed back from a case store): each
    is kept only where this dataset has that key at that shard and row, counts as a finding of this run, and seeds
    the expansion pass like the first pass's own matches."""
    started = datetime.now(UTC)
    scanner = ShardScanner(config)
    checked = scanner.check()
    read_images = bool(checked["read_images"])
    shards = scanner.dataset.shards()
    known = _seeds_in_dataset(scanner, shards, seeds) if seeds is not None else FINDINGS_SCHEMA.empty_table()
    fingerprint = config.fingerprint(scanner.all_banks)
    if known.num_rows:
        fingerprint["seeds"] = _table_digest(known)
    files = RunDir(run_dir)
    check_run_dir(run_dir, scanner.dataset.location or Path(str(config.dataset)), resume)
    if files.run_json.exists():
        previous = load_json(files.run_json, "run record").get("fingerprint")
        if previous != fingerprint:
            raise SafesetError(f"{run_dir} holds a run with other settings or banks; it cannot be resumed with these")
    make_private_dir(run_dir)
    make_private_dir(files.shards)
    for stale in files.shards.glob(".*.tmp-*"):
        stale.unlink()  # half-written files of a killed run
    write_json(
        files.run_json,
        {"fingerprint": fingerprint, "safeset_version": __version__, "config": to_plain(config)},
        private=True,
    )

    done = {s.id for s in shards if files.shard_done(s.id)}
    todo = [s for s in shards if s.id not in done]
    if on_start:
        on_start(len(shards), len(done))
    task = ScanTask(config, str(run_dir.resolve()), read_images, json.dumps(fingerprint, sort_keys=True))
    local = lambda shard: scanner.scan_shard(shard, read_images, run_dir)  # noqa: E731 - this process's scanner
    runner = executor or LocalExecutor(processes)
    for result in runner.map(task, todo, local):
        if on_shard:
            on_shard(result)
    first, errors, results = _read_shard_tables(run_dir, shards)
    phase_one = (pa.concat_tables([first, known]), errors, results)
    expansions = run_expansions(scanner, run_dir, shards, phase_one[0], runner, on_pass, on_item)
    summary = merge_run(run_dir, shards, scanner.banks, checked, started, phase_one, expansions, len(done))
    return ScanOutcome(summary, run_dir)


def _seeds_in_dataset(scanner: ShardScanner, shards: list[ShardRef], seeds: pa.Table) -> pa.Table:
    """The seeds whose key this dataset holds at their shard and row (metadata of those shards only is read)."""
    seeds = seeds.cast(FINDINGS_SCHEMA)
    by_shard = {shard.id: shard for shard in shards}
    keep = np.zeros(seeds.num_rows, dtype=bool)
    wanted: dict[str, dict[int, list[tuple[int, str]]]] = {}
    for i, (shard, row, key) in enumerate(zip(*(seeds[c].to_pylist() for c in ("shard", "row", "key")), strict=True)):
        if shard in by_shard and row is not None and row >= 0:
            wanted.setdefault(shard, {}).setdefault(row, []).append((i, key))
    for shard_id, rows in wanted.items():
        for batch in scanner.dataset.iter_batches(by_shard[shard_id], 65536, read_images=False):
            hits = np.flatnonzero(np.isin(batch.rows, np.fromiter(rows, dtype=np.int64)))
            for position, key in zip(hits, batch.keys_at(hits), strict=True):
                for index, seed_key in rows.get(int(batch.rows[position]), ()):
                    keep[index] |= seed_key == key
    return seeds.filter(pa.array(keep))


def _table_digest(table: pa.Table) -> str:
    """A digest of a table's content (its rows in order), for the run fingerprint."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def _read_shard_tables(run_dir: Path, shards: list[ShardRef]) -> tuple[pa.Table, pa.Table, list[dict[str, Any]]]:
    """Per-shard findings, errors and results, concatenated in shard order."""
    results, finding_tables, error_tables = [], [], []
    files = RunDir(run_dir)
    for shard in shards:
        marker = files.marker(shard.id)
        if not marker.exists():
            raise SafesetError(f"shard {shard.id} has no result in {marker.parent}; run the scan again with --resume")
        results.append(load_json(marker, f"result of shard {shard.id}"))
        finding_tables.append(load_parquet(files.shard_file(shard.id, ".findings.parquet"), FINDINGS_SCHEMA))
        error_tables.append(load_parquet(files.shard_file(shard.id, ".errors.parquet"), ERRORS_SCHEMA))
    findings = pa.concat_tables(finding_tables) if finding_tables else FINDINGS_SCHEMA.empty_table()
    errors = pa.concat_tables(error_tables) if error_tables else ERRORS_SCHEMA.empty_table()
    return findings, errors, results


def run_expansions(
    scanner: ShardScanner,
    run_dir: Path,
    shards: list[ShardRef],
    seeds: pa.Table,
    executor: Executor | None = None,
    on_pass: Callable[[str, int], None] | None = None,
    on_item: Callable[[], None] | None = None,
) -> pa.Table:
    """Second pass: each expander grows findings around the first pass's, its per-shard work on the executor;
    always recomputed, so a resumed run gets the same expansion as an uninterrupted one. `on_pass(name, items)`
    announces each round of per-shard work, `on_item` reports each item done (progress bars)."""
    tables = [FINDINGS_SCHEMA.empty_table()]
    runner = executor or LocalExecutor(1)
    current = [""]

    def run_round(task: Any, items: Any) -> list[Any]:
        if on_pass:
            on_pass(current[0], len(items))
        return map_in_order(runner, task, items, on_item, dataset=scanner.dataset)

    context = ExpansionContext(run_dir.resolve(), scanner.dataset, shards, seeds, scanner.config, run_round)
    for expander in scanner.expanders:
        current[0] = expander.name
        tables.append(expander.expand(context).cast(FINDINGS_SCHEMA))
    expanded = pa.concat_tables(tables)
    write_parquet(RunDir(run_dir).expansions, expanded, private=True)
    return expanded


def merge_run(
    run_dir: Path,
    shards: list[ShardRef],
    banks: list[BankInfo],
    checked: dict[str, Any],
    started: datetime,
    phase_one: tuple[pa.Table, pa.Table, list[dict[str, Any]]],
    expansions: pa.Table,
    resumed_shards: int = 0,
) -> dict[str, Any]:
    """Combine both passes, in shard order, into findings.parquet, errors.parquet and summary.json."""
    first, errors, results = phase_one
    order = {shard.id: i for i, shard in enumerate(shards)}
    combined = pa.concat_tables([first, expansions])
    position = pa.array([order[s] for s in combined["shard"].to_pylist()], type=pa.int64())
    combined = (
        combined.append_column("_order", position)
        .sort_by(
            [
                ("_order", "ascending"),
                ("row", "ascending"),
                ("bank", "ascending"),
                ("detector", "ascending"),
                ("evidence", "ascending"),
            ]
        )
        .drop_columns(["_order"])
    )
    files = RunDir(run_dir)
    write_parquet(files.findings, combined, private=True)
    write_parquet(files.errors, errors, private=True)
    by_shard_findings = split_by_shard(combined)
    by_shard_errors = split_by_shard(errors)
    for result in results:
        account = ShardResult(**result)
        count_rows(
            account,
            by_shard_findings.get(account.shard, FINDINGS_SCHEMA.empty_table()),
            by_shard_errors.get(account.shard, ERRORS_SCHEMA.empty_table()),
        )
        result.update(asdict(account))
    totals = {k: sum(r[k] for r in results) for k in ("rows_in", "rows_flagged", "rows_errored", "findings")}
    by_action: Counter[str] = Counter()
    for r in results:
        by_action.update(r["rows_by_action"])
    summary = {
        **totals,
        "rows_clean": totals["rows_in"] - totals["rows_flagged"] - totals["rows_errored"],
        "rows_by_action": dict(sorted(by_action.items())),
        "findings_by_detector": dict(sorted(Counter(combined["detector"].to_pylist()).items())),
        "findings_by_bank": dict(sorted(Counter(combined["bank"].to_pylist()).items())),
        "shards_total": len(results),
        "shards_failed": sum(1 for r in results if r["error"]),
        "shards_resumed": resumed_shards,
        "shards": results,
        "dataset": checked,
        "banks": [asdict(b) for b in banks],
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "safeset_version": __version__,
        "host_cpus": os.cpu_count(),
    }
    write_json(files.summary, summary, private=True)
    return summary
