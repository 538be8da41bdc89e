"""`safeset policy show RUN_DIR`: the resolved policy a run was made with, as a policy file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from safeset.cli.common import friendly
from safeset.errors import SafesetError
from safeset.rundir import RunDir, load_json

policy_app = typer.Typer(no_args_is_help=True, help="Policy files: what a scan runs and what a release leaves out.")


def register(app: typer.Typer) -> None:
    app.add_typer(policy_app, name="policy")


@policy_app.command("show")
@friendly
def show(run_dir: Annotated[Path, typer.Argument(help="A scan's run directory.")]) -> None:
    """Print the policy a run resolved (file and flags together), as TOML that `scan --policy` accepts."""
    from safeset.scan.config import config_from_record, policy_toml

    files = RunDir(run_dir)
    if not files.run_json.is_file():
        raise SafesetError(f"{run_dir} holds no scan (run.json missing)")
    recorded = load_json(files.run_json, "run record").get("config")
    if not isinstance(recorded, dict):
        raise SafesetError(f"{files.run_json}: no configuration recorded (a run of an older safeset?)")
    config = config_from_record(recorded, where=str(files.run_json))
    sys.stdout.write(policy_toml(config))  # not through rich: it would wrap long lines, breaking the TOML
    sys.stdout.flush()
