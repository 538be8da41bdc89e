"""Cleaning: rewrite each shard without the rows a scan's findings (and errors) say must go.

What a release guarantees:
  * Every input row is accounted for: rows in = rows kept + rows removed + rows errored, checked per shard and
    in total before anything is published.
  * It carries only bytes the scan checked: each shard's files must still have the size and digest the scan
    pinned (a changed shard is refused, by name), and formats that store samples as several files copy only the
    members the scan read and checked, verifying each one's digest as it is written.
  * It is published whole or not at all: shards are written into a staging folder beside `--out`, which is
    renamed into place only when every shard has passed; on any failure `--out` is left as it was.
  * Rows of shards the scan could not read are withheld (counted as errored); the run still ends with exit
    status 1 unless failed shards are explicitly allowed.
The release gets a manifest of counts only; the list of removed keys stays in the run directory
(`RUN_DIR/releases/<id>/`, 0600, one record per release, never overwritten), because published next to the
release it would be a roadmap to the removed material.
"""

from __future__ import annotations

import os
import secrets
import shutil
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
from safeset.errors import InputError, SafesetError
from safeset.exec.base import Executor, Task, map_in_order
from safeset.exec.local import LocalExecutor
from safeset.findings import ERRORS_SCHEMA, FINDINGS_SCHEMA, split_by_shard
from safeset.fsutil import disk_full, make_private_dir, write_json, write_parquet
from safeset.io.base import DatasetFormat, ShardRef
from safeset.io.batch import MEMBERS_SCHEMA
from safeset.io.columns import ColumnOptions
from safeset.io.detect import open_dataset
from safeset.io.location import LocationSpec, config_dataset, normalised_spec, parquet_source
from safeset.io.parquet import ParquetDataset
from safeset.policy.actions import Action, ReleasePolicy, strongest_per_row
from safeset.rundir import RunDir, is_inside_dataset, load_json, load_parquet, pin_shard

#: What a release record keeps of each removed row's findings (never evidence such as URLs or term lines).
REMOVED_COLUMNS = ("key", "shard", "row", "detector", "bank", "action")


@dataclass
class ShardAccount:
    shard: str
    rows_in: int
    rows_kept: int
    rows_removed: int
    rows_errored: int
    rows_removed_cover: int = 0
    # Members of kept rows the scan did not check (kept with --keep-errored): never copied into the release.
    members_withheld: int = 0
    files: list[str] = field(default_factory=list)
    note: str | None = None


class AccountingError(SafesetError):
    pass


def new_release_id() -> str:
    """Sortable by time, unique however many releases one run gets."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def clean_dataset(
    dataset: LocationSpec,
    run_dir: Path,
    out: Path,
    policy: ReleasePolicy | None = None,
    on_shard: Callable[[ShardAccount], None] | None = None,
    allow_failed_shards: bool = False,
    manifest_dir: Path | None = None,
    sign_key: Path | None = None,
    executor: Executor | None = None,
    on_item: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Write the release to `out` (published atomically) and its private record under RUN_DIR/releases/<id>/.

    With `policy.roadmap_bound`, decoys matched to the true removals are withheld too (`safeset.manifest.decoys`);
    with `manifest_dir`, the withheld rows are listed there by every key a copy may keep (`safeset.manifest`).
    Returns the full accounting; `shards_failed` counts shards withheld because the scan could not read them.
    Shards are written on `executor` (default: this process); `on_item` reports each one written (progress),
    `on_shard` each shard's account, in shard order, once all are written.
    """
    policy = policy or ReleasePolicy()
    files = RunDir(run_dir)
    summary_path, run_path = files.summary, files.run_json
    if not summary_path.is_file() or not run_path.is_file():
        raise SafesetError(f"{run_dir} holds no finished scan (summary.json missing); run `safeset scan` first")
    summary = load_json(summary_path, "scan summary")
    config = load_json(run_path, "run record").get("config") or {}
    if not isinstance(config.get("dataset"), str | list) or normalised_spec(config["dataset"]) != normalised_spec(
        config_dataset(dataset)
    ):
        raise SafesetError(f"{run_dir} is a scan of {config.get('dataset')}, not of {dataset}")
    scanned = config["dataset"] if isinstance(config["dataset"], str) else tuple(config["dataset"])
    fmt = open_dataset(scanned, config["input_format"], ColumnOptions(**config["columns"]))
    location = fmt.location or Path(str(scanned))
    _check_out(out, location)
    if manifest_dir is not None:
        from safeset.manifest.format import check_new_folder

        if is_inside_dataset(manifest_dir.resolve(), location):
            raise SafesetError("the manifest must be written outside the dataset folder")
        check_new_folder(manifest_dir)

    fmt.max_member_bytes = int(config.get("max_member_bytes", fmt.max_member_bytes))  # what the scan could read
    if config.get("metadata_only") and (summary.get("dataset") or {}).get("offer", {}).get("has_images"):
        raise SafesetError(
            f"the scan in {run_dir} did not read the images (--metadata-only), and {dataset} carries image bytes: "
            "a release carries only bytes the scan checked; scan without --metadata-only first"
        )
    findings = load_parquet(files.findings, FINDINGS_SCHEMA)
    errors = load_parquet(files.errors, ERRORS_SCHEMA)
    findings_by_shard, errors_by_shard = split_by_shard(findings), split_by_shard(errors)
    empty_findings, empty_errors = findings.slice(0, 0), errors.slice(0, 0)
    per_shard = {r["shard"]: r for r in summary["shards"]}

    release_id = new_release_id()
    staging = out.parent / f".{out.name}.staging-{release_id}"
    cover_rate = _cover_rate(policy, summary, findings)
    decoy_plan = None
    if policy.roadmap_bound > 0:
        decoy_plan = _plan_decoys(scanned, config, fmt, per_shard, findings_by_shard, errors_by_shard, policy)
    withheld_by_shard: dict[str, set[int]] = {}
    accounts: list[ShardAccount] = []
    removed_parts: list[pa.Table] = []
    try:
        staging.mkdir(parents=True)
        # Failed shards are accounted here; every other shard is one item of the release task, on the executor.
        planned: list[ShardAccount | _ShardWork] = []
        for shard in fmt.shards():
            result = per_shard.get(shard.id)
            if result is None:
                raise SafesetError(
                    f"shard {shard.id} is not in the scan in {run_dir}; the dataset changed since the scan"
                )
            if result["error"]:
                # A shard that could not be read is withheld whole, and all of it counts as errored.
                planned.append(ShardAccount(shard.id, result["rows_in"], 0, 0, result["rows_in"], note=result["error"]))
            else:
                planned.append(
                    _ShardWork(
                        shard,
                        result,
                        findings_by_shard.get(shard.id, empty_findings),
                        errors_by_shard.get(shard.id, empty_errors),
                        decoy_plan.rows_by_shard.get(shard.id, []) if decoy_plan is not None else None,
                    )
                )
        task = _ReleaseTask(
            scanned,
            config["input_format"],
            ColumnOptions(**config["columns"]),
            fmt.max_member_bytes,
            str(run_dir.resolve()),
            str(staging.resolve()),
            policy,
            cover_rate,
        )
        work = [item for item in planned if isinstance(item, _ShardWork)]
        done = iter(map_in_order(executor or LocalExecutor(1), task, work, on_result=on_item, dataset=fmt))
        for item in planned:
            if isinstance(item, ShardAccount):
                account = item
            else:
                account, removed, withheld = next(done)
                withheld_by_shard[account.shard] = withheld
                if removed is not None:
                    removed_parts.append(removed)
            if account.rows_in != account.rows_kept + account.rows_removed + account.rows_errored:
                raise AccountingError(
                    f"shard {account.shard}: rows in {account.rows_in} != kept {account.rows_kept} + removed "
                    f"{account.rows_removed} + errored {account.rows_errored}; nothing was released"
                )
            accounts.append(account)
            if on_shard:
                on_shard(account)

        totals = {
            k: sum(getattr(a, k) for a in accounts)
            for k in ("rows_in", "rows_kept", "rows_removed", "rows_errored", "rows_removed_cover", "members_withheld")
        }
        if totals["rows_in"] != totals["rows_kept"] + totals["rows_removed"] + totals["rows_errored"]:
            raise AccountingError(f"totals do not reconcile: {totals}; nothing was released")
        failed = [a.shard for a in accounts if a.note]
        roadmap = decoy_plan.summary if decoy_plan is not None else None
        manifest = {
            **totals,
            "release_id": release_id,
            "shards_failed": len(failed),
            "failed_shards": failed,
            "failed_shards_allowed": allow_failed_shards,
            "policy": asdict(policy),
            "shards": [asdict(a) for a in accounts],
            "source_scan": {"run_dir": str(run_dir.resolve()), "banks": [b["name"] for b in summary["banks"]]},
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "safeset_version": __version__,
        }
        if roadmap is not None:
            manifest["roadmap"] = roadmap
        # Counts only; kept under _safeset/ so img2dataset's "*.json means finished shard" rule ignores it.
        write_json(staging / "_safeset" / "release.json", public_manifest(manifest))
        record = _write_record(run_dir, release_id, manifest, removed_parts)
        try:
            if decoy_plan is not None:
                from safeset.manifest.release import WITHHELD_NAME

                write_parquet(record / WITHHELD_NAME, decoy_plan.withheld, private=True)
            if manifest_dir is not None:
                manifest["manifest"] = _write_removal_manifest(
                    scanned, config, summary, withheld_by_shard, manifest_dir, sign_key, roadmap, policy
                )
            _publish(staging, out)
        except BaseException:
            shutil.rmtree(record, ignore_errors=True)
            if manifest_dir is not None and manifest_dir.is_dir():
                shutil.rmtree(manifest_dir, ignore_errors=True)
            raise
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        full = disk_full(exc)
        if full is not None:
            raise SafesetError(
                f"no space left on device ({full.filename or out}); nothing was released, free space and run "
                "`safeset clean` again"
            ) from None
        if isinstance(exc, InputError):
            raise SafesetError(f"{exc}; nothing was released") from None
        raise
    manifest["record"] = str(record)
    return manifest


@dataclass
class _ShardWork:
    """One shard's part of a release: what the scan found in it."""

    shard: ShardRef
    result: dict[str, Any]
    findings: pa.Table
    errors: pa.Table
    decoy_rows: list[int] | None


@dataclass(frozen=True)
class _ReleaseTask(Task):
    """Writing the release as an executor task: item = a shard's `_ShardWork`, result = (its account, its removed
    rows' findings, the rows it withheld). Every worker writes its shards' files into the same staging folder."""

    dataset: str | tuple[str, ...]
    input_format: str
    columns: ColumnOptions
    max_member_bytes: int
    run_dir: str
    staging: str
    policy: ReleasePolicy
    cover_rate: float

    def cache_key(self) -> str:
        return f"release-{self.staging}"

    def open(self) -> Callable[[_ShardWork], tuple[ShardAccount, pa.Table | None, set[int]]]:
        fmt = open_dataset(self.dataset, self.input_format, self.columns)
        fmt.max_member_bytes = self.max_member_bytes
        return self.open_with(fmt)

    def open_with(self, fmt: DatasetFormat) -> Callable[[_ShardWork], tuple[ShardAccount, pa.Table | None, set[int]]]:
        def release_shard(work: _ShardWork) -> tuple[ShardAccount, pa.Table | None, set[int]]:
            _check_pins(fmt, work.shard, work.result)
            withheld: set[int] = set()
            account, removed = _clean_shard(
                fmt,
                work.shard,
                work.result,
                work.findings,
                work.errors,
                self.policy,
                self.cover_rate,
                Path(self.staging),
                Path(self.run_dir),
                work.decoy_rows,
                withheld,
            )
            return account, removed, withheld

        return release_shard


def _check_out(out: Path, dataset: Any) -> None:
    target = out.resolve()
    if is_inside_dataset(target, dataset):
        raise SafesetError("the release must be written outside the dataset folder")
    if target.exists() and not target.is_dir():
        raise SafesetError(f"{out} exists and is not a folder; choose a new release folder")
    if target.is_dir() and any(target.iterdir()):
        raise SafesetError(f"{out} exists and is not empty; choose a new release folder")


def _check_pins(fmt: DatasetFormat, shard: ShardRef, result: dict[str, Any]) -> None:
    """Refuse a shard whose files are not, byte for byte, the ones the scan read."""
    pinned = result.get("pins")
    if not pinned:
        raise SafesetError(f"shard {shard.id}: the scan recorded no file digests (an older run); scan it again")
    current = pin_shard(fmt, shard)  # an unreadable file is an InputError: nothing is released
    if current != pinned:
        before = {p["file"]: p for p in pinned}
        changed = sorted(
            {p["file"] for p in current if before.get(p["file"]) != p} | (before.keys() - {p["file"] for p in current})
        )
        raise SafesetError(
            f"shard {shard.id} changed since the scan ({', '.join(changed)}: size or content differs); "
            "scan it again; nothing was released"
        )


def _clean_shard(
    fmt: DatasetFormat,
    shard: ShardRef,
    result: dict[str, Any],
    mine: pa.Table,
    my_errors: pa.Table,
    policy: ReleasePolicy,
    cover_rate: float,
    staging: Path,
    run_dir: Path,
    decoy_rows: list[int] | None = None,
    withheld: set[int] | None = None,
) -> tuple[ShardAccount, pa.Table | None]:
    actions = _row_actions(mine)
    removed_rows = sorted(r for r, action in actions.items() if policy.drops(action))
    errored_rows = sorted(set(my_errors["row"].to_pylist()) - set(removed_rows))
    dropped = removed_rows + ([] if policy.keep_errored else errored_rows)
    if decoy_rows is not None:
        taken = set(dropped)
        cover_rows = sorted(r for r in decoy_rows if r not in taken)
    else:
        cover_rows = _cover_rows(shard.id, result["rows_in"], cover_rate, policy.cover_seed, set(dropped))
    dropped += cover_rows
    if withheld is not None:
        withheld.update(removed_rows, cover_rows)
    drop = np.array(sorted(dropped), dtype=np.int64)
    drop = _positions_by_key(fmt, shard, drop, mine, my_errors)
    members_path = RunDir(run_dir).shard_file(shard.id, ".members.parquet")
    members = load_parquet(members_path, MEMBERS_SCHEMA) if members_path.is_file() else None
    written = fmt.write_shard(shard, drop, staging, members)
    account = ShardAccount(
        shard=shard.id,
        rows_in=result["rows_in"],
        rows_kept=written.rows_written,
        rows_removed=len(removed_rows) + len(cover_rows),
        rows_errored=(0 if policy.keep_errored else len(errored_rows)) + written.rows_unchecked,
        rows_removed_cover=len(cover_rows),
        members_withheld=int(getattr(written, "members_withheld", 0)),
        files=written.files,
    )
    removed = None
    if removed_rows:
        keyed = mine.filter(pc.is_in(mine["row"], value_set=pa.array(removed_rows, type=pa.int64())))
        removed = keyed.select(list(REMOVED_COLUMNS))
    return account, removed


def _row_actions(findings: pa.Table) -> dict[int, Action]:
    """The strongest action of each flagged row (the policy's rule)."""
    return strongest_per_row(findings["row"].to_pylist(), findings["action"].to_pylist())


def _plan_decoys(
    dataset: str | tuple[str, ...],
    config: dict[str, Any],
    fmt: DatasetFormat,
    per_shard: dict[str, dict[str, Any]],
    findings_by_shard: dict[str, pa.Table],
    errors_by_shard: dict[str, pa.Table],
    policy: ReleasePolicy,
):  # type: ignore[no-untyped-def]
    """Decoys for the rows removed as known or suspected abuse (not opt-outs: those are no roadmap to anything)."""
    from safeset.manifest.decoys import DecoyOptions
    from safeset.manifest.release import plan_decoys

    sensitive: dict[str, set[int]] = {}
    excluded: dict[str, set[int]] = {}
    shards = []
    for shard in fmt.shards():
        result = per_shard.get(shard.id)
        if result is None or result["error"]:
            continue  # failed shards are withheld whole; the loop below refuses unknown ones
        shards.append(shard)
        actions = _row_actions(findings_by_shard[shard.id]) if shard.id in findings_by_shard else {}
        sensitive[shard.id] = {r for r, a in actions.items() if policy.drops(a) and a is not Action.EXCLUDE}
        excluded[shard.id] = {r for r, a in actions.items() if a is Action.EXCLUDE}
        if shard.id in errors_by_shard:
            excluded[shard.id] |= set(errors_by_shard[shard.id]["row"].to_pylist())
    return plan_decoys(
        dataset,
        config["input_format"],
        ColumnOptions(**config["columns"]),
        sensitive,
        excluded,
        shards,
        DecoyOptions(roadmap_bound=policy.roadmap_bound, seed=policy.cover_seed),
        max_member_bytes=fmt.max_member_bytes,
    )


def _write_removal_manifest(
    dataset: str | tuple[str, ...],
    config: dict[str, Any],
    summary: dict[str, Any],
    withheld_by_shard: dict[str, set[int]],
    manifest_dir: Path,
    sign_key: Path | None,
    roadmap: dict[str, Any] | None,
    policy: ReleasePolicy,
) -> str:
    from safeset.manifest.format import dataset_digest, write_manifest
    from safeset.manifest.release import manifest_table

    table, key_column = manifest_table(
        dataset,
        config["input_format"],
        ColumnOptions(**config["columns"]),
        withheld_by_shard,
        max_member_bytes=int(config.get("max_member_bytes", 0)) or None,
    )
    pins = [{"shard": s["shard"], "pins": s.get("pins")} for s in summary["shards"]]
    withheld = sum(len(rows) for rows in withheld_by_shard.values())
    bound = roadmap or {"roadmap_bound": None, "method": "uniform covers" if policy.cover_ratio else "none"}
    # Counts that do not say how many of the withheld rows are decoys.
    public_roadmap = {k: v for k, v in bound.items() if k in ("roadmap_bound", "achieved_bound", "method")}
    write_manifest(
        manifest_dir,
        table,
        source_dataset_digest=dataset_digest(pins),
        counts={"rows_withheld": withheld},
        roadmap=public_roadmap,
        key_column=key_column,
        sign_key=sign_key,
    )
    return str(manifest_dir)


def _positions_by_key(
    fmt: DatasetFormat, shard: ShardRef, drop: np.ndarray, findings: pa.Table, errors: pa.Table
) -> np.ndarray:
    """For keyed parquet shards whose keys are unique, the dropped rows' positions looked up by key.

    The pinned digest already guarantees an unchanged file; removing by key keeps a row's fate bound to its
    identity rather than to its position, and a key the file no longer holds at all refuses the shard.
    """
    if not isinstance(fmt, ParquetDataset) or len(drop) == 0:
        return drop
    key_column = fmt.column_map(shard).key
    if key_column is None:
        return drop
    import pyarrow.parquet as pq

    keys = pc.cast(pq.ParquetFile(parquet_source(shard.path)).read(columns=[key_column])[key_column], pa.string())
    if keys.null_count or pc.count_distinct(keys).as_py() != len(keys):
        return drop  # missing or duplicate keys: positions are the only identity
    recorded = pa.concat_tables([findings.select(["row", "key"]), errors.select(["row", "key"])])
    by_row = dict(zip(recorded["row"].to_pylist(), recorded["key"].to_pylist(), strict=True))
    wanted = [(int(r), by_row.get(int(r))) for r in drop]
    keyed = [(r, k) for r, k in wanted if k]
    positions = pc.index_in(pa.array([k for _, k in keyed], type=pa.string()), value_set=keys).to_pylist()
    missing = [k for (_, k), p in zip(keyed, positions, strict=True) if p is None]
    if missing:
        raise SafesetError(f"shard {shard.id} no longer holds key {missing[0]!r} the scan flagged; scan it again")
    unkeyed = [r for r, k in wanted if not k]  # cover rows: position is their identity
    return np.array(sorted({*unkeyed, *(int(p) for p in positions)}), dtype=np.int64)


def _write_record(run_dir: Path, release_id: str, manifest: dict[str, Any], removed_parts: list[pa.Table]) -> Path:
    """The release's private record: removed keys and full accounting, in a folder of its own."""
    record = RunDir(run_dir).release_record(release_id)
    make_private_dir(RunDir(run_dir).releases)
    make_private_dir(record)
    removed = (
        pa.concat_tables(removed_parts)
        if removed_parts
        else pa.schema([FINDINGS_SCHEMA.field(c) for c in REMOVED_COLUMNS]).empty_table()
    )
    write_parquet(record / "removed.parquet", removed, private=True)
    write_json(record / "accounting.json", manifest, private=True)
    return record


def _publish(staging: Path, out: Path) -> None:
    """Move the finished release into place in one rename (an empty `out` is replaced)."""
    if out.is_dir():
        out.rmdir()  # checked empty up front; fails loudly if something appeared meanwhile
    os.replace(staging, out)


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


def public_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """Per-shard counts without the run directory's path, any keys, or the release's private record id."""
    public = {
        k: v
        for k, v in manifest.items()
        if k
        not in (
            "source_scan",
            "policy",
            "rows_removed_cover",
            "release_id",
            "failed_shards_allowed",
            "members_withheld",
            "roadmap",
            "manifest",
        )
    }
    public["shards"] = [
        {k: v for k, v in shard.items() if k in ("shard", "rows_in", "rows_kept", "rows_removed", "rows_errored")}
        for shard in manifest["shards"]
    ]
    return public
