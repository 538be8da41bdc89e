"""The run directory: every file name in it, pins of the shards a run read, and reads that fail with one line.

Shared by the scan (which writes a run), expansion (which reads kept signals), `clean` (which reads a finished
run) and everything reading results afterwards, so that a run-dir file name is spelled in one place: `RunDir`.

RUN_DIR layout
  run.json                  the run's configuration (dataset, format, banks and their digests, resolved policy)
  shards/<id>.json          one shard's counts; written last, so its presence means the shard is done
  shards/<id>.findings.parquet, shards/<id>.errors.parquet
  shards/<id>.members.parquet   the stored members the scan read and checked (webdataset), for `clean`
  shards/<id>.signals.parquet   per-row signals kept for the expansion pass (image digests, PDQ)
  expansions.parquet        the expansion pass's findings
  findings.parquet          every finding: key, shard, row, detector, bank, evidence, action, domain  (0600)
  errors.parquet            every row that could not be checked: key, shard, row, reason       (0600)
  summary.json              rows in / flagged / errored, per shard and in total, each shard's pinned files
  releases/<id>/            one private record per `clean` (removed keys, accounting), never overwritten

<id> is the shard's path relative to the dataset, percent-encoded so that distinct shards never share a file.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from safeset.errors import InputError, SafesetError
from safeset.fsutil import file_pin, read_parquet
from safeset.io.base import DatasetFormat, ShardRef
from safeset.io.location import DatasetLocation, is_local

SHARDS_FOLDER = "shards"
RELEASES_FOLDER = "releases"


@dataclass(frozen=True)
class RunDir:
    """Where a run keeps each of its files."""

    path: Path

    @property
    def run_json(self) -> Path:
        return self.path / "run.json"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def findings(self) -> Path:
        return self.path / "findings.parquet"

    @property
    def errors(self) -> Path:
        return self.path / "errors.parquet"

    @property
    def expansions(self) -> Path:
        return self.path / "expansions.parquet"

    @property
    def shards(self) -> Path:
        return self.path / SHARDS_FOLDER

    @property
    def releases(self) -> Path:
        return self.path / RELEASES_FOLDER

    def release_record(self, release_id: str) -> Path:
        return self.releases / release_id

    def shard_file(self, shard_id: str, suffix: str) -> Path:
        """One of a shard's result files: `suffix` is `.json` (the completion marker), `.findings.parquet`, ..."""
        return self.shards / f"{shard_file_stem(shard_id)}{suffix}"

    def marker(self, shard_id: str) -> Path:
        return self.shard_file(shard_id, ".json")

    def shard_done(self, shard_id: str) -> bool:
        return is_plain_file(self.marker(shard_id))


def shard_file_stem(shard_id: str) -> str:
    """The name of a shard's result files: its id percent-encoded, which is injective (`a/00000.tar` and
    `a__00000.tar` stay apart) and leaves no path separator."""
    return urllib.parse.quote(shard_id, safe="")


def pin_shard(dataset: DatasetFormat, shard: ShardRef) -> list[dict[str, Any]]:
    """Size and content digest of every file the shard is read from, keyed by path relative to the dataset
    (remote files are streamed through the digest the same way)."""
    pins = []
    for path in dataset.shard_files(shard):
        try:
            relative = dataset.relative_name(path)
        except ValueError:
            relative = str(path)
        try:
            pins.append({"file": relative, **file_pin(path)})
        except OSError as exc:
            raise InputError(f"cannot be read: {exc.strerror or exc}", path) from exc
        except Exception as exc:
            if is_local(path):
                raise
            # A remote backend's own error (botocore's, say): the shard cannot be read, named in one line.
            raise InputError(f"cannot be read: {exc or type(exc).__name__}", path) from exc
    return pins


def shard_file(run_dir: Path, shard_id: str, suffix: str) -> Path:
    """`RunDir(run_dir).shard_file(shard_id, suffix)`."""
    return RunDir(run_dir).shard_file(shard_id, suffix)


def is_plain_file(path: Path) -> bool:
    """A regular file, not a symlink: a marker planted as a link to elsewhere does not mark a shard done."""
    return not path.is_symlink() and path.is_file()


def is_inside_dataset(folder: Path, dataset: Path | DatasetLocation) -> bool:
    """Whether an output folder would mix with the dataset: the dataset itself, inside it, or (for a one-file
    dataset) the folder holding it. For a location of several entries or globs, any local folder it covers; a
    remote dataset never holds a local folder."""
    if isinstance(dataset, DatasetLocation):
        return any(is_inside_dataset(folder, base) for base in dataset.bases if is_local(base))
    target, data = folder.resolve(), dataset.resolve()
    return target == data or data in target.parents or (data.is_file() and target == data.parent)


def check_run_dir(run_dir: Path, dataset: Path | DatasetLocation, resume: bool) -> None:
    """`--out` must be new, empty, or a safeset run to resume; never the dataset or inside it, where a resumed
    scan would read its own outputs as data."""
    target = run_dir.resolve()
    if is_inside_dataset(target, dataset):
        where = dataset.describe() if isinstance(dataset, DatasetLocation) else dataset
        raise SafesetError(f"--out {run_dir} is inside the dataset {where}; choose a folder outside it")
    if target.exists() and not target.is_dir():
        raise SafesetError(f"--out {run_dir} exists and is not a folder")
    if not target.is_dir():
        return
    try:
        entries = {p.name for p in target.iterdir()}
    except OSError as exc:
        raise SafesetError(f"--out {run_dir} cannot be read: {exc.strerror or exc}") from None
    if not entries:
        return
    if "run.json" not in entries:
        raise SafesetError(f"--out {run_dir} is not empty and holds no safeset run; choose a new or empty folder")
    if not resume:
        raise SafesetError(f"{run_dir} already holds a run; pass --resume to continue it, or choose another --out")


def load_json(path: Path, what: str) -> dict[str, Any]:
    """A run-dir JSON file, or one clear line saying which file is damaged."""
    try:
        value = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SafesetError(f"{path}: the {what} is unreadable or damaged ({exc}); start a new run") from None
    if not isinstance(value, dict):
        raise SafesetError(f"{path}: the {what} is damaged (not a JSON object); start a new run")
    return value


def load_parquet(path: Path, schema: pa.Schema) -> pa.Table:
    """A run-dir table in its schema, or one clear line naming the damaged file."""
    try:
        return read_parquet(path).cast(schema)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise SafesetError(f"{path}: unreadable or damaged run file ({exc}); start a new run") from None
