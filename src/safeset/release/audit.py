"""`audit-roadmap`: run the adversary on a release's withheld rows and keep its figures in the release record.

The release is found among `RUN_DIR/releases/*/` by its public `release.json` (the record whose public counts it
equals), since the published release deliberately names no record. The record's private `withheld.parquet` (written
by `clean --roadmap-bound`) holds which withheld rows are decoys and their observable features.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from safeset.errors import SafesetError
from safeset.fsutil import read_parquet, write_json
from safeset.manifest.adversary import audit_withheld
from safeset.manifest.release import WITHHELD_NAME
from safeset.release.clean import public_manifest
from safeset.rundir import RunDir

ROADMAP_NAME = "roadmap.json"


def find_record(run_dir: Path, release: Path) -> Path:
    """The private record of the release published at `release`."""
    public_path = release / "_safeset" / "release.json"
    try:
        public = json.loads(public_path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SafesetError(f"{public_path}: not a readable safeset release ({exc})") from None
    records = sorted(RunDir(run_dir).releases.glob("*/accounting.json"))
    for accounting in records:
        try:
            full = json.loads(accounting.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if json.loads(json.dumps(public_manifest(full), default=str)) == public:
            return accounting.parent
    raise SafesetError(f"no release record in {RunDir(run_dir).releases} matches {release}")


def audit_release(run_dir: Path, release: Path, folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """Train the adversary on the release's withheld rows; store and return its figures."""
    record = find_record(run_dir, release)
    path = record / WITHHELD_NAME
    if not path.is_file():
        raise SafesetError(
            f"{record} holds no {WITHHELD_NAME}: the release was made without --roadmap-bound, so there are no decoys "
            "to audit"
        )
    try:
        withheld = read_parquet(path)
    except (OSError, ValueError) as exc:
        raise SafesetError(f"{path}: unreadable ({exc})") from None
    is_true = ~np.asarray(withheld["decoy"].to_numpy(zero_copy_only=False), dtype=bool)
    features = withheld.drop_columns(["shard", "row", "decoy"])
    audit = audit_withheld(features, is_true, folds=folds, seed=seed)
    accounting = json.loads((record / "accounting.json").read_text("utf-8"))
    figures = {**audit.as_dict(), "roadmap": accounting.get("roadmap"), "features": features.column_names}
    write_json(record / ROADMAP_NAME, figures, private=True)
    figures["record"] = str(record)
    return figures
