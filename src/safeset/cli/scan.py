"""`safeset scan`: match a dataset against banks and detectors; the typed configuration comes from a policy file
(`--policy`), from flags, or both (flags given on the command line override the file)."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from safeset.banks.store import BankStore
from safeset.cli.common import console, executor_for, friendly, given_flags, out, progress_bar
from safeset.errors import SafesetError
from safeset.expansion.options import NeighborOptions
from safeset.io.base import DEFAULT_MAX_MEMBER_BYTES
from safeset.io.location import config_dataset
from safeset.kinds.pdq.options import PdqOptions
from safeset.signals.images import DEFAULT_MAX_PIXELS

#: Flag (parameter name) -> the policy-file setting it overrides (section.key).
FLAG_SETTINGS: dict[str, str] = {
    "bank": "bank_names",
    "input_format": "input_format",
    "url_col": "columns.url_col",
    "caption_col": "columns.caption_col",
    "key_col": "columns.key_col",
    "hash_col": "columns.hash_cols",
    "metadata_only": "metadata_only",
    "expand": "expanders",
    "batch_rows": "batch_rows",
    "max_pixels": "max_pixels",
    "max_member_bytes": "max_member_bytes",
    "neighbor_threshold": "neighbor.threshold",
    "neighbor_top_k": "neighbor.top_k",
    "neighbor_hops": "neighbor.hops",
    "neighbor_max_hop_seeds": "neighbor.max_hop_seeds",
    "neighbor_seed_detector": "neighbor.seed_detectors",
    "neighbor_seed_file": "neighbor.seed_file",
    "neighbor_action": "neighbor.action",
    "neighbor_backend": "neighbor.backend",
    "neighbor_memory_mb": "neighbor.memory_mb",
    "embeddings": "embeddings.path",
    "embedding_col": "embeddings.column",
    "score": "triage.scores",
    "model": "triage.model",
    "model_threshold": "triage.model_threshold",
    "model_column": "triage.model_column",
    "concepts": "triage.concepts",
    "rule": "triage.rules",
    "triage_action": "triage.action",
    "pdq_radius": "pdq.radius",
    "pdq_mode": "pdq.mode",
    "pdq_dihedral": "pdq.dihedral",
    "pdq_unletterbox": "pdq.unletterbox",
    "pdq_upscale": "pdq.upscale",
    "pdq_robust": "pdq.robust",
    "duplicate_pdq": "duplicate.pdq",
    "duplicate_action": "duplicate.action",
}
SUMMARY_TABLE_MAX_SHARDS = 20  # above this, one line per run and the failed shards only


def register(app: typer.Typer) -> None:
    app.command()(scan)


@friendly
def scan(
    ctx: typer.Context,
    dataset: Annotated[
        list[str],
        typer.Argument(
            help="Dataset folder or file; a glob ('data/*.parquet'); a URL (s3://bucket/prefix, gs://, hf://, any "
            "fsspec filesystem; credentials from the environment); or several of these.",
            show_default=False,
        ),
    ],
    banks: Annotated[Path, typer.Option("--banks", help="Bank directory.")],
    run_dir: Annotated[Path, typer.Option("--out", help="Run directory for findings and summary.")],
    bank: Annotated[list[str] | None, typer.Option("--bank", help="Use only these banks (repeatable).")] = None,
    input_format: Annotated[str, typer.Option("--input-format", help="auto, parquet, webdataset or folder.")] = "auto",
    url_col: Annotated[str | None, typer.Option("--url-col")] = None,
    caption_col: Annotated[str | None, typer.Option("--caption-col")] = None,
    key_col: Annotated[str | None, typer.Option("--key-col")] = None,
    hash_col: Annotated[
        list[str] | None,
        typer.Option(
            "--hash-col",
            help="NAME:KIND, a metadata column of hex image digests (KIND md5, sha1 or sha256); repeatable.",
        ),
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option("--policy", help="Policy file (TOML): banks, detectors, thresholds, actions, expansion, release."),
    ] = None,
    action: Annotated[
        list[str] | None,
        typer.Option(
            "--action",
            help="SIGNAL=ACTION per signal, e.g. 'bank:optout=exclude', 'detector:score=ignore' (repeatable).",
        ),
    ] = None,
    seeds_from: Annotated[
        str | None,
        typer.Option(
            "--seeds-from",
            help="Case store URL (sqlite:///cases.db, postgresql://…): its confirmed cases count as findings and "
            "seed the expansion pass (their copies and neighbours are found).",
        ),
    ] = None,
    processes: Annotated[int, typer.Option("--processes", min=1, help="Shards scanned in parallel.")] = 1,
    executor: Annotated[
        str, typer.Option("--executor", help="local (this machine, --processes) or ray (a Ray cluster).")
    ] = "local",
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="Ray cluster address (default: start or join a local one).")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out.")] = False,
    metadata_only: Annotated[
        bool, typer.Option("--metadata-only", help="Match on metadata (URLs, hash columns) without reading images.")
    ] = False,
    expand: Annotated[
        list[str] | None,
        typer.Option("--expand", help="Second-pass expanders, e.g. 'duplicate' (copies of flagged images)."),
    ] = None,
    batch_rows: Annotated[int, typer.Option("--batch-rows", min=1)] = 4096,
    max_pixels: Annotated[
        int, typer.Option("--max-pixels", help="Images above this are errored, not decoded.")
    ] = DEFAULT_MAX_PIXELS,
    max_member_bytes: Annotated[
        int,
        typer.Option("--max-member-bytes", min=1, help="Tar members and image files above this are errored, unread."),
    ] = DEFAULT_MAX_MEMBER_BYTES,
    neighbors: Annotated[bool, typer.Option("--neighbors", hidden=True, help="Same as --expand neighbor.")] = False,
    neighbor_threshold: Annotated[
        float, typer.Option("--neighbor-threshold", help="Cosine similarity to a seed (-1 with --neighbor-top-k).")
    ] = NeighborOptions.threshold,
    neighbor_top_k: Annotated[
        int | None, typer.Option("--neighbor-top-k", min=1, help="Only each seed's k nearest rows (within τ).")
    ] = None,
    neighbor_hops: Annotated[
        int, typer.Option("--neighbor-hops", min=1, max=2, help="2: search again around the first hop's rows.")
    ] = 1,
    neighbor_max_hop_seeds: Annotated[
        int, typer.Option("--neighbor-max-hop-seeds", min=1, help="Bound on second-hop seeds (closest first).")
    ] = 1000,
    neighbor_seed_detector: Annotated[
        list[str] | None,
        typer.Option(
            "--neighbor-seed-detector", help="Detectors whose findings seed the search (default: hash and URL ones)."
        ),
    ] = None,
    neighbor_seed_file: Annotated[
        Path | None,
        typer.Option("--neighbor-seed-file", help="More seeds: a .npy of vectors (n × d) or a file of keys."),
    ] = None,
    neighbor_action: Annotated[str, typer.Option("--neighbor-action", help="Action for neighbours.")] = "review",
    neighbor_backend: Annotated[
        str, typer.Option("--neighbor-backend", help="auto (GPU via torch when present), numpy, torch, torch-cpu.")
    ] = "auto",
    neighbor_memory_mb: Annotated[
        int, typer.Option("--neighbor-memory-mb", min=16, help="Working memory of one similarity block.")
    ] = 256,
    embeddings: Annotated[
        Path | None,
        typer.Option("--embeddings", help="Folder of .npy parts row-aligned with the shards (LAION img_emb)."),
    ] = None,
    embedding_col: Annotated[
        str | None, typer.Option("--embedding-col", help="Parquet list column holding each row's embedding.")
    ] = None,
    score: Annotated[
        list[str] | None,
        typer.Option("--score", help="Flag rows by a score column, e.g. 'punsafe>0.95' (repeatable; '-> remove')."),
    ] = None,
    model: Annotated[
        Path | None, typer.Option("--model", help="ONNX classifier applied to each embedding (e.g. an NSFW head).")
    ] = None,
    model_threshold: Annotated[float, typer.Option("--model-threshold", help="Flag when the score exceeds.")] = 0.5,
    model_column: Annotated[
        int | None, typer.Option("--model-column", help="Which output column is the score.")
    ] = None,
    concepts: Annotated[
        Path | None,
        typer.Option("--concepts", help="Concept vectors with thresholds and special-care concepts (JSON or NPZ)."),
    ] = None,
    rule: Annotated[
        list[str] | None,
        typer.Option(
            "--rule",
            help="Combination rule, e.g. 'research=punsafe > 0.95 AND bank:T -> remove' (repeatable; bank:, "
            "detector:, rule: references, AND/OR/NOT).",
        ),
    ] = None,
    triage_action: Annotated[
        str, typer.Option("--triage-action", help="Action for score, model, concept and rule findings.")
    ] = "review",
    pdq_radius: Annotated[
        int, typer.Option("--pdq-radius", min=0, max=128, help="PDQ match radius in bits (pdq banks, duplicates).")
    ] = PdqOptions.radius,
    pdq_mode: Annotated[str, typer.Option("--pdq-mode", help="PDQ pixel pipeline: fast or exact.")] = PdqOptions.mode,
    pdq_dihedral: Annotated[
        bool, typer.Option("--pdq-dihedral/--no-pdq-dihedral", help="Also query the 8 rotations/flips.")
    ] = True,
    pdq_unletterbox: Annotated[
        bool, typer.Option("--pdq-unletterbox/--no-pdq-unletterbox", help="Also query with uniform borders trimmed.")
    ] = True,
    pdq_upscale: Annotated[
        bool,
        typer.Option(
            "--pdq-upscale/--no-pdq-upscale", help="Also query pictures of up to 512 px as if enlarged to 512x512."
        ),
    ] = True,
    pdq_robust: Annotated[
        bool,
        typer.Option(
            "--pdq-robust/--no-pdq-robust",
            help="Also query re-padded frames (slightly cropped copies) and flips of the 512-px canvas.",
        ),
    ] = False,
    duplicate_action: Annotated[
        str, typer.Option("--duplicate-action", help="Action for copies found by the 'duplicate' expander.")
    ] = "review",
    duplicate_pdq: Annotated[
        bool,
        typer.Option("--duplicate-pdq/--no-duplicate-pdq", help="'duplicate' expander: also copies by PDQ radius."),
    ] = True,
) -> None:
    """Match a dataset against banks; write findings.parquet and summary.json to --out.

    Exit status: 0 every shard read to its end; 1 the run finished but some shards failed (named in the summary,
    their rows counted as errored; the other shards' results are complete); 2 refused before any work.
    """
    settings = _settings_from(ctx, policy)
    if neighbors:
        settings["expanders"] = list(dict.fromkeys([*settings.get("expanders", ()), "neighbor"]))
    for spec in action or ():
        signal, sep, chosen = spec.partition("=")
        if not sep:
            raise SafesetError(f"--action {spec!r}: expected SIGNAL=ACTION, e.g. bank:optout=exclude")
        settings.setdefault("actions", {})[signal.strip()] = chosen.strip()
    if not settings.get("bank_names"):
        names = [info.name for info in BankStore(banks).list()]
        if not names:
            raise SafesetError(f"no banks in {banks}; add one with `safeset bank add`")
        settings["bank_names"] = names

    from safeset.scan.config import config_from_dict
    from safeset.scan.driver import run_scan

    config = config_from_dict(
        settings, where=str(policy) if policy else "options", dataset=config_dataset(dataset), banks_dir=str(banks)
    )
    seeds = None
    if seeds_from is not None:
        from safeset.cases.seeds import case_seed_findings

        seeds = case_seed_findings(seeds_from)
        console.print(
            f"{seeds.num_rows} occurrences of confirmed cases from {seeds_from} seed this scan", highlight=False
        )
    started = time.perf_counter()
    with progress_bar() as progress:
        task = progress.add_task("scanning shards", total=None)
        rows = [0]

        def on_start(total: int, done: int) -> None:
            progress.update(task, total=total, completed=done)

        def on_shard(result: Any) -> None:
            rows[0] += result.rows_in
            elapsed = max(time.perf_counter() - started, 1e-9)
            progress.update(task, advance=1, description=f"scanning shards ({rows[0] / elapsed:,.0f} rows/s)")
            if result.error:
                progress.console.print(f"[yellow]shard failed:[/] {result.error}", highlight=False)

        try:
            outcome = run_scan(
                config,
                run_dir,
                processes=processes,
                resume=resume,
                on_start=on_start,
                on_shard=on_shard,
                executor=executor_for(executor, processes, ray_address),
                seeds=seeds,
                on_pass=lambda name, items: progress.reset(
                    task, total=items, completed=0, description=f"expansion: {name}"
                ),
                on_item=lambda: progress.advance(task),
            )
        except KeyboardInterrupt:
            again = " ".join(shlex.quote(a) for a in sys.argv[1:])
            if "--resume" not in sys.argv:
                again += " --resume"
            console.print(
                f"[yellow]interrupted.[/] Finished shards are kept in {run_dir}; continue with:\n  safeset {again}",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(130) from None
    print_scan_summary(outcome.summary)
    out.print(f"findings: {run_dir / 'findings.parquet'}   summary: {run_dir / 'summary.json'}")
    failed = outcome.summary["shards_failed"]
    if failed:
        console.print(
            f"[yellow]{failed} of {outcome.summary['shards_total']} shards failed[/]; their rows are counted as "
            "errored (see summary.json); exit status 1",
            highlight=False,
        )
        raise typer.Exit(1)


def _settings_from(ctx: typer.Context, policy: Path | None) -> dict[str, Any]:
    """The policy file's settings (if any), overridden by every flag given on the command line. Flags left at
    their defaults are not taken: the typed configuration's own defaults apply, whatever the help shows."""
    settings: dict[str, Any] = {}
    if policy is not None:
        from safeset.scan.config import read_policy_file

        settings = read_policy_file(policy)
    for name, value in given_flags(ctx, FLAG_SETTINGS).items():
        setting = FLAG_SETTINGS[name]
        if isinstance(value, Path):
            value = str(value)
        section, _, key = setting.rpartition(".")
        target = settings
        if section:
            target = settings.setdefault(section, {})
            if not isinstance(target, dict):
                raise SafesetError(f"{policy}: {section} must be a table")
        target[key] = list(value) if isinstance(value, tuple | list) else value
    return settings


def print_scan_summary(summary: dict[str, Any]) -> None:
    """A table per shard for small runs; for hundreds of shards, one line for the run and the failed shards."""
    shards = summary["shards"]
    listed = shards if len(shards) <= SUMMARY_TABLE_MAX_SHARDS else [s for s in shards if s["error"]]
    title = "scan summary" if listed is shards else f"scan summary: {len(shards)} shards, failed ones listed"
    table = Table("shard", "rows in", "flagged", "errored", "note", title=title)
    for shard in listed:
        table.add_row(
            shard["shard"],
            str(shard["rows_in"]),
            str(shard["rows_flagged"]),
            str(shard["rows_errored"]),
            (shard["error"] or "")[:80],
        )
    table.add_row(
        "[b]total[/]", str(summary["rows_in"]), str(summary["rows_flagged"]), str(summary["rows_errored"]), ""
    )
    out.print(table)
    actions = summary["rows_by_action"]
    if summary.get("dataset", {}).get("row_key"):
        out.print(f"rows keyed by: {summary['dataset']['row_key']}", highlight=False)
    out.print(
        f"rows: {summary['rows_in']} in, {actions.get('remove', 0)} to remove, {actions.get('exclude', 0)} opted out,"
        f" {actions.get('review', 0)} for review, {summary['rows_errored']} errored, {summary['rows_clean']} clean",
        highlight=False,
    )
    if summary["findings_by_bank"]:
        banks = Table("bank", "findings", title="findings by bank")
        for name, count in summary["findings_by_bank"].items():
            banks.add_row(name, str(count))
        out.print(banks)
