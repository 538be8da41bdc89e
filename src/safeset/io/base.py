"""What every dataset format provides: its shards, streamed row batches, and a cleaned copy of a shard."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from safeset.io.batch import RowBatch
from safeset.io.columns import ColumnOptions
from safeset.io.location import DatasetLocation, is_local, list_files, relative_id

#: Generous: web images are far smaller, and a 100-megapixel PNG (the default pixel limit) fits.
DEFAULT_MAX_MEMBER_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class ShardRef:
    """One shard: `id` is its path relative to the dataset root (stable across runs, used in findings); `path` is
    a local `Path` or, on a remote filesystem, a `UPath` (see io/location.py)."""

    id: str
    path: Any


@dataclass
class ShardWriteResult:
    rows_written: int
    files: list[str]
    # Rows the writer left out although they were to be kept, because the scan never read their bytes (kept
    # errored rows whose image was over the size limit, say): `clean` counts them as errored.
    rows_unchecked: int = 0


class DatasetFormat(ABC):
    """A dataset as it is stored on disk (or on a remote filesystem), read shard by shard in bounded memory.

    `root` is a folder or a one-file dataset; `files`, when given (globs, several paths), are the files chosen
    under `root`, and only they are read.
    """

    name: ClassVar[str]

    def __init__(self, root: Any, columns: ColumnOptions | None = None, files: tuple[Any, ...] | None = None) -> None:
        self.root = root
        self.files = files
        # Set by `open_dataset`: the resolved location (which local folders an output must stay out of).
        self.location: DatasetLocation | None = None
        self.columns = columns or ColumnOptions()
        # Set by the scan: caption columns are long, and skipping them when no matcher reads captions
        # takes a large share off a metadata-only scan's parquet reading.
        self.read_captions = True
        # Set by the scan: a stored member (tar member, image file) larger than this is an errored row, refused
        # before any of it is read, so one crafted file cannot exhaust memory.
        self.max_member_bytes = DEFAULT_MAX_MEMBER_BYTES

    @abstractmethod
    def shards(self) -> list[ShardRef]:
        """All shards, in a stable order."""

    @abstractmethod
    def check(self) -> dict[str, object]:
        """Inspect the first readable shard before any work; raise ColumnError for missing columns.

        Returns what the dataset offers (`has_urls`, `has_images`, `metadata_hashes`, ...), so a scan
        can refuse up front when the banks asked for cannot be matched against it.
        """

    @abstractmethod
    def iter_batches(self, shard: ShardRef, batch_rows: int, read_images: bool) -> Iterator[RowBatch]:
        """Stream the shard's rows. A shard-level problem raises InputError naming the file."""

    def shard_files(self, shard: ShardRef) -> list[Path]:
        """The files that make up the shard; the scan pins their size and content digest, and `clean`
        refuses a shard whose files changed since."""
        return [shard.path]

    def known_row_count(self, shard: ShardRef) -> int | None:
        """Rows in the shard if cheaply known (to account for rows of a shard that fails midway)."""
        return None

    @abstractmethod
    def write_shard(
        self, shard: ShardRef, drop_rows: np.ndarray, out_root: Path, members: pa.Table | None = None
    ) -> ShardWriteResult:
        """Write the shard to `out_root` (same relative path) without the rows in `drop_rows`.

        Dropped rows' image bytes are never written. `members` is what the scan read of this shard
        (MEMBERS_SCHEMA, formats that store samples as several files): only members listed there as checked
        are copied, each verified against its digest as it is written; a member the scan did not see raises
        InputError (the shard changed since the scan). Everything else passes through unchanged.
        """

    @property
    def local(self) -> bool:
        return is_local(self.root)

    def files_with_suffix(self, suffix: str) -> list[Any]:
        """The dataset's files ending in `suffix`, sorted: the chosen ones, the one file given, or all under root."""
        if self.files is not None:
            return [f for f in self.files if f.name.endswith(suffix)]
        if self.root.is_file():
            return [self.root]
        return list_files(self.root, suffix)

    def shard_refs(self, suffix: str) -> list[ShardRef]:
        """One shard per file ending in `suffix`, its id the path relative to the root (the name, for one file)."""
        if self.files is None and self.root.is_file():
            return [ShardRef(self.root.name, self.root)]
        return [ShardRef(relative_id(p, self.root), p) for p in self.files_with_suffix(suffix)]

    @property
    def base_dir(self) -> Any:
        """The folder shard files are named relative to (the dataset, or the folder of a one-file dataset)."""
        if self.files is not None:
            return self.root
        return self.root if self.root.is_dir() else self.root.parent

    def relative_name(self, path: Any) -> str:
        """A dataset file's name relative to `base_dir` ('/'-separated): in pins and in a release."""
        return relative_id(path, self.base_dir)

    def relative_out(self, shard: ShardRef, out_root: Path, path: Any) -> Path:
        """Where a dataset file goes in a release: always on local disk, at the same relative path."""
        target = out_root / self.relative_name(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target


def row_keys(shard: str, rows: np.ndarray) -> list[str]:
    """Fallback keys `shard:row` for formats whose rows carry no key of their own."""
    return [f"{shard}:{int(r)}" for r in rows]
