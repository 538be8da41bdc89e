"""Embedding readers: one vector per dataset row, row-aligned with the metadata, streamed in bounded memory.

Three layouts carry them:
  * LAION's: `img_emb/img_emb_NNNN.npy` (float16, N × d) beside `metadata/metadata_NNNN.parquet`, row i of
    the array belonging to row i of the parquet part with the same number. Arrays are memory-mapped, and
    pages already streamed are handed back to the kernel, so resident memory stays bounded per block.
  * a list or fixed-size-list column inside the metadata parquet (`--embedding-col`);
  * a per-sample `.npy` member in webdataset shards (`KEY.npy`, or `KEY.img_emb.npy`).

Every source checks, before any work where it can (headers only), that each shard's vectors match the
metadata's row count and that all shards share one dimension; a mismatch is an InputError naming both files.
"""

from __future__ import annotations

import io
import mmap
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from safeset.errors import ColumnError, InputError, SafesetError
from safeset.io.base import DEFAULT_MAX_MEMBER_BYTES, DatasetFormat, ShardRef
from safeset.io.batch import EMBEDDING_DTYPES
from safeset.io.location import is_local, open_binary, parquet_source
from safeset.io.parquet import PARQUET_ERRORS

EMBEDDING_COLUMN_CANDIDATES = ("img_emb", "image_embedding", "embedding", "clip_embedding", "emb")
EMBEDDING_MEMBER_CANDIDATES = ("npy", "img_emb.npy", "emb.npy", "embedding.npy")
_FIRST_NUMBER = re.compile(r"\d+")
#: Rows read at a time from a remote `.npy` (which cannot be memory-mapped): bounds memory, not the row count.
REMOTE_BLOCK_ROWS = 16384


@dataclass
class VectorBlock:
    """Consecutive vectors of one shard: `rows` are metadata row positions, `valid` False where a row has none."""

    rows: np.ndarray  # int64
    vectors: np.ndarray  # float16 or float32, len(rows) × d
    valid: np.ndarray | None = None  # None: every row has a vector


class ShardVectors(ABC):
    """The vectors of one shard."""

    path: Path  # the file the vectors come from, for error messages
    dim: int
    count: int

    @abstractmethod
    def take(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectors of these rows (len(rows) × d) and a validity mask."""

    @abstractmethod
    def blocks(self, block_rows: int) -> Iterator[VectorBlock]:
        """Every row's vector, in row order, `block_rows` at a time."""


def shard_number(path: Path) -> int | None:
    """The first number in a file's name: pairs `metadata_0003.parquet`, `img_emb_0003.npy` and `00003.tar`."""
    match = _FIRST_NUMBER.search(path.name.split(".")[0])
    return int(match.group()) if match else None


# --- .npy arrays (LAION's img_emb parts) ---------------------------------------------------------------


class NpyVectors(ShardVectors):
    """A memory-mapped N × d `.npy` array; the header is read without touching the data. A remote array is read
    by byte range instead, a block of rows at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._remote: io.BufferedIOBase | None = None
        try:
            with open_binary(path) as handle:
                version = np.lib.format.read_magic(handle)
                if version == (1, 0):
                    shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(handle)
                else:
                    shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(handle)
                offset = handle.tell()
                handle.seek(0, 2)
                size = handle.tell()
        except (OSError, ValueError) as exc:
            raise InputError(f"not a readable .npy array: {exc}", path) from exc
        if len(shape) != 2 or dtype not in EMBEDDING_DTYPES or fortran_order:
            raise InputError(
                f"expected a C-ordered 2-D float16 or float32 array, found shape {shape} {dtype}"
                f"{' (Fortran order)' if fortran_order else ''}",
                path,
            )
        self.count, self.dim = int(shape[0]), int(shape[1])
        self.dtype = np.dtype(dtype)
        needed = offset + self.count * self.dim * self.dtype.itemsize
        if size < needed:
            raise InputError(f"truncated .npy: {size} bytes, the header promises {needed}", path)
        self._offset = offset
        self._array: np.ndarray | None = None
        self._mmap: mmap.mmap | None = None

    def array(self) -> np.ndarray:
        if self._array is None:
            if self.count == 0:
                self._array = np.empty((0, self.dim), dtype=self.dtype)
            else:
                with open(self.path, "rb") as handle:
                    self._mmap = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
                self._array = np.ndarray(
                    (self.count, self.dim), dtype=self.dtype, buffer=self._mmap, offset=self._offset
                )
        return self._array

    def _read_rows(self, lo: int, hi: int) -> np.ndarray:
        """Rows lo..hi-1 of a remote array, by one ranged read."""
        row_bytes = self.dim * self.dtype.itemsize
        if self._remote is None:
            self._remote = open_binary(self.path)  # type: ignore[assignment]
        assert self._remote is not None
        try:
            self._remote.seek(self._offset + lo * row_bytes)
            data = self._remote.read((hi - lo) * row_bytes)
        except OSError as exc:
            raise InputError(f"unreadable .npy rows {lo}-{hi - 1}: {exc}", self.path) from exc
        if len(data) != (hi - lo) * row_bytes:
            raise InputError(f"truncated .npy: rows {lo}-{hi - 1} cannot be read", self.path)
        return np.frombuffer(data, dtype=self.dtype).reshape(hi - lo, self.dim)

    def _take_remote(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), self.dim), dtype=self.dtype)
        blocks = rows // REMOTE_BLOCK_ROWS
        for block in np.unique(blocks):
            lo = int(block) * REMOTE_BLOCK_ROWS
            mine = blocks == block
            part = self._read_rows(lo, min(lo + REMOTE_BLOCK_ROWS, self.count, int(rows[mine].max()) + 1))
            out[mine] = part[rows[mine] - lo]
        return out

    def take(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.count):
            raise InputError(f"row {int(rows.max())} asked for, but the array has {self.count} rows", self.path)
        if not is_local(self.path):
            return self._take_remote(rows), np.ones(len(rows), dtype=bool)
        array = self.array()
        if len(rows) and rows[-1] - rows[0] + 1 == len(rows) and np.all(np.diff(rows) == 1):
            vectors = np.array(array[rows[0] : rows[-1] + 1])  # a contiguous run: one slice copy
        else:
            vectors = array[rows]
        return vectors, np.ones(len(rows), dtype=bool)

    def blocks(self, block_rows: int) -> Iterator[VectorBlock]:
        if not is_local(self.path):
            for lo in range(0, self.count, block_rows):
                hi = min(lo + block_rows, self.count)
                yield VectorBlock(np.arange(lo, hi, dtype=np.int64), self._read_rows(lo, hi))
            return
        array = self.array()
        row_bytes = self.dim * self.dtype.itemsize
        for lo in range(0, self.count, block_rows):
            hi = min(lo + block_rows, self.count)
            yield VectorBlock(np.arange(lo, hi, dtype=np.int64), array[lo:hi])
            self._release(lo * row_bytes, hi * row_bytes)

    def _release(self, start: int, stop: int) -> None:
        """Drop pages already streamed from this process (they stay in the page cache), bounding RSS."""
        if self._mmap is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        start, stop = start + self._offset, stop + self._offset
        aligned = start - start % mmap.PAGESIZE
        length = (stop - aligned) // mmap.PAGESIZE * mmap.PAGESIZE
        if length > 0:
            self._mmap.madvise(mmap.MADV_DONTNEED, aligned, length)


# --- a list column inside parquet ------------------------------------------------------------------------


def _is_float_list(dtype: pa.DataType) -> bool:
    list_types = (pa.types.is_list, pa.types.is_large_list, pa.types.is_fixed_size_list)
    return any(t(dtype) for t in list_types) and pa.types.is_floating(dtype.value_type)


def list_column_to_matrix(
    array: pa.Array | pa.ChunkedArray, dim: int | None, path: Path, first_row: int
) -> tuple[np.ndarray, np.ndarray]:
    """An Arrow list-of-floats column as an n × d matrix; a null list is an invalid row, a wrong length an error."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    n = len(array)
    lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False)
    valid = ~np.asarray(pc.is_null(array).to_numpy(zero_copy_only=False), dtype=bool)
    lengths = np.where(valid, np.nan_to_num(lengths.astype(np.float64), nan=-1), -1).astype(np.int64)
    if dim is None:
        dim = int(lengths[valid][0]) if valid.any() else 0
    wrong = np.flatnonzero(valid & (lengths != dim))
    if len(wrong):
        row = first_row + int(wrong[0])
        raise InputError(f"embedding of row {row} has {int(lengths[wrong[0]])} values, expected {dim}", path, row)
    flat = pc.list_flatten(array).to_numpy(zero_copy_only=False)
    if flat.dtype not in EMBEDDING_DTYPES:
        flat = flat.astype(np.float32)
    if valid.all():
        return flat.reshape(n, dim), valid
    out = np.zeros((n, dim), dtype=flat.dtype)
    out[valid] = flat.reshape(-1, dim)
    return out, valid


class ParquetColumnVectors(ShardVectors):
    """Vectors stored in a list column; row groups are decoded on demand and cached while the scan is in them."""

    def __init__(self, path: Path, column: str) -> None:
        self.path = path
        self.column = column
        try:
            self._file = pq.ParquetFile(parquet_source(path))
        except PARQUET_ERRORS as exc:
            raise InputError(f"unreadable parquet: {exc}", path) from exc
        schema = self._file.schema_arrow
        if column not in schema.names:
            raise ColumnError(path, column, schema.names)
        field_type = schema.field(column).type
        if not _is_float_list(field_type):
            raise InputError(f"column {column!r} is {field_type}, not a list of floats", path)
        self.count = self._file.metadata.num_rows
        meta = self._file.metadata
        self._group_starts = np.cumsum([0] + [meta.row_group(i).num_rows for i in range(meta.num_row_groups)])
        if pa.types.is_fixed_size_list(field_type):
            self.dim = field_type.list_size
        else:
            self.dim = self._first_length()
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _first_length(self) -> int:
        for batch in self._file.iter_batches(batch_size=1024, columns=[self.column]):
            lengths = pc.drop_null(pc.list_value_length(batch[self.column]))
            if len(lengths):
                return int(lengths[0].as_py())
        return 0

    def _group(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if index not in self._cache:
            try:
                table = self._file.read_row_group(index, columns=[self.column])
            except PARQUET_ERRORS as exc:
                raise InputError(f"unreadable parquet row group {index}: {exc}", self.path) from exc
            self._cache[index] = list_column_to_matrix(
                table[self.column], self.dim, self.path, int(self._group_starts[index])
            )
        return self._cache[index]

    def take(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = np.asarray(rows, dtype=np.int64)
        vectors = np.zeros((len(rows), self.dim), dtype=np.float32)
        valid = np.zeros(len(rows), dtype=bool)
        if not len(rows):
            return vectors, valid
        groups = np.searchsorted(self._group_starts, rows, side="right") - 1
        wanted = set(np.unique(groups).tolist())
        for stale in [g for g in self._cache if g not in wanted]:
            del self._cache[stale]  # scans move forward: keep only the row groups in use
        for group in sorted(wanted):
            mine = groups == group
            matrix, ok = self._group(group)
            local = rows[mine] - self._group_starts[group]
            vectors[mine], valid[mine] = matrix[local], ok[local]
        return vectors, valid

    def blocks(self, block_rows: int) -> Iterator[VectorBlock]:
        start = 0
        try:
            for batch in self._file.iter_batches(batch_size=block_rows, columns=[self.column]):
                matrix, valid = list_column_to_matrix(batch[self.column], self.dim, self.path, start)
                yield VectorBlock(np.arange(start, start + len(matrix), dtype=np.int64), matrix, valid)
                start += len(matrix)
        except PARQUET_ERRORS as exc:
            raise InputError(f"unreadable parquet after row {start}: {exc}", self.path) from exc


# --- per-sample .npy members in webdataset shards ----------------------------------------------------------


class TarMemberVectors(ShardVectors):
    """Vectors in `.npy` members of a tar shard, read once per shard into memory (a shard is ~10 k samples).

    Rows are numbered as `WebDatasetShards` numbers them: the sidecar parquet's rows, then tar-only samples
    in order of appearance.
    """

    def __init__(
        self,
        path: Path,
        key_to_row: dict[str, int],
        meta_rows: int,
        members: tuple[str, ...],
        max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
    ) -> None:
        self.path = path
        self._max_member_bytes = max_member_bytes
        self._key_to_row = key_to_row
        self._meta_rows = meta_rows
        self._members = members
        self._loaded: tuple[np.ndarray, np.ndarray] | None = None
        self.dim = 0
        self.count = meta_rows

    def _load(self) -> tuple[np.ndarray, np.ndarray]:
        if self._loaded is not None:
            return self._loaded
        # The webdataset reader's own header pass, so that rows (dotted keys, tar-only samples) are numbered
        # exactly as the scan numbers them, and a damaged tar fails the same way instead of looping or hanging.
        from safeset.io.webdataset import _open_tar, _read_at, plan_tar

        found: dict[int, np.ndarray] = {}
        handle, archive = _open_tar(self.path)
        with handle, archive:
            plan = plan_tar(archive, self.path, self._key_to_row, self._meta_rows, self._max_member_bytes)
            for member in plan.members:
                base = member.name.rpartition("/")[2]
                suffix = base[len(member.key.rpartition("/")[2]) :].lstrip(".").lower()
                if suffix not in self._members or member.row in found or member.refusal or member.duplicate:
                    continue
                data = _read_at(handle, member.offset, member.size, self.path, member.name)
                try:
                    vector = np.load(io.BytesIO(data), allow_pickle=False)
                except (ValueError, OSError, EOFError) as exc:
                    raise InputError(f"member {member.name!r} is not a readable .npy: {exc}", self.path) from exc
                vector = np.asarray(vector).reshape(-1) if np.asarray(vector).ndim <= 2 else None
                if vector is None or vector.dtype not in EMBEDDING_DTYPES or (self.dim and len(vector) != self.dim):
                    raise InputError(
                        f"member {member.name!r} is not a float16/float32 vector of {self.dim or 'one'} length",
                        self.path,
                    )
                self.dim = self.dim or len(vector)
                found[member.row] = vector
        next_row = self._meta_rows + len(plan.tar_only_keys)
        self.count = next_row
        vectors = np.zeros((self.count, self.dim), dtype=np.float32)
        valid = np.zeros(self.count, dtype=bool)
        if found:
            rows = np.fromiter(found, dtype=np.int64, count=len(found))
            vectors[rows] = np.stack([found[int(r)] for r in rows])
            valid[rows] = True
        self._loaded = (vectors, valid)
        return self._loaded

    def take(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        vectors, valid = self._load()
        rows = np.asarray(rows, dtype=np.int64)
        inside = rows < len(valid)
        out = np.zeros((len(rows), vectors.shape[1]), dtype=vectors.dtype)
        ok = np.zeros(len(rows), dtype=bool)
        out[inside], ok[inside] = vectors[rows[inside]], valid[rows[inside]]
        return out, ok

    def blocks(self, block_rows: int) -> Iterator[VectorBlock]:
        vectors, valid = self._load()
        for lo in range(0, len(valid), block_rows):
            hi = min(lo + block_rows, len(valid))
            yield VectorBlock(np.arange(lo, hi, dtype=np.int64), vectors[lo:hi], valid[lo:hi])


# --- sources: which vectors belong to which shard ----------------------------------------------------------


class EmbeddingSource(ABC):
    """Where a dataset's embeddings are, shard by shard."""

    description: str

    @abstractmethod
    def for_shard(self, shard: ShardRef) -> ShardVectors:
        """The shard's vectors; InputError naming both files when they do not line up with the metadata."""

    def check(self, shards: list[ShardRef]) -> int:
        """Check every shard that can be checked cheaply before any work; return the dimension."""
        dim = 0
        first: Path | None = None
        for shard in shards:
            vectors = self.for_shard(shard)
            if vectors.dim and dim and vectors.dim != dim:
                raise InputError(f"embeddings of dimension {vectors.dim}, but {first} has {dim}", vectors.path)
            if vectors.dim and not dim:
                dim, first = vectors.dim, vectors.path
        return dim


class NpyFolderSource(EmbeddingSource):
    """`.npy` parts in one folder, paired with shards by the first number in their names (or one file, one shard)."""

    def __init__(self, dataset: DatasetFormat, location: Path) -> None:
        self.dataset = dataset
        self.location = location
        self.description = f"npy arrays in {location}"
        if location.is_file():
            self.by_number: dict[int | None, Path] = {}
        elif location.is_dir():
            parts = sorted(p for p in location.iterdir() if p.suffix == ".npy" and p.is_file())
            if not parts:
                raise InputError("no .npy embedding files here", location)
            self.by_number = {}
            for part in parts:
                number = shard_number(part)
                if number in self.by_number:
                    raise InputError(f"two embedding files share number {number}: {self.by_number[number].name}", part)
                self.by_number[number] = part
        else:
            raise InputError("embeddings path does not exist", location)
        self._open: dict[str, NpyVectors] = {}

    def file_for(self, shard: ShardRef) -> Path:
        if self.location.is_file():
            if len(self.dataset.shards()) != 1:
                raise InputError("one .npy file given for a dataset of several shards; pass the folder", self.location)
            return self.location
        number = shard_number(shard.path)
        if number not in self.by_number:
            raise InputError(f"no embedding file numbered {number} for shard {shard.id} in {self.location}", shard.path)
        return self.by_number[number]

    def for_shard(self, shard: ShardRef) -> ShardVectors:
        if shard.id not in self._open:
            vectors = NpyVectors(self.file_for(shard))
            expected = self.dataset.known_row_count(shard)
            if expected is not None and expected != vectors.count:
                raise InputError(
                    f"{vectors.count} embedding rows, but the metadata {shard.path} has {expected} rows", vectors.path
                )
            self._open = {shard.id: vectors}  # one shard open at a time: its mapping is released with it
        return self._open[shard.id]


class ParquetColumnSource(EmbeddingSource):
    def __init__(self, column: str) -> None:
        self.column = column
        self.description = f"parquet column {column!r}"
        self._open: dict[str, ParquetColumnVectors] = {}

    def for_shard(self, shard: ShardRef) -> ShardVectors:
        if shard.id not in self._open:
            self._open = {shard.id: ParquetColumnVectors(shard.path, self.column)}
        return self._open[shard.id]


class TarMemberSource(EmbeddingSource):
    def __init__(self, dataset: DatasetFormat, members: tuple[str, ...]) -> None:
        self.dataset = dataset
        self.members = members
        self.description = f"per-sample .npy members ({', '.join(members)})"
        self._open: dict[str, TarMemberVectors] = {}

    def for_shard(self, shard: ShardRef) -> ShardVectors:
        from safeset.io.webdataset import WebDatasetShards

        if shard.id not in self._open:
            assert isinstance(self.dataset, WebDatasetShards)
            sidecar = self.dataset._read_sidecar(shard)
            key_to_row: dict[str, int] = {}
            meta_rows = 0
            if sidecar is not None:
                table, cmap = sidecar
                keys = pc.cast(table[cmap.key], pa.string()).to_pylist() if cmap.key else []
                key_to_row = {k: i for i, k in enumerate(keys)}
                meta_rows = table.num_rows
            self._open = {
                shard.id: TarMemberVectors(
                    shard.path, key_to_row, meta_rows, self.members, self.dataset.max_member_bytes
                )
            }
        return self._open[shard.id]

    def check(self, shards: list[ShardRef]) -> int:
        return 0  # members are only known by reading each tar: checked as each shard is read


@dataclass(frozen=True)
class EmbeddingOptions:
    """Where a dataset's embeddings are: a folder of `.npy` parts, a parquet list column, or tar members."""

    path: Path | None = None  # folder of .npy parts row-aligned with the shards (LAION img_emb)
    column: str | None = None  # parquet list column holding each row's embedding
    member: str | None = None  # webdataset member extension holding each sample's embedding (e.g. "npy")


def open_embeddings(
    dataset: DatasetFormat, path: Path | str | None = None, column: str | None = None, member: str | None = None
) -> EmbeddingSource:
    """The embeddings of a dataset: an explicit `--embeddings` path, a column, members, or the layout's own."""
    from safeset.io.webdataset import WebDatasetShards

    if path:
        return NpyFolderSource(dataset, Path(path))
    own = getattr(dataset, "embedding_folder", None)
    if own is not None:
        return NpyFolderSource(dataset, own)
    if isinstance(dataset, WebDatasetShards):
        return TarMemberSource(dataset, (member,) if member else EMBEDDING_MEMBER_CANDIDATES)
    shards = dataset.shards()
    if shards and shards[0].path.suffix == ".parquet":
        schema = pq.read_schema(parquet_source(shards[0].path))
        names = schema.names
        if column is not None:
            if column not in names:
                raise ColumnError(shards[0].path, column, names)
            return ParquetColumnSource(column)
        lists = [c for c in EMBEDDING_COLUMN_CANDIDATES if c in names and _is_float_list(schema.field(c).type)]
        found = lists[0] if lists else None
        if found:
            return ParquetColumnSource(found)
    raise SafesetError(
        f"no embeddings found for {dataset.root}: pass --embeddings (a folder of .npy parts aligned with the shards)"
        " or --embedding-col (a list column)"
    )
