"""`safeset` command line: the app, its global options, and the command modules that register themselves.
Errors the user can act on print as one line without a traceback (`cli/common.py`)."""

from __future__ import annotations

import importlib
from typing import Annotated

import typer

from safeset import __version__
from safeset.cli.common import out

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


def _version(value: bool) -> None:
    if value:
        out.print(f"safeset {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Audit and clean image-text datasets against banks of known material, without viewing images."""

#: Modules that add their own commands: each defines `register(app: typer.Typer) -> None`.
COMMAND_MODULES: tuple[str, ...] = (
    "safeset.cli.bank",
    "safeset.cli.scan",
    "safeset.cli.clean",
    "safeset.cli.hash",
    "safeset.cli.policy",
    "safeset.cli.cases",
    "safeset.cli.report",
    "safeset.cli.review",
    "safeset.cli.apply",
)

for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def main() -> None:  # pragma: no cover - console entry
    app()
