"""`safeset bank add | list | remove`: import lists into the bank directory, with provenance."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from typer.core import TyperGroup

from safeset.banks.options import flag_name
from safeset.banks.store import KINDS, BankStore
from safeset.cli.common import friendly, out
from safeset.errors import SafesetError
from safeset.policy.actions import Action
from safeset.registry import load_plugins

load_plugins()  # every registered kind gets its `bank add KIND` command

bank_app = typer.Typer(no_args_is_help=True, help="Import and list banks: lists of known items to match.")


def register(app: typer.Typer) -> None:
    app.add_typer(bank_app, name="bank")


BanksOpt = Annotated[Path, typer.Option("--banks", help="Bank directory.")]


class _KindFirst(TyperGroup):
    """`bank add` takes its kind as a subcommand (`bank add term FILE ...`), so each kind's help lists only its own
    options; `--kind KIND` anywhere on the line is accepted as well, as scripts have always written it."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        rest = list(args)
        for i, arg in enumerate(rest):
            if arg == "--kind" and i + 1 < len(rest):
                kind = rest[i + 1]
                del rest[i : i + 2]
                return super().parse_args(ctx, [kind, *rest])
            if arg.startswith("--kind="):
                del rest[i]
                return super().parse_args(ctx, [arg.split("=", 1)[1], *rest])
        return super().parse_args(ctx, rest)


add_app = typer.Typer(
    cls=_KindFirst,
    no_args_is_help=True,
    help="Import a list into a bank (with provenance: source digest, import time, entry count). "
    "`safeset bank add KIND --help` shows that kind's options.",
)
bank_app.add_typer(add_app, name="add")

_COMMON = [
    inspect.Parameter(
        "file",
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        annotation=Annotated[Path, typer.Argument(help="List file: one entry per line, or a CSV with --column.")],
    ),
    inspect.Parameter("banks", inspect.Parameter.KEYWORD_ONLY, annotation=BanksOpt),
    inspect.Parameter(
        "name", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[str, typer.Option("--name", help="Bank name.")]
    ),
    inspect.Parameter(
        "column",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[str | None, typer.Option("--column", help="CSV column holding the entries.")],
    ),
    inspect.Parameter(
        "action",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            str | None, typer.Option("--action", help="remove, exclude or review (default depends on kind).")
        ],
    ),
    inspect.Parameter(
        "skip_invalid",
        inspect.Parameter.KEYWORD_ONLY,
        default=False,
        annotation=Annotated[bool, typer.Option("--skip-invalid", help="Skip malformed lines, counting them.")],
    ),
    inspect.Parameter(
        "replace",
        inspect.Parameter.KEYWORD_ONLY,
        default=False,
        annotation=Annotated[bool, typer.Option("--replace", help="Re-import over an existing bank.")],
    ),
]


def _flag_type(hint: Any) -> type:
    """The command-line type of an option field: its own for numbers and paths, text for the rest (parsed)."""
    inner = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return inner[0] if inner[0] in (int, float, Path) else str


def _add_command(kind_name: str, options_type: type | None) -> Any:
    """`bank add KIND`: the common options plus one flag per field of the kind's import options."""
    fields = dataclasses.fields(options_type) if options_type is not None else ()
    hints = typing.get_type_hints(options_type) if options_type is not None else {}
    extra = [
        inspect.Parameter(
            f.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[
                _flag_type(hints[f.name]) | None, typer.Option(flag_name(f.name), help=f.metadata.get("help", ""))
            ],
        )
        for f in fields
    ]

    def add(**values: Any) -> None:
        chosen = {f.name: values.pop(f.name) for f in fields}
        for f in fields:
            parse = f.metadata.get("parse")
            if parse is not None and isinstance(chosen[f.name], str):
                try:
                    chosen[f.name] = parse(chosen[f.name])
                except ValueError as exc:
                    raise SafesetError(str(exc)) from None
        _import(kind_name, chosen, **values)

    add.__signature__ = inspect.Signature([*_COMMON, *extra])  # type: ignore[attr-defined]
    add.__annotations__ = {p.name: p.annotation for p in (*_COMMON, *extra)}
    add.__name__ = f"add_{kind_name.replace('-', '_')}"
    return friendly(add)


def _import(
    kind: str,
    options: dict[str, Any],
    file: Path,
    banks: Path,
    name: str,
    column: str | None,
    action: str | None,
    skip_invalid: bool,
    replace: bool,
) -> None:
    if action is not None and action not in {a.value for a in Action}:
        raise SafesetError(f"unknown action {action!r}; choose remove, exclude or review")
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


for _kind in KINDS.values():
    add_app.command(_kind.name, help=_kind.description)(_add_command(_kind.name, _kind.import_options))


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


