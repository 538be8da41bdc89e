"""Parquet datasets: LAION metadata parts and img2dataset's `parquet` output format (image bytes in a column)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from safeset.errors import InputError
from safeset.fsutil import atomic_path
from safeset.io.base import DatasetFormat, ShardRef, ShardWriteResult
from safeset.io.batch import RowBatch
from safeset.io.columns import ColumnMap, resolve_columns
from safeset.io.stats import stats_path_for, write_cleaned_stats

PARQUET_ERRORS = (OSError, pa.ArrowException, ValueError)


def _binary_columns(schema: pa.Schema) -> set[str]:
    return {f.name for f in schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)}


def _as_string(array: pa.Array) -> pa.Array:
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        return array
    return pc.cast(array, pa.string())


class ParquetDataset(DatasetFormat):
    name: ClassVar[str] = "parquet"

    def shards(self) -> list[ShardRef]:
        if self.root.is_file():
            return [ShardRef(self.root.name, self.root)]
        files = sorted(p for p in self.root.rglob("*.parquet") if p.is_file())
        return [ShardRef(p.relative_to(self.root).as_posix(), p) for p in files]

    def _open(self, shard: ShardRef) -> pq.ParquetFile:
        try:
            return pq.ParquetFile(shard.path)
        except PARQUET_ERRORS as exc:
            raise InputError(f"unreadable parquet: {exc}", shard.path) from exc

    def column_map(self, shard: ShardRef) -> ColumnMap:
        schema = self._open(shard).schema_arrow
        return resolve_columns(schema.names, self.columns, str(shard.path), _binary_columns(schema))

    def check(self) -> dict[str, object]:
        shards = self.shards()
        if not shards:
            raise InputError("no .parquet files found", self.root)
        cmap = self.column_map(shards[0])
        return {
            "has_urls": cmap.url is not None,
            "has_captions": cmap.caption is not None,
            "has_images": cmap.image is not None,
            "metadata_hashes": sorted(cmap.hashes),
            "columns": cmap,
        }

    def known_row_count(self, shard: ShardRef) -> int | None:
        try:
            return self._open(shard).metadata.num_rows
        except InputError:
            return None

    def iter_batches(self, shard: ShardRef, batch_rows: int, read_images: bool) -> Iterator[RowBatch]:
        parquet = self._open(shard)
        schema = parquet.schema_arrow
        cmap = resolve_columns(schema.names, self.columns, str(shard.path), _binary_columns(schema))
        skipped = {cmap.image if not read_images else None, cmap.caption if not self.read_captions else None}
        wanted = [c for c in cmap.needed() if c not in skipped]
        start = 0
        try:
            # With no column wanted, still stream row counts so every row is accounted for.
            batches = parquet.iter_batches(batch_size=batch_rows, columns=wanted or [schema.names[0]])
            for batch in batches:
                n = batch.num_rows
                rows = np.arange(start, start + n, dtype=np.int64)
                start += n
                yield RowBatch(
                    shard=shard.id,
                    rows=rows,
                    keys=_as_string(batch[cmap.key]) if cmap.key else None,
                    urls=_as_string(batch[cmap.url]) if cmap.url else None,
                    captions=_as_string(batch[cmap.caption]) if (cmap.caption and self.read_captions) else None,
                    images=batch[cmap.image] if (read_images and cmap.image) else None,
                    metadata_hashes={algo: _as_string(batch[col]) for algo, col in cmap.hashes.items()},
                    extra={col: batch[col] for col in cmap.extra},
                )
        except PARQUET_ERRORS as exc:
            raise InputError(f"unreadable parquet after row {start}: {exc}", shard.path) from exc

    def write_shard(self, shard: ShardRef, drop_rows: np.ndarray, out_root: Path) -> ShardWriteResult:
        parquet = self._open(shard)
        target = self.relative_out(shard, out_root, shard.path)
        compression = _compression_of(parquet)
        written = 0
        start = 0
        kept_status: list[pa.RecordBatch] = []
        drop_rows = np.sort(np.asarray(drop_rows, dtype=np.int64))
        with atomic_path(target) as tmp, pq.ParquetWriter(tmp, parquet.schema_arrow, compression=compression) as writer:
            for batch in parquet.iter_batches(batch_size=65536):
                n = batch.num_rows
                lo, hi = np.searchsorted(drop_rows, [start, start + n])
                keep = np.ones(n, dtype=bool)
                keep[drop_rows[lo:hi] - start] = False
                start += n
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


def _compression_of(parquet: pq.ParquetFile) -> str:
    meta = parquet.metadata
    if meta.num_row_groups and meta.num_columns:
        codec = meta.row_group(0).column(0).compression
        return "none" if codec == "UNCOMPRESSED" else codec.lower()
    return "snappy"
