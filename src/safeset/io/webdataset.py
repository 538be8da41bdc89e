"""img2dataset `webdataset` output: `00000.tar` shards with `00000.parquet` and `00000_stats.json` beside them.

A sample is the set of tar members sharing a name up to the first dot of the basename (`KEY.jpg`,
`KEY.txt`, `KEY.json`). The sidecar parquet lists every input row, failed downloads included (those
have no image in the tar); rows are the parquet's rows, plus any tar sample the parquet lacks.
"""

from __future__ import annotations

import json
import posixpath
import tarfile
from collections.abc import Container, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from safeset.errors import ColumnError, InputError
from safeset.fsutil import atomic_path, read_parquet
from safeset.io.base import DatasetFormat, ShardRef, ShardWriteResult
from safeset.io.batch import RowBatch
from safeset.io.columns import ColumnMap, resolve_columns
from safeset.io.parquet import PARQUET_ERRORS, _as_string, _binary_columns
from safeset.io.stats import stats_path_for, write_cleaned_stats

IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"})
TAR_ERRORS = (tarfile.TarError, EOFError, OSError)


@dataclass
class Sample:
    key: str
    image: bytes | None = None
    caption: str | None = None
    meta: dict | None = None
    image_error: str | None = None


def sample_key(name: str) -> tuple[str, str]:
    """Split a member name into (sample key, extension) the webdataset way."""
    directory, base = posixpath.split(name)
    stem, _, ext = base.partition(".")
    return (posixpath.join(directory, stem) if directory else stem), ext.lower()


def check_member(member: tarfile.TarInfo, path: Path) -> bool:
    """Refuse members that could escape the shard or are not plain files; returns False for directories."""
    name = member.name
    if name.startswith("/") or ".." in name.split("/"):
        raise InputError(f"tar member {name!r} has an absolute or parent-relative path; shard refused", path)
    if member.isdir():
        return False
    if not member.isfile():
        raise InputError(f"tar member {name!r} is not a regular file; shard refused", path)
    return True


def iter_samples(path: Path, read_images: bool, described: Container[str] = ()) -> Iterator[Sample]:
    """Stream samples from a tar, reading image bytes only when asked (seekable files skip the rest).

    Samples whose key is in `described` (rows the sidecar parquet already describes) skip their `.txt` and
    `.json` members: the sidecar carries the same URL and caption, and reading them costs a share of a scan.
    """
    seen: set[str] = set()
    current: Sample | None = None
    try:
        with tarfile.open(path, mode="r:") as archive:
            for member in archive:
                # tarfile keeps every header it has read; drop them so memory stays bounded per shard.
                archive.members = []
                if not check_member(member, path):
                    continue
                key, ext = sample_key(member.name)
                if current is None or key != current.key:
                    if current is not None:
                        yield current
                    if key in seen:
                        raise InputError(f"sample key {key!r} appears twice in the tar; shard refused", path)
                    seen.add(key)
                    current = Sample(key)
                if ext in IMAGE_EXTENSIONS:
                    if read_images and current.image is None:
                        handle = archive.extractfile(member)
                        current.image = handle.read() if handle else b""
                        if len(current.image) != member.size:
                            raise EOFError(f"member {member.name!r} is truncated")
                elif key in described:
                    continue
                elif ext == "txt":
                    handle = archive.extractfile(member)
                    current.caption = handle.read().decode("utf-8", "replace") if handle else None
                elif ext == "json":
                    handle = archive.extractfile(member)
                    try:
                        current.meta = json.loads(handle.read()) if handle else None
                    except json.JSONDecodeError:
                        current.image_error = f"sample metadata {member.name!r} is not valid JSON"
            if current is not None:
                yield current
    except InputError:
        raise
    except TAR_ERRORS as exc:
        raise InputError(f"truncated or unreadable tar: {exc}", path) from exc


class WebDatasetShards(DatasetFormat):
    name: ClassVar[str] = "webdataset"

    def shards(self) -> list[ShardRef]:
        if self.root.is_file():
            return [ShardRef(self.root.name, self.root)]
        files = sorted(p for p in self.root.rglob("*.tar") if p.is_file())
        return [ShardRef(p.relative_to(self.root).as_posix(), p) for p in files]

    @staticmethod
    def sidecar(shard: ShardRef) -> Path:
        return shard.path.with_suffix(".parquet")

    def _sidecar_columns(self, path: Path) -> ColumnMap:
        try:
            schema = pq.read_schema(path)
        except PARQUET_ERRORS as exc:
            raise InputError(f"unreadable parquet: {exc}", path) from exc
        return resolve_columns(schema.names, self.columns, str(path), _binary_columns(schema))

    def check(self) -> dict[str, object]:
        shards = self.shards()
        if not shards:
            raise InputError("no .tar shards found", self.root)
        sidecar = self.sidecar(shards[0])
        if sidecar.exists():
            cmap = self._sidecar_columns(sidecar)
            return {
                "has_urls": cmap.url is not None,
                "has_captions": cmap.caption is not None,
                "has_images": True,
                "metadata_hashes": sorted(cmap.hashes),
                "columns": cmap,
            }
        if self.columns.extra_cols:
            raise ColumnError(f"{shards[0].path} (no sidecar parquet)", self.columns.extra_cols[0], [])
        return {"has_urls": True, "has_captions": True, "has_images": True, "metadata_hashes": []}

    def _read_sidecar(self, shard: ShardRef) -> tuple[pa.Table, ColumnMap] | None:
        path = self.sidecar(shard)
        if not path.exists():
            return None
        cmap = self._sidecar_columns(path)
        columns = cmap.needed()
        if "status" not in columns:
            try:
                if "status" in pq.read_schema(path).names:
                    columns.append("status")
            except PARQUET_ERRORS:
                pass
        try:
            table = read_parquet(path, columns=columns)
        except PARQUET_ERRORS as exc:
            raise InputError(f"unreadable parquet: {exc}", path) from exc
        if cmap.key is None:
            raise InputError("sidecar parquet has no 'key' column to join with the tar", path)
        return table, cmap

    def known_row_count(self, shard: ShardRef) -> int | None:
        path = self.sidecar(shard)
        try:
            return pq.ParquetFile(path).metadata.num_rows if path.exists() else None
        except PARQUET_ERRORS:
            return None

    def iter_batches(self, shard: ShardRef, batch_rows: int, read_images: bool) -> Iterator[RowBatch]:
        sidecar = self._read_sidecar(shard)
        if sidecar is not None and not read_images:
            # Metadata-only: the sidecar lists every row; the tar is not opened at all.
            yield from _table_batches(shard.id, sidecar[0], sidecar[1], batch_rows)
            return
        meta_table, cmap = sidecar if sidecar is not None else (None, None)
        key_to_row: dict[str, int] = {}
        if meta_table is not None and cmap is not None and cmap.key is not None:
            key_to_row = {k: i for i, k in enumerate(_as_string(meta_table[cmap.key]).to_pylist())}
        n_meta = meta_table.num_rows if meta_table is not None else 0
        seen_rows = np.zeros(n_meta, dtype=bool)
        extra_row = n_meta
        pending: list[tuple[int, Sample]] = []
        for sample in iter_samples(shard.path, read_images, key_to_row):
            row = key_to_row.get(sample.key)
            if row is None:
                row, extra_row = extra_row, extra_row + 1
            else:
                seen_rows[row] = True
            pending.append((row, sample))
            if len(pending) >= batch_rows:
                yield _sample_batch(shard.id, pending, meta_table, cmap)
                pending = []
        if pending:
            yield _sample_batch(shard.id, pending, meta_table, cmap)
        if meta_table is not None and cmap is not None:
            missing = np.flatnonzero(~seen_rows)
            for lo in range(0, len(missing), batch_rows):
                rows = missing[lo : lo + batch_rows]
                part = meta_table.take(pa.array(rows))
                batch = _table_batch(shard.id, part, cmap, rows)
                if "status" in part.column_names:
                    # A row that says it downloaded but whose image is absent from the tar cannot be checked.
                    ok = pc.fill_null(pc.equal(part["status"], "success"), False)
                    batch.read_errors = pc.if_else(ok, "image listed as downloaded but missing from tar", None)
                yield batch

    def write_shard(self, shard: ShardRef, drop_rows: np.ndarray, out_root: Path) -> ShardWriteResult:
        sidecar_path = self.sidecar(shard)
        drop = set(int(r) for r in drop_rows)
        files: list[str] = []
        kept_meta: pa.Table | None = None
        drop_keys: set[str] = set()
        meta_keys: set[str] = set()
        meta_rows = 0
        if sidecar_path.exists():
            try:
                table = read_parquet(sidecar_path)
            except PARQUET_ERRORS as exc:
                raise InputError(f"unreadable parquet: {exc}", sidecar_path) from exc
            meta_rows = table.num_rows
            keys = _as_string(table[self._sidecar_columns(sidecar_path).key or "key"]).to_pylist()
            meta_keys = set(keys)
            keep = np.ones(meta_rows, dtype=bool)
            for r in drop:
                if r < meta_rows:
                    keep[r] = False
                    drop_keys.add(keys[r])
            kept_meta = table.filter(pa.array(keep))
        # Rows past the sidecar are tar-only samples, numbered in tar order.
        tar_target = self.relative_out(shard, out_root, shard.path)
        extra_index = meta_rows
        extra_written = 0
        with atomic_path(tar_target) as tmp:
            try:
                with (
                    tarfile.open(shard.path, mode="r:") as source,
                    tarfile.open(tmp, mode="w", format=source.format or tarfile.PAX_FORMAT) as target,
                ):
                    current_key: str | None = None
                    for member in source:
                        source.members = []
                        if not check_member(member, shard.path):
                            continue
                        key, _ = sample_key(member.name)
                        if key != current_key:
                            current_key = key
                            if key not in meta_keys:
                                if extra_index in drop:
                                    drop_keys.add(key)
                                else:
                                    extra_written += 1
                                extra_index += 1
                        if key in drop_keys:
                            continue  # a dropped sample's bytes are never read into the release
                        target.addfile(member, source.extractfile(member))
            except TAR_ERRORS as exc:
                raise InputError(f"truncated or unreadable tar: {exc}", shard.path) from exc
        files.append(tar_target.relative_to(out_root).as_posix())
        written = extra_written
        if kept_meta is not None:
            meta_target = self.relative_out(shard, out_root, sidecar_path)
            with atomic_path(meta_target) as tmp:
                pq.write_table(kept_meta, tmp)
            files.append(meta_target.relative_to(out_root).as_posix())
            written += kept_meta.num_rows
        stats_target = stats_path_for(tar_target)
        if write_cleaned_stats(stats_path_for(shard.path), stats_target, kept_meta, written):
            files.append(stats_target.relative_to(out_root).as_posix())
        return ShardWriteResult(rows_written=written, files=files)


def _table_batch(shard: str, table: pa.Table, cmap: ColumnMap, rows: np.ndarray) -> RowBatch:
    def col(name: str | None) -> pa.Array | None:
        return _as_string(table[name].combine_chunks()) if name else None

    return RowBatch(
        shard=shard,
        rows=np.asarray(rows, dtype=np.int64),
        keys=col(cmap.key),
        urls=col(cmap.url),
        captions=col(cmap.caption),
        metadata_hashes={algo: col(name) for algo, name in cmap.hashes.items()},
        extra={name: table[name].combine_chunks() for name in cmap.extra},
    )


def _table_batches(shard: str, table: pa.Table, cmap: ColumnMap, batch_rows: int) -> Iterator[RowBatch]:
    for lo in range(0, table.num_rows, batch_rows):
        part = table.slice(lo, batch_rows)
        yield _table_batch(shard, part, cmap, np.arange(lo, lo + part.num_rows))


def _sample_batch(
    shard: str, pending: list[tuple[int, Sample]], meta: pa.Table | None, cmap: ColumnMap | None
) -> RowBatch:
    rows = np.array([row for row, _ in pending], dtype=np.int64)
    samples = [s for _, s in pending]
    n_meta = meta.num_rows if meta is not None else 0
    in_meta = rows < n_meta
    urls: list[str | None] = []
    captions: list[str | None] = []
    meta_urls = meta_caps = None
    if meta is not None and cmap is not None and in_meta.any():
        taken = meta.take(pa.array(np.where(in_meta, rows, 0)))
        meta_urls = _as_string(taken[cmap.url].combine_chunks()).to_pylist() if cmap.url else None
        meta_caps = _as_string(taken[cmap.caption].combine_chunks()).to_pylist() if cmap.caption else None
    for i, sample in enumerate(samples):
        from_meta = bool(in_meta[i])
        url = meta_urls[i] if (from_meta and meta_urls is not None) else (sample.meta or {}).get("url")
        caption = meta_caps[i] if (from_meta and meta_caps is not None) else sample.caption
        urls.append(url if isinstance(url, str) else None)
        captions.append(caption)
    hashes: dict[str, pa.Array] = {}
    if meta is not None and cmap is not None:
        for algo, name in cmap.hashes.items():
            column = _as_string(meta[name].combine_chunks())
            taken = column.take(pa.array(np.where(in_meta, rows, 0)))
            hashes[algo] = pc.if_else(pa.array(in_meta), taken, None)
    extra: dict[str, pa.Array] = {}
    if meta is not None and cmap is not None:
        for name in cmap.extra:
            taken = meta[name].combine_chunks().take(pa.array(np.where(in_meta, rows, 0)))
            extra[name] = pc.if_else(pa.array(in_meta), taken, pa.scalar(None, taken.type))
    read_errors = [s.image_error for s in samples]
    return RowBatch(
        shard=shard,
        rows=rows,
        keys=pa.array([s.key for s in samples], type=pa.string()),
        urls=pa.array(urls, type=pa.string()),
        captions=pa.array(captions, type=pa.string()),
        images=pa.array([s.image for s in samples], type=pa.binary()),
        read_errors=pa.array(read_errors, type=pa.string()),
        metadata_hashes=hashes,
        extra=extra,
    )
