"""`safeset clean`: write the release in the dataset's own format; what leaves it comes from the run's policy file
(its `[release]` table), overridden by the flags given here."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from safeset.cli.common import console, executor_for, friendly, given_flags, out, progress_bar
from safeset.errors import SafesetError
from safeset.policy.actions import ReleasePolicy
from safeset.rundir import RunDir, load_json


def register(app: typer.Typer) -> None:
    app.command()(clean)


@friendly
def clean(
    ctx: typer.Context,
    dataset: Annotated[
        list[str], typer.Argument(help="The dataset that was scanned (as given to scan: paths, globs or URLs).")
    ],
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
    processes: Annotated[int, typer.Option("--processes", min=1, help="Shards written in parallel.")] = 1,
    executor: Annotated[
        str, typer.Option("--executor", help="local (this machine, --processes) or ray (a Ray cluster).")
    ] = "local",
    ray_address: Annotated[str | None, typer.Option("--ray-address", help="Ray cluster address.")] = None,
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

    if sign_key is not None and manifest_dir is None:
        raise SafesetError("--sign-key signs the manifest: give --manifest too")
    local = Path(dataset[0]) if len(dataset) == 1 and "://" not in dataset[0] else None
    if hf and local is None:
        raise SafesetError("--hf writes a dataset card beside one local parquet dataset's release")
    if hf and (local.suffix == ".tar" or (local.is_dir() and any(local.rglob("*.tar")))):
        raise SafesetError("--hf writes a dataset card for parquet datasets; this one holds webdataset shards")
    with progress_bar() as progress:
        task = progress.add_task("writing release", total=None)
        manifest = clean_dataset(
            dataset if len(dataset) > 1 else dataset[0],
            run_dir,
            release,
            _release_policy(ctx, run_dir),
            on_item=lambda: progress.advance(task),
            executor=executor_for(executor, processes, ray_address),
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


def _release_policy(ctx: typer.Context, run_dir: Path) -> ReleasePolicy:
    """The run's recorded release rules (its policy file's `[release]`, else the defaults), with every flag given
    on the command line laid over them."""
    recorded: dict[str, Any] = {}
    files = RunDir(run_dir)
    if files.run_json.is_file():
        release = (load_json(files.run_json, "run record").get("config") or {}).get("release")
        if isinstance(release, dict):
            recorded = {f.name: release[f.name] for f in fields(ReleasePolicy) if f.name in release}
    policy = replace(ReleasePolicy(), **recorded)
    given = given_flags(ctx, ("drop_review", "keep_errored", "cover_ratio", "cover_seed", "roadmap_bound"))
    if given.get("cover_ratio", policy.cover_ratio) > 0:
        console.print("[yellow]--cover-ratio is deprecated: uniform covers are easily told apart; decoys are off[/]")
        given["roadmap_bound"] = 0.0
    try:
        return replace(policy, **given)
    except (TypeError, ValueError) as exc:
        raise SafesetError(f"release policy: {exc}") from None
