"""`safeset report RUN_DIR [RELEASE_DIR] --out report.html`: the run as charts, in one private HTML file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from safeset.cli.common import console, friendly, out
from safeset.errors import SafesetError


def register(app: typer.Typer) -> None:
    @app.command("report")
    @friendly
    def report(
        run_dir: Annotated[Path, typer.Argument(help="A finished scan's run directory.")],
        release_dir: Annotated[
            Path | None, typer.Argument(help="A release written by `clean` (default: the run's latest).")
        ] = None,
        out_file: Annotated[Path, typer.Option("--out", help="HTML file to write (mode 0600).")] = Path("report.html"),
        cases: Annotated[
            str | None,
            typer.Option("--cases", help="Case store URL, to chart case states (sqlite:///… or postgresql://…)."),
        ] = None,
        top_domains: Annotated[int, typer.Option("--top-domains", help="Domains shown by name.", min=1)] = 15,
    ) -> None:
        """Write a self-contained HTML report (inline charts, no script, no network) of a run: findings by
        detector and bank, PDQ distances and scores, flagged share by domain, shards, release accounting."""
        from safeset.report import ReportOptions, write_report

        if not run_dir.is_dir():
            raise SafesetError(f"{run_dir}: not a run directory")
        if release_dir is not None and not release_dir.is_dir():
            raise SafesetError(f"{release_dir}: not a release directory")
        if out_file.is_dir():
            raise SafesetError(f"{out_file}: is a directory; --out names the HTML file to write")
        data = write_report(run_dir, out_file, release_dir, cases, ReportOptions(top_domains=top_domains))
        if data.cases_note:
            console.print(f"[yellow]note:[/] {data.cases_note}; case states left out", highlight=False)
        out.print(f"report: {out_file}", highlight=False)
