"""Small filesystem helpers: atomic writes and private (0600) files for sensitive outputs."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
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

    A killed process therefore leaves either the old file or the complete new one, never half a file. The
    temporary file is created here with O_EXCL|O_NOFOLLOW under an unpredictable name, so a file or symlink
    planted in the directory can neither receive the data nor redirect it elsewhere; the rename replaces a
    symlink at `final` itself rather than writing through it.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    mode = PRIVATE_FILE_MODE if private else 0o644
    # Created before any byte is written, so no window exists where a private file is world-readable.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)
    os.close(fd)
    try:
        yield tmp
        if tmp.is_symlink() or not tmp.is_file():
            raise OSError(errno.EEXIST, "temporary file was replaced while being written", str(tmp))
        if private:
            os.chmod(tmp, PRIVATE_FILE_MODE)
        os.replace(tmp, final)
    finally:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()


def write_json(path: Path, obj: Any, private: bool = False) -> None:
    with atomic_path(path, private=private) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_parquet(path: Path, table: pa.Table, private: bool = False) -> None:
    with atomic_path(path, private=private) as tmp:
        pq.write_table(table, tmp)


def file_pin(path: Path, chunk: int = 1 << 22) -> dict[str, object]:
    """Size and xxh3-128 content digest of a file: what a scan pins of each shard file so that `clean` can
    refuse a shard that changed since (xxh3 runs at memory speed, far faster than the scan itself).

    `path` may also be a remote `UPath` (io/location.py): its bytes are streamed through the same digest."""
    import xxhash

    digest = xxhash.xxh3_128()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
            size += len(block)
    return {"size": size, "xxh3_128": digest.hexdigest()}


def disk_full(exc: BaseException) -> OSError | None:
    """The ENOSPC / EDQUOT error behind an exception (however wrapped), so it is reported as a full disk and not
    blamed on the input."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return current
        current = current.__cause__ or current.__context__
    return None


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
