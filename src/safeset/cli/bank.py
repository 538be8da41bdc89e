"""`safeset bank add | list | remove`: import lists into the bank directory, with provenance."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from safeset.banks.store import KINDS, BankStore
from safeset.cli.common import friendly, out
from safeset.errors import SafesetError
from safeset.policy.actions import Action
from safeset.registry import load_plugins
from safeset.signals.text import STEPS, parse_steps

load_plugins()  # so that --kind help lists every registered kind

bank_app = typer.Typer(no_args_is_help=True, help="Import and list banks: lists of known items to match.")


def register(app: typer.Typer) -> None:
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


