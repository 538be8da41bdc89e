"""`safeset` command line: banks, scan, clean. Errors the user can act on print without a traceback."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from safeset.banks.store import KINDS, BankStore
from safeset.cli.common import console, friendly, out, progress_bar
from safeset.errors import SafesetError
from safeset.io.base import DEFAULT_MAX_MEMBER_BYTES
from safeset.io.columns import ColumnOptions, parse_hash_col
from safeset.policy.actions import Action, ReleasePolicy
from safeset.registry import load_plugins
from safeset.signals.text import STEPS, parse_steps

load_plugins()  # so that --kind help lists every registered kind

EXIT_CODES_HELP = (
    "Exit status: 0 every shard was read to its end; 1 the run finished but some shards failed or were read "
    "incompletely (results for the rest are complete; failed shards' rows are counted as errored), or the disk "
    "filled up; 2 refused before any work (usage, missing column, bad bank, changed dataset)."
)

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Audit and clean image-text datasets against banks of known material, without viewing images. "
    + EXIT_CODES_HELP,
)
bank_app = typer.Typer(no_args_is_help=True, help="Import and list banks: lists of known items to match.")
app.add_typer(bank_app, name="bank")

BanksOpt = Annotated[Path, typer.Option("--banks", help="Bank directory.")]


@bank_app.command("add")
@friendly
def bank_add(
    file: Annotated[Path, typer.Argument(help="List file: one entry per line, or a CSV with --column.")],
    banks: BanksOpt,
    name: Annotated[str, typer.Option("--name", help="Bank name.")],
    kind: Annotated[str, typer.Option("--kind", help=f"One of: {', '.join(KINDS)}.")],
    column: Annotated[str | None, typer.Option("--column", help="CSV column holding the entries.")] = None,
    action: Annotated[
        str | None, typer.Option("--action", help="remove, exclude or review (default depends on kind).")
    ] = None,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Skip malformed lines, counting them.")] = False,
    replace: Annotated[bool, typer.Option("--replace", help="Re-import over an existing bank.")] = False,
    match: Annotated[
        str | None, typer.Option("--match", help="term banks: 'word' (whole words, default) or 'substring'.")
    ] = None,
    normalize: Annotated[
        str | None,
        typer.Option(
            "--normalize",
            help=f"term banks: 'all' (default), 'none', or a comma list of {','.join(STEPS)}.",
        ),
    ] = None,
    near: Annotated[
        Path | None,
        typer.Option("--near", help="term banks: flag only when a term of this list is within --within tokens."),
    ] = None,
    within: Annotated[
        int | None, typer.Option("--within", help="term banks: tokens allowed between the two terms.")
    ] = None,
    min_score: Annotated[
        float | None, typer.Option("--min-score", help="term banks: flag when matched terms' weights add up to this.")
    ] = None,
    url_forms: Annotated[
        str | None,
        typer.Option(
            "--url-forms", help="url-md5/sha1/sha256 banks: URL forms to hash, comma list (default te,canonical)."
        ),
    ] = None,
    min_quality: Annotated[
        int | None,
        typer.Option(
            "--min-quality", min=0, max=100, help="pdq banks: drop hashes whose stated quality is below this (50)."
        ),
    ] = None,
) -> None:
    """Import a list into a bank (with provenance: source digest, import time, entry count)."""
    if action is not None and action not in {a.value for a in Action}:
        raise SafesetError(f"unknown action {action!r}; choose remove, exclude or review")
    try:
        steps = parse_steps(normalize) if normalize is not None else None
    except ValueError as exc:
        raise SafesetError(str(exc)) from None
    options = {
        "match": match,
        "normalize": steps,
        "near": near,
        "within": within,
        "min_score": min_score,
        "url_forms": [f.strip() for f in url_forms.split(",") if f.strip()] if url_forms is not None else None,
        "min_quality": min_quality,
    }
    info = BankStore(banks).add(
        name, kind, file, column=column, action=action, skip_invalid=skip_invalid, replace=replace, options=options
    )
    skipped = f", {info.skipped_invalid} invalid lines skipped" if info.skipped_invalid else ""
    out.print(f"bank {info.name}: {info.entries} {info.kind} entries ({info.duplicates} duplicates{skipped})")
    header = info.details.get("header")
    if header:
        out.print(f"  header line {header['line']} taken: {header['text']}", highlight=False)
    details = info.details
    if "dropped_low_quality" in details:
        out.print(
            f"  {details['dropped_low_quality']} hashes below quality {details['min_quality']} dropped,"
            f" {details['quality_unknown']} without a quality kept,"
            f" {details['not_128_bits']} without exactly 128 bits set (kept; a reference PDQ hash has 128)",
            highlight=False,
        )


@bank_app.command("list")
@friendly
def bank_list(banks: BanksOpt) -> None:
    """List banks with their provenance."""
    table = Table("name", "kind", "action", "entries", "skipped", "imported", "source sha256")
    for info in BankStore(banks).list():
        table.add_row(
            info.name,
            info.kind,
            info.action,
            str(info.entries),
            str(info.skipped_invalid),
            info.imported_at,
            info.source_sha256[:16],
        )
    out.print(table)


@bank_app.command("remove")
@friendly
def bank_remove(banks: BanksOpt, name: Annotated[str, typer.Option("--name")]) -> None:
    """Delete a bank."""
    BankStore(banks).remove(name)
    out.print(f"bank {name} removed")


@app.command()
@friendly
def scan(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder or file.")],
    banks: BanksOpt,
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
    ] = 100_000_000,
    max_member_bytes: Annotated[
        int,
        typer.Option(
            "--max-member-bytes", min=1, help="Tar members and image files above this are errored, unread."
        ),
    ] = DEFAULT_MAX_MEMBER_BYTES,
    neighbors: Annotated[
        bool,
        typer.Option(
            "--neighbors", help="Second pass: rows whose embedding is within --neighbor-threshold of a match."
        ),
    ] = False,
    neighbor_threshold: Annotated[
        float, typer.Option("--neighbor-threshold", help="Cosine similarity to a seed (-1 with --neighbor-top-k).")
    ] = 0.85,
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
    ] = 31,
    pdq_mode: Annotated[str, typer.Option("--pdq-mode", help="PDQ pixel pipeline: fast or exact.")] = "fast",
    pdq_dihedral: Annotated[
        bool, typer.Option("--pdq-dihedral/--no-pdq-dihedral", help="Also query the 8 rotations/flips.")
    ] = True,
    pdq_unletterbox: Annotated[
        bool, typer.Option("--pdq-unletterbox/--no-pdq-unletterbox", help="Also query with uniform borders trimmed.")
    ] = True,
    duplicate_pdq: Annotated[
        bool,
        typer.Option("--duplicate-pdq/--no-duplicate-pdq", help="'duplicate' expander: also copies by PDQ radius."),
    ] = True,
) -> None:
    """Match a dataset against banks; write findings.parquet and summary.json to --out.

    Exit status: 0 every shard read to its end; 1 the run finished but some shards failed (named in the summary,
    their rows counted as errored; the other shards' results are complete); 2 refused before any work.
    """
    from safeset.signals.pdq import MODES

    if pdq_mode not in MODES:
        raise SafesetError(f"unknown --pdq-mode {pdq_mode!r}; choose {' or '.join(MODES)}")
    from safeset.scan import ScanConfig, run_scan

    for given in (neighbor_action, triage_action):
        if given not in {a.value for a in Action}:
            raise SafesetError(f"unknown action {given!r}; choose remove, exclude or review")
    options: dict[str, Any] = {}
    if neighbors or "neighbor" in (expand or ()):
        options.update(
            neighbor_threshold=neighbor_threshold,
            neighbor_hops=neighbor_hops,
            neighbor_max_hop_seeds=neighbor_max_hop_seeds,
            neighbor_action=neighbor_action,
            neighbor_backend=neighbor_backend,
            neighbor_memory_mb=neighbor_memory_mb,
        )
        if neighbor_top_k:
            options["neighbor_top_k"] = neighbor_top_k
        if neighbor_seed_detector:
            options["neighbor_seed_detectors"] = list(neighbor_seed_detector)
        if neighbor_seed_file:
            options["neighbor_seed_file"] = str(neighbor_seed_file)
    if embeddings:
        options["embeddings"] = str(embeddings)
    if embedding_col:
        options["embedding_col"] = embedding_col
    if score:
        options["scores"] = list(score)
    if model:
        options.update(model_file=str(model), model_threshold=model_threshold)
        if model_column is not None:
            options["model_column"] = model_column
    if concepts:
        options["concepts_file"] = str(concepts)
    if rule:
        options["rules"] = list(rule)
    if triage_action != "review":
        options["triage_action"] = triage_action
    expanders = tuple(dict.fromkeys([*(expand or ()), *(["neighbor"] if neighbors else [])]))

    store = BankStore(banks)
    names = tuple(bank) if bank else tuple(info.name for info in store.list())
    if not names:
        raise SafesetError(f"no banks in {banks}; add one with `safeset bank add`")
    config = ScanConfig(
        dataset=str(dataset),
        input_format=input_format,
        banks_dir=str(banks),
        bank_names=names,
        columns=ColumnOptions(
            url_col=url_col,
            caption_col=caption_col,
            key_col=key_col,
            hash_cols=tuple(parse_hash_col(spec) for spec in hash_col or ()),
        ),
        metadata_only=metadata_only,
        batch_rows=batch_rows,
        max_pixels=max_pixels,
        max_member_bytes=max_member_bytes,
        expanders=expanders,
        options={
            **options,
            **_non_default_options(
                pdq_radius=pdq_radius,
                pdq_mode=pdq_mode,
                pdq_dihedral=pdq_dihedral,
                pdq_unletterbox=pdq_unletterbox,
                duplicate_pdq=duplicate_pdq,
            ),
        },
    )
    with progress_bar() as progress:
        task = progress.add_task("scanning shards", total=None)

        def on_start(total: int, done: int) -> None:
            progress.update(task, total=total, completed=done)

        def on_shard(result: Any) -> None:
            progress.advance(task)
            if result.error:
                progress.console.print(f"[yellow]shard failed:[/] {result.error}", highlight=False)

        outcome = run_scan(
            config,
            run_dir,
            processes=processes,
            resume=resume,
            on_start=on_start,
            on_shard=on_shard,
            executor=_executor(executor, processes, ray_address),
        )
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


@app.command()
@friendly
def clean(
    dataset: Annotated[Path, typer.Argument(help="The dataset that was scanned.")],
    run_dir: Annotated[Path, typer.Argument(help="The scan's run directory.")],
    release: Annotated[Path, typer.Option("--out", help="New folder for the cleaned release.")],
    drop_review: Annotated[bool, typer.Option("--drop-review", help="Also drop rows flagged only for review.")] = False,
    keep_errored: Annotated[
        bool, typer.Option("--keep-errored", help="Keep rows that could not be checked (withheld by default).")
    ] = False,
    cover_ratio: Annotated[
        float,
        typer.Option(
            "--cover-ratio",
            min=0.0,
            help="Deprecated (uniform covers are easily told apart; use --roadmap-bound): withhold this many random "
            "rows per flagged row. Turns --roadmap-bound off.",
        ),
    ] = 0.0,
    cover_seed: Annotated[
        int, typer.Option("--cover-seed", help="Seed for the decoys or cover rows (keep it private).")
    ] = 0,
    roadmap_bound: Annotated[
        float,
        typer.Option(
            "--roadmap-bound",
            min=0.0,
            max=1.0,
            help="Withhold decoys matched to the removed rows (scores, domain, size, caption) so that at most this "
            "share of withheld rows are true removals: (1-p)/p decoys each. 0 turns decoys off.",
        ),
    ] = 0.01,
    manifest_dir: Annotated[
        Path | None,
        typer.Option("--manifest", help="New folder for the removal manifest copy-holders apply (`safeset apply`)."),
    ] = None,
    sign_key: Annotated[
        Path | None, typer.Option("--sign-key", help="Sign the manifest with this ed25519 private key (PEM).")
    ] = None,
    hf: Annotated[
        bool, typer.Option("--hf", help="Also write a Hugging Face dataset card (parquet datasets).")
    ] = False,
    allow_failed_shards: Annotated[
        bool,
        typer.Option(
            "--allow-failed-shards",
            help="Exit 0 although some shards failed in the scan (they are withheld either way; the release "
            "record lists them).",
        ),
    ] = False,
) -> None:
    """Write the release in the dataset's own format without flagged rows; check that every row is accounted for.

    The release is staged beside --out and published only when every shard passed its accounting and its files
    still match the digests the scan pinned. Exit status: 0 released; 1 released, but shards the scan could not
    read were withheld (0 with --allow-failed-shards); 2 refused, nothing released.
    """
    from safeset.release.clean import clean_dataset

    if cover_ratio > 0:
        console.print("[yellow]--cover-ratio is deprecated: uniform covers are easily told apart; decoys are off[/]")
        roadmap_bound = 0.0
    if sign_key is not None and manifest_dir is None:
        raise SafesetError("--sign-key signs the manifest: give --manifest too")
    if hf and (dataset.suffix == ".tar" or (dataset.is_dir() and any(dataset.rglob("*.tar")))):
        raise SafesetError("--hf writes a dataset card for parquet datasets; this one holds webdataset shards")
    with progress_bar() as progress:
        task = progress.add_task("writing release", total=None)
        manifest = clean_dataset(
            dataset,
            run_dir,
            release,
            ReleasePolicy(
                drop_review=drop_review,
                keep_errored=keep_errored,
                cover_ratio=cover_ratio,
                cover_seed=cover_seed,
                roadmap_bound=roadmap_bound,
            ),
            on_shard=lambda account: progress.advance(task),
            allow_failed_shards=allow_failed_shards,
            manifest_dir=manifest_dir,
            sign_key=sign_key,
        )
    if hf:
        from safeset.manifest.hf import write_hf_card

        write_hf_card(release, {k: manifest[k] for k in ("rows_in", "rows_kept", "rows_removed", "rows_errored")})
    table = Table("rows in", "kept", "removed", "errored", title="release")
    table.add_row(*(str(manifest[k]) for k in ("rows_in", "rows_kept", "rows_removed", "rows_errored")))
    out.print(table)
    out.print(f"release: {release}   (removed keys and accounting: {manifest['record']}, private)")
    if "roadmap" in manifest:
        roadmap = manifest["roadmap"]
        out.print(
            f"roadmap bound {roadmap['roadmap_bound']}: achieved {roadmap['achieved_bound']} "
            f"({roadmap['method']}); measure it with `safeset audit-roadmap {run_dir} {release}`"
        )
    if manifest.get("manifest"):
        out.print(f"removal manifest: {manifest['manifest']}")
    if manifest["shards_failed"]:
        console.print(
            f"[yellow]{manifest['shards_failed']} shards failed in the scan and were withheld:[/] "
            + ", ".join(manifest["failed_shards"][:10]),
            highlight=False,
            soft_wrap=True,
        )
        if not allow_failed_shards:
            raise typer.Exit(1)


@app.command("hash")
def hash_files(
    files: Annotated[list[Path], typer.Argument(help="Image files.")],
    mode: Annotated[str, typer.Option("--mode", help="fast or exact (the reference tool's pipeline).")] = "fast",
    dihedral: Annotated[
        bool, typer.Option("--dihedral", help="Add the 8 rotation/flip hashes (original, rotate90, ... flipminus1).")
    ] = False,
) -> None:
    """Print `path, md5, pdq (64 hex), quality` per file, tab-separated: the tool for building PDQ banks.

    The output imports as is with `safeset bank add --kind pdq` (hash and quality) or `--kind md5`.

    An unreadable file gets an error line on stderr naming it; the others are still hashed; exit status 1.
    """
    import hashlib

    from safeset.signals.pdq import MODES, hash_images

    if mode not in MODES:
        console.print(f"[bold red]error:[/] unknown --mode {mode!r}; choose {' or '.join(MODES)}", highlight=False)
        raise typer.Exit(2)
    failed = 0
    for path in files:
        try:
            blob = path.read_bytes()
        except OSError as exc:
            console.print(
                f"[bold red]error:[/] {path}: cannot read: {exc.strerror or exc}", highlight=False, soft_wrap=True
            )
            failed += 1
            continue
        result = hash_images([blob], mode, dihedral=dihedral)
        if not result.valid[0]:
            console.print(f"[bold red]error:[/] {path}: {result.errors[0]}", highlight=False, soft_wrap=True)
            failed += 1
            continue
        fields = [str(path), hashlib.md5(blob).hexdigest(), result.hex(0), str(int(result.quality[0]))]
        if dihedral and result.dihedral is not None:
            fields += [bytes(h).hex() for h in result.dihedral[0]]
        sys.stdout.write("\t".join(fields) + "\n")
    sys.stdout.flush()
    if failed:
        raise typer.Exit(1)


def _non_default_options(**chosen: Any) -> dict[str, Any]:
    """Detector options that differ from their defaults: a run started here and resumed through the Python
    API (or the reverse) with the same effective settings then has the same fingerprint."""
    from safeset.match.pdq import PDQ_OPTIONS

    defaults = {**PDQ_OPTIONS, "duplicate_pdq": True}
    return {name: value for name, value in chosen.items() if value != defaults[name]}


def _executor(name: str, processes: int, ray_address: str | None) -> Any:
    from safeset.exec.local import LocalExecutor
    from safeset.exec.ray import RayExecutor

    if name == "local":
        if ray_address:
            raise SafesetError("--ray-address goes with --executor ray")
        return LocalExecutor(processes)
    if name == "ray":
        return RayExecutor(address=ray_address, num_cpus=processes if processes > 1 else None)
    raise SafesetError(f"unknown executor {name!r}; choose local or ray")


def print_scan_summary(summary: dict[str, Any]) -> None:
    table = Table("shard", "rows in", "flagged", "errored", "note", title="scan summary")
    for shard in summary["shards"]:
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


#: Modules that add their own commands: each defines `register(app: typer.Typer) -> None`.
COMMAND_MODULES: tuple[str, ...] = ("safeset.cli.apply",)

for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def main() -> None:  # pragma: no cover - console entry
    app()
