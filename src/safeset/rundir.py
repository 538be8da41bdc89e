"""The run directory's files: names, pins of the shards a run read, and reads that fail with one clear line.

Shared by the scan (which writes a run), expansion (which reads kept signals) and `clean` (which reads a finished
run), so that a run-dir file name is spelled in one place.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

import pyarrow as pa

from safeset.errors import InputError, SafesetError
from safeset.fsutil import file_pin, read_parquet
from safeset.io.base import DatasetFormat, ShardRef

SHARDS_FOLDER = "shards"


def shard_file_stem(shard_id: str) -> str:
    """The name of a shard's result files: its id percent-encoded, which is injective (`a/00000.tar` and
    `a__00000.tar` stay apart) and leaves no path separator."""
    return urllib.parse.quote(shard_id, safe="")


def pin_shard(dataset: DatasetFormat, shard: ShardRef) -> list[dict[str, Any]]:
    """Size and content digest of every file the shard is read from, keyed by path relative to the dataset."""
    pins = []
    for path in dataset.shard_files(shard):
        try:
            relative = path.relative_to(dataset.base_dir).as_posix()
        except ValueError:
            relative = str(path)
        try:
            pins.append({"file": relative, **file_pin(path)})
        except OSError as exc:
            raise InputError(f"cannot be read: {exc.strerror or exc}", path) from exc
    return pins


def shard_file(run_dir: Path, shard_id: str, suffix: str) -> Path:
    """One of a shard's result files: `suffix` is `.json` (the completion marker), `.findings.parquet`, ..."""
    return run_dir / SHARDS_FOLDER / f"{shard_file_stem(shard_id)}{suffix}"


def is_plain_file(path: Path) -> bool:
    """A regular file, not a symlink: a marker planted as a link to elsewhere does not mark a shard done."""
    return not path.is_symlink() and path.is_file()


def is_inside_dataset(folder: Path, dataset: Path) -> bool:
    """Whether an output folder would mix with the dataset: the dataset itself, inside it, or (for a one-file
    dataset) the folder holding it."""
    target, data = folder.resolve(), dataset.resolve()
    return target == data or data in target.parents or (data.is_file() and target == data.parent)


def check_run_dir(run_dir: Path, dataset: Path, resume: bool) -> None:
    """`--out` must be new, empty, or a safeset run to resume; never the dataset or inside it, where a resumed
    scan would read its own outputs as data."""
    target = run_dir.resolve()
    if is_inside_dataset(target, dataset):
        raise SafesetError(f"--out {run_dir} is inside the dataset {dataset}; choose a folder outside it")
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
