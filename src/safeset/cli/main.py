"""`safeset` command line: banks, scan, clean. Errors the user can act on print without a traceback."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from safeset import __version__
from safeset.cli.common import console, friendly, out, progress_bar
from safeset.policy.actions import ReleasePolicy

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
            help="Also withhold this many random rows per flagged row, spread over the whole dataset, so that a "
            "diff against the original does not list the flagged links.",
        ),
    ] = 0.0,
    cover_seed: Annotated[int, typer.Option("--cover-seed", help="Seed for the cover rows (keep it private).")] = 0,
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

    with progress_bar() as progress:
        task = progress.add_task("writing release", total=None)
        manifest = clean_dataset(
            dataset,
            run_dir,
            release,
            ReleasePolicy(
                drop_review=drop_review, keep_errored=keep_errored, cover_ratio=cover_ratio, cover_seed=cover_seed
            ),
            on_shard=lambda account: progress.advance(task),
            allow_failed_shards=allow_failed_shards,
        )
    table = Table("rows in", "kept", "removed", "errored", title="release")
    table.add_row(*(str(manifest[k]) for k in ("rows_in", "rows_kept", "rows_removed", "rows_errored")))
    out.print(table)
    out.print(f"release: {release}   (removed keys and accounting: {manifest['record']}, private)")
    if manifest["shards_failed"]:
        console.print(
            f"[yellow]{manifest['shards_failed']} shards failed in the scan and were withheld:[/] "
            + ", ".join(manifest["failed_shards"][:10]),
            highlight=False,
            soft_wrap=True,
        )
        if not allow_failed_shards:
            raise typer.Exit(1)


#: Modules that add their own commands: each defines `register(app: typer.Typer) -> None`.
COMMAND_MODULES: tuple[str, ...] = (
    "safeset.cli.bank",
    "safeset.cli.scan",
    "safeset.cli.hash",
    "safeset.cli.policy",
    "safeset.cli.cases",
    "safeset.cli.report",
    "safeset.cli.review",
)

for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def main() -> None:  # pragma: no cover - console entry
    app()
