"""Small filesystem helpers: atomic writes and private (0600) files for sensitive outputs."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def make_private_dir(path: Path) -> Path:
    """Create a directory readable only by its owner (run dirs and bank dirs hold sensitive lists)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_DIR_MODE)
    return path


@contextlib.contextmanager
def atomic_path(final: Path, private: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it into place only if the block succeeds.

    A killed process therefore leaves either the old file or the complete new one, never half a file.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    if private:
        # Create the file 0600 before any byte is written, so no window exists where it is world-readable.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
        os.close(fd)
    try:
        yield tmp
        if private:
            os.chmod(tmp, PRIVATE_FILE_MODE)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: Path, obj: Any, private: bool = False) -> None:
    with atomic_path(path, private=private) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_parquet(path: Path, table: pa.Table, private: bool = False) -> None:
    with atomic_path(path, private=private) as tmp:
        pq.write_table(table, tmp)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_parquet(path: Path, columns: list[str] | None = None) -> pa.Table:
    """Read one parquet file. Unlike `pq.read_table`, this does not import pyarrow.dataset (and pandas with
    it), which costs a third of a second on every start."""
    return pq.ParquetFile(path).read(columns=columns)
