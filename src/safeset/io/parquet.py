"""Parquet datasets: LAION metadata parts and img2dataset's `parquet` output format (image bytes in a column).

Memory is bounded by one row group, not by the file: a shard is opened without pre-buffering (pyarrow's
default reads ahead across the file's column chunks: a metadata-only scan of one 10 M-row LAION-style file
peaked at 607 MiB that way, and at 227 MiB now, against 214 MiB for 1 M rows; see BENCHMARKS.md) and read one
row group at a time, in batches of the scan's size.

Files come from strangers. A column the scan reads must have a type its role can use (`columns.py`): in the
first readable shard a wrong type refuses the scan before any work; in a later shard it fails that shard,
named, while the others finish. Text that is not UTF-8 (keys, URLs, captions, hex hashes) makes those rows
errored rows, with the column named, and their values null, so no matcher sees bytes it cannot read.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from safeset.errors import ColumnError, InputError
from safeset.fsutil import atomic_path
from safeset.io.base import DatasetFormat, ShardRef, ShardWriteResult
from safeset.io.batch import RowBatch
from safeset.io.columns import ColumnMap, check_column_types, resolve_columns, text_column
from safeset.io.location import parquet_source
from safeset.io.stats import stats_path_for, write_cleaned_stats

PARQUET_ERRORS = (OSError, pa.ArrowException, ValueError)

#: Bytes read at a time from a column chunk. Pages then stream through a small buffer instead of each column
#: chunk being read whole, so even a file written as one huge row group is read in bounded memory.
READ_BUFFER_BYTES = 1 << 20

#: Rows per batch when copying a shard into a release.
WRITE_BATCH_ROWS = 65536


def _binary_columns(schema: pa.Schema) -> set[str]:
    return {f.name for f in schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)}


def open_parquet(path: Any) -> pq.ParquetFile:
    """Open a parquet file for streaming (no pre-buffering); an unreadable footer or schema is an InputError.
    A remote file is read through its fsspec file object, in ranged reads of the same bounded size."""
    try:
        parquet = pq.ParquetFile(parquet_source(path), pre_buffer=False, buffer_size=READ_BUFFER_BYTES)
        parquet.schema_arrow  # noqa: B018 - converting the schema is where some damaged footers fail
    except PARQUET_ERRORS as exc:
        raise InputError(f"unreadable parquet: {exc}", path) from exc
    return parquet


def read_row_groups(parquet: pq.ParquetFile, batch_rows: int, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
    """Stream the file row group by row group: at most one row group's column chunks are in memory at a time."""
    for group in range(parquet.num_row_groups):
        yield from parquet.iter_batches(batch_size=batch_rows, row_groups=[group], columns=columns)


class ParquetDataset(DatasetFormat):
    name: ClassVar[str] = "parquet"

    def shards(self) -> list[ShardRef]:
        return self.shard_refs(".parquet")

    def _open(self, shard: ShardRef) -> pq.ParquetFile:
        return open_parquet(shard.path)

    def column_map(self, shard: ShardRef, parquet: pq.ParquetFile | None = None) -> ColumnMap:
        """The shard's column roles; ColumnError for a missing or wrongly typed column the scan would read."""
        schema = (parquet or self._open(shard)).schema_arrow
        cmap = resolve_columns(schema.names, self.columns, str(shard.path), _binary_columns(schema))
        check_column_types(schema, cmap, shard.path, unread_roles=() if self.read_captions else ("caption",))
        return cmap

    def check(self) -> dict[str, object]:
        """Columns of the first shard whose footer reads; unreadable shards before it fail on their own later."""
        shards = self.shards()
        if not shards:
            raise InputError("no .parquet files found", self.root)
        first_problem: InputError | None = None
        for shard in shards:
            try:
                parquet = self._open(shard)
            except InputError as exc:
                first_problem = first_problem or exc
                continue
            cmap = self.column_map(shard, parquet)
            return {
                "has_urls": cmap.url is not None,
                "has_captions": cmap.caption is not None,
                "has_images": cmap.image is not None,
                "metadata_hashes": sorted(cmap.hashes),
                "columns": cmap,
            }
        raise InputError(f"none of the {len(shards)} .parquet files is readable; the first: {first_problem}", self.root)

    def known_row_count(self, shard: ShardRef) -> int | None:
        try:
            return self._open(shard).metadata.num_rows
        except InputError:
            return None

    def _shard_columns(self, shard: ShardRef, parquet: pq.ParquetFile) -> ColumnMap:
        """Column roles of a shard being read: a column problem found here fails this shard alone."""
        try:
            return self.column_map(shard, parquet)
        except ColumnError as exc:
            detail = getattr(exc, "detail", None) or str(exc).removeprefix(f"{shard.path}: ")
            raise InputError(detail, shard.path) from exc

    def _read_batches(
        self, parquet: pq.ParquetFile, batch_rows: int, columns: list[str] | None
    ) -> Iterator[pa.RecordBatch]:
        return read_row_groups(parquet, batch_rows, columns)

    def _stream(
        self, shard: ShardRef, parquet: pq.ParquetFile, batch_rows: int, columns: list[str] | None
    ) -> Iterator[tuple[int, pa.RecordBatch]]:
        """(first row, batch) pairs; a read failure is an InputError naming the file and the rows read so far.
        (What the caller does with a batch, writing a release say, raises its own errors, not this one.)"""
        start = 0
        try:
            for batch in self._read_batches(parquet, batch_rows, columns):
                yield start, batch
                start += batch.num_rows
        except PARQUET_ERRORS as exc:
            raise InputError(f"unreadable parquet after row {start}: {exc}", shard.path) from exc

    def iter_batches(self, shard: ShardRef, batch_rows: int, read_images: bool) -> Iterator[RowBatch]:
        parquet = self._open(shard)
        cmap = self._shard_columns(shard, parquet)
        skipped = {cmap.image if not read_images else None, cmap.caption if not self.read_captions else None}
        # With no column wanted, row counts still stream (no column is read) so every row is accounted for.
        wanted = [c for c in cmap.needed() if c not in skipped]
        for start, batch in self._stream(shard, parquet, batch_rows, wanted):
            rows = np.arange(start, start + batch.num_rows, dtype=np.int64)
            try:
                yield _row_batch(shard.id, rows, batch, cmap, read_images, self.read_captions)
            except pa.ArrowException as exc:  # values beyond what one batch can hold, say
                raise InputError(
                    f"rows {start}-{start + batch.num_rows - 1} cannot be read: {exc}", shard.path
                ) from exc

    def write_shard(
        self, shard: ShardRef, drop_rows: np.ndarray, out_root: Path, members: pa.Table | None = None
    ) -> ShardWriteResult:
        """Copy the shard without the dropped rows, every column and its type unchanged, row group by row group
        (`members` is unused: a parquet row is one whole record)."""
        parquet = self._open(shard)
        target = self.relative_out(shard, out_root, shard.path)
        compression = _compression_of(parquet)
        written = 0
        kept_status: list[pa.RecordBatch] = []
        drop_rows = np.sort(np.asarray(drop_rows, dtype=np.int64))
        with atomic_path(target) as tmp, pq.ParquetWriter(tmp, parquet.schema_arrow, compression=compression) as writer:
            for start, batch in self._stream(shard, parquet, WRITE_BATCH_ROWS, None):
                n = batch.num_rows
                lo, hi = np.searchsorted(drop_rows, [start, start + n])
                keep = np.ones(n, dtype=bool)
                keep[drop_rows[lo:hi] - start] = False
                kept = batch.filter(pa.array(keep)) if not keep.all() else batch
                written += kept.num_rows
                if "status" in kept.schema.names:
                    kept_status.append(kept.select([c for c in ("status", "error_message") if c in kept.schema.names]))
                writer.write_batch(kept)
        files = [target.relative_to(out_root).as_posix()]
        stats_source = stats_path_for(shard.path)
        stats_target = stats_path_for(target)
        status_table = pa.Table.from_batches(kept_status) if kept_status else None
        if write_cleaned_stats(stats_source, stats_target, status_table, written):
            files.append(stats_target.relative_to(out_root).as_posix())
        return ShardWriteResult(rows_written=written, files=files)


def _row_batch(
    shard_id: str, rows: np.ndarray, batch: pa.RecordBatch, cmap: ColumnMap, read_images: bool, read_captions: bool
) -> RowBatch:
    """A RowBatch from a parquet batch; rows with text that is not UTF-8 are errored rows naming the column."""
    problems: list[tuple[np.ndarray, str]] = []

    def text(column: str, *, escape_invalid: bool = False) -> pa.Array:
        values, invalid = text_column(batch.column(column), escape_invalid=escape_invalid)
        if invalid is not None and invalid.any():
            problems.append((invalid, f"invalid UTF-8 in column {column!r}"))
        return values

    return RowBatch(
        shard=shard_id,
        rows=rows,
        # A key that is not UTF-8 still names its row, written with `\xNN` escapes, in errors and findings.
        keys=text(cmap.key, escape_invalid=True) if cmap.key else None,
        urls=text(cmap.url) if cmap.url else None,
        captions=text(cmap.caption) if (cmap.caption and read_captions) else None,
        images=batch.column(cmap.image) if (read_images and cmap.image) else None,
        metadata_hashes={algo: text(col) for algo, col in cmap.hashes.items()},
        extra={col: batch.column(col) for col in cmap.extra},
        read_errors=_read_errors(len(rows), problems),
    )


def _read_errors(n: int, problems: list[tuple[np.ndarray, str]]) -> pa.Array | None:
    """Per-row reasons (several joined with '; '), or None when the batch read cleanly."""
    if not problems:
        return None
    reasons = np.full(n, None, dtype=object)
    for mask, reason in problems:
        for i in np.flatnonzero(mask):
            reasons[i] = reason if reasons[i] is None else f"{reasons[i]}; {reason}"
    return pa.array(reasons, type=pa.string())


def _compression_of(parquet: pq.ParquetFile) -> str:
    meta = parquet.metadata
    if meta.num_row_groups and meta.num_columns:
        codec = meta.row_group(0).column(0).compression
        return "none" if codec == "UNCOMPRESSED" else codec.lower()
    return "snappy"
