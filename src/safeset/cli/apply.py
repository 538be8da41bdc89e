"""`safeset apply`, `safeset audit-roadmap` and `safeset manifest keygen`: removal manifests for copy-holders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from safeset.cli.common import friendly, out
from safeset.errors import SafesetError
from safeset.fsutil import write_json
from safeset.io.columns import ColumnOptions, parse_hash_col

manifest_app = typer.Typer(no_args_is_help=True, help="Removal manifests: signing keys.")


def register(app: typer.Typer) -> None:
    app.command("apply")(friendly(apply))
    app.command("audit-roadmap")(friendly(audit_roadmap))
    app.add_typer(manifest_app, name="manifest")


@manifest_app.command("keygen")
@friendly
def keygen(
    private_key: Annotated[Path, typer.Argument(help="New file for the private key (PEM, 0600; keep it secret).")],
    public_key: Annotated[Path, typer.Argument(help="New file for the public key, to publish with the manifest.")],
) -> None:
    """Make an ed25519 key pair for signing manifests (`clean --sign-key`, `apply --verify-key`)."""
    from safeset.manifest.format import generate_keypair

    generate_keypair(private_key, public_key)
    out.print(f"private key: {private_key} (0600)   public key: {public_key}")


def apply(
    manifest_dir: Annotated[Path, typer.Argument(help="The removal manifest folder (manifest.json + .parquet).")],
    copy: Annotated[Path, typer.Argument(help="Your copy of the dataset (parquet, webdataset, LAION layout).")],
    cleaned: Annotated[Path, typer.Option("--out", help="New folder for the cleaned copy (same format).")],
    input_format: Annotated[str, typer.Option("--input-format", help="auto, parquet, webdataset, ...")] = "auto",
    key_col: Annotated[
        str | None,
        typer.Option("--key-col", help="Row key column; naming it also vouches that its keys match the original's."),
    ] = None,
    url_col: Annotated[str | None, typer.Option("--url-col", help="URL column.")] = None,
    caption_col: Annotated[str | None, typer.Option("--caption-col", help="Caption column.")] = None,
    hash_col: Annotated[
        list[str] | None, typer.Option("--hash-col", help="NAME:KIND image-hash column (repeatable).")
    ] = None,
    verify_key: Annotated[
        Path | None, typer.Option("--verify-key", help="Public key (PEM): refuse a manifest not signed by it.")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Where to write the counts (JSON, 0600); default beside --out.")
    ] = None,
    hf: Annotated[bool, typer.Option("--hf", help="Also write a Hugging Face dataset card (parquet copies).")] = False,
) -> None:
    """Remove a manifest's rows from a copy of the dataset, joining on whatever keys the copy kept.

    Exit status: 0 written; 2 refused (bad or altered manifest, bad signature, unreadable copy), nothing written.
    """
    from safeset.manifest import apply_to_copy, read_manifest
    from safeset.manifest.hf import write_hf_card

    if hf and (copy.suffix == ".tar" or (copy.is_dir() and any(copy.rglob("*.tar")))):
        raise SafesetError("--hf writes a dataset card for parquet copies; this one holds webdataset shards")
    manifest = read_manifest(manifest_dir, verify_key)
    columns = ColumnOptions(
        url_col=url_col,
        caption_col=caption_col,
        key_col=key_col,
        hash_cols=tuple(parse_hash_col(spec) for spec in hash_col or ()),
    )
    result = apply_to_copy(manifest, copy, cleaned, input_format, columns)
    counts = result.as_dict()
    if hf:
        write_hf_card(cleaned, {k: counts[k] for k in ("rows_in", "rows_kept", "rows_removed")}, "cleaned copy")
    report_path = report or cleaned.with_name(cleaned.name + ".apply-report.json")
    write_json(report_path, counts, private=True)
    table = Table("rows in", "kept", "removed", "manifest entries", "not in this copy", title="apply")
    table.add_row(
        *(str(counts[k]) for k in ("rows_in", "rows_kept", "rows_removed", "manifest_entries")),
        str(counts["manifest_entries_not_in_copy"]),
    )
    out.print(table)
    by_key = ", ".join(f"{k} {v}" for k, v in result.removed_by_key.items()) or "none"
    out.print(f"removed by key: {by_key}; keys this copy has: {', '.join(result.keys_available) or 'none'}")
    signed = "signature verified" if result.manifest_signed else "signature not checked (no --verify-key)"
    out.print(f"cleaned copy: {cleaned}   report: {report_path}   {signed}")


def audit_roadmap(
    run_dir: Annotated[Path, typer.Argument(help="The scan's run directory.")],
    release: Annotated[Path, typer.Argument(help="The release made from it with --roadmap-bound.")],
    folds: Annotated[int, typer.Option("--folds", min=2, help="Cross-validation folds.")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the folds.")] = 0,
) -> None:
    """Train a classifier to tell true removals from decoys; print AUC and top-1 % precision; record them."""
    from safeset.release.audit import audit_release

    figures = audit_release(run_dir, release, folds=folds, seed=seed)
    bound = (figures.get("roadmap") or {}).get("achieved_bound")
    if bound is None:
        raise SafesetError("the release record holds no roadmap figures")
    table = Table("withheld", "true removals", "AUC", "top 1 % precision", "chance (p)", title="roadmap adversary")
    table.add_row(
        str(figures["withheld"]),
        str(figures["true_removals"]),
        f"{figures['auc']:.3f}",
        f"{figures['top_precision']:.3f}",
        f"{figures['base_rate']:.4f}",
    )
    out.print(table)
    out.print(f"stored in {figures['record']}/roadmap.json (private)")
