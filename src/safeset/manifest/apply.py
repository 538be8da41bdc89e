"""Apply a removal manifest to any copy of the dataset: a subset, a re-ordered or re-captioned copy, a re-downloaded
webdataset, a Hugging Face `datasets.Dataset`.

Each row of the copy is matched on every manifest key it can give (`keys.batch_keys`) and dropped if any matches;
it is reported under the best key that matched (`KEY_ORDER`: dataset key / SAMPLE_ID, LAION hash, image digests,
URL digests). The copy's own img2dataset `key` is positional (a fresh download numbers other rows the same way),
so the dataset key is trusted only when it is not positional, or when the user names it with `--key-col`.
Manifest entries that no row matched are counted: the copy did not contain them (a subset), or kept no key for them.

A copy on disk is written in its own format by the format's writer (staged, then renamed into place): parquet
columns and types unchanged, webdataset members the reader classified copied and re-verified, LAION embedding
parts kept aligned.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from safeset.errors import InputError, SafesetError
from safeset.io.base import DatasetFormat
from safeset.io.batch import RowBatch
from safeset.io.columns import ColumnOptions, check_column_types, resolve_columns, text_column
from safeset.manifest.format import Manifest
from safeset.manifest.keys import KEY_ORDER, LAION_HASH_COLUMN, SAMPLE_ID_COLUMN, batch_keys
from safeset.manifest.release import column_names, key_is_stable, open_with_extras
from safeset.rundir import is_inside_dataset

BATCH_ROWS = 65536


@dataclass
class ApplyReport:
    """Counts only: how many rows each key removed, and how much of the manifest the copy held."""

    rows_in: int = 0
    rows_kept: int = 0
    rows_removed: int = 0
    removed_by_key: dict[str, int] = field(default_factory=dict)
    keys_available: list[str] = field(default_factory=list)
    manifest_entries: int = 0
    manifest_entries_not_in_copy: int = 0
    manifest_signed: bool = False
    shards: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _Matcher:
    """Manifest key columns as value sets, and which manifest entries some copy row matched."""

    def __init__(self, manifest: Manifest, trust_key: bool) -> None:
        self.table = manifest.table
        self.trust_key = trust_key
        self.matched = np.zeros(self.table.num_rows, dtype=bool)
        self.value_sets = {
            k: pc.drop_null(self.table[k]).combine_chunks()
            for k in KEY_ORDER
            if self.table[k].null_count < len(self.table)
        }
        self.removed_by_key: dict[str, int] = {}
        self.available: set[str] = set()

    def drop_rows(self, batch: RowBatch, key_column: str | None) -> np.ndarray:
        """Distinct rows of the batch that any manifest key matches (counted under their best key)."""
        keys = batch_keys(batch, key_column, trust_key=self.trust_key)
        best = np.full(len(batch.rows), len(KEY_ORDER), dtype=np.int64)  # index in KEY_ORDER of the best hit
        for rank, name in enumerate(KEY_ORDER):
            if name not in keys or name not in self.value_sets:
                continue
            self.available.add(name)
            values = keys[name].cast(self.value_sets[name].type)
            hit = np.asarray(pc.fill_null(pc.is_in(values, value_set=self.value_sets[name]), False), dtype=bool)
            if hit.any():
                best[hit & (best > rank)] = rank
                found = pc.drop_null(values.filter(pa.array(hit)))
                self.matched |= np.asarray(pc.fill_null(pc.is_in(self.table[name], value_set=found), False), dtype=bool)
        hits = best < len(KEY_ORDER)
        rows, _first = np.unique(batch.rows[hits], return_index=True)
        # A row with several entries (images) counts once, under the best key any of its entries matched.
        per_row_best = np.full(len(rows), len(KEY_ORDER))
        np.minimum.at(per_row_best, np.searchsorted(rows, batch.rows[hits]), best[hits])
        for rank in per_row_best:
            self.removed_by_key[KEY_ORDER[rank]] = self.removed_by_key.get(KEY_ORDER[rank], 0) + 1
        return rows

    def report(self, rows_in: int, rows_kept: int, signed: bool, shards: int) -> ApplyReport:
        return ApplyReport(
            rows_in=rows_in,
            rows_kept=rows_kept,
            rows_removed=rows_in - rows_kept,
            removed_by_key={k: self.removed_by_key[k] for k in KEY_ORDER if k in self.removed_by_key},
            keys_available=[k for k in KEY_ORDER if k in self.available],
            manifest_entries=self.table.num_rows,
            manifest_entries_not_in_copy=int((~self.matched).sum()),
            manifest_signed=signed,
            shards=shards,
        )


def _trust_key(manifest: Manifest, key_column: str | None, explicit: bool) -> bool:
    """The copy's key column is compared with the manifest's dataset keys only when it is the same column and either
    stable (not img2dataset's positional `key`) or named by the user."""
    return key_column is not None and key_column == manifest.key_column and (explicit or key_is_stable(key_column))


def table_batch(table: pa.Table, columns: ColumnOptions) -> tuple[RowBatch, str | None]:
    """A whole in-memory table as one RowBatch, columns mapped as `scan` maps them (SAMPLE_ID and hash as extras)."""
    names = table.column_names
    extra = tuple(
        dict.fromkeys((*columns.extra_cols, *(c for c in (SAMPLE_ID_COLUMN, LAION_HASH_COLUMN) if c in names)))
    )
    options = dataclasses.replace(columns, extra_cols=extra)
    binary = {f.name for f in table.schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)}
    cmap = resolve_columns(names, options, "table", binary)
    check_column_types(table.schema, cmap, "table")

    def text(column: str | None, escape: bool = False) -> pa.Array | None:
        return text_column(table[column], escape_invalid=escape)[0] if column else None

    batch = RowBatch(
        shard="table",
        rows=np.arange(table.num_rows, dtype=np.int64),
        keys=text(cmap.key, escape=True),
        urls=text(cmap.url),
        captions=text(cmap.caption),
        images=table[cmap.image].combine_chunks() if cmap.image else None,
        metadata_hashes={a: text(c) for a, c in cmap.hashes.items()},  # type: ignore[misc]
        extra={c: table[c].combine_chunks() for c in cmap.extra},
    )
    return batch, cmap.key


def apply_to_table(
    manifest: Manifest, table: pa.Table, columns: ColumnOptions | None = None
) -> tuple[pa.Table, ApplyReport]:
    """The table without the manifest's rows, and the counts. Columns are found as `scan` finds them."""
    columns = columns or ColumnOptions()
    batch, key_column = table_batch(table, columns)
    matcher = _Matcher(manifest, _trust_key(manifest, key_column, columns.key_col is not None))
    drop = matcher.drop_rows(batch, key_column)
    keep = np.ones(table.num_rows, dtype=bool)
    keep[drop] = False
    kept = table.filter(pa.array(keep))
    return kept, matcher.report(table.num_rows, kept.num_rows, manifest.signed, 1)


def apply_to_hf_dataset(
    manifest: Manifest, dataset: Any, columns: ColumnOptions | None = None
) -> tuple[Any, ApplyReport]:
    """A Hugging Face `datasets.Dataset` without the manifest's rows, matched batch by batch as Arrow tables in the
    dataset's own row order (a shuffled or selected dataset included)."""
    columns = columns or ColumnOptions()
    keep = np.ones(len(dataset), dtype=bool)
    matcher: _Matcher | None = None
    start = 0
    for part in dataset.with_format("arrow").iter(batch_size=BATCH_ROWS):
        batch, key_column = table_batch(part, columns)
        if matcher is None:
            matcher = _Matcher(manifest, _trust_key(manifest, key_column, columns.key_col is not None))
        keep[start + matcher.drop_rows(batch, key_column)] = False
        start += part.num_rows
    matcher = matcher or _Matcher(manifest, False)
    kept = dataset.select(np.flatnonzero(keep))
    return kept, matcher.report(len(dataset), len(kept), manifest.signed, 1)


def apply_to_copy(
    manifest: Manifest,
    copy: Path,
    out: Path,
    input_format: str = "auto",
    columns: ColumnOptions | None = None,
) -> ApplyReport:
    """Write `copy` without the manifest's rows to `out` in the copy's own format (staged, renamed into place)."""
    columns = columns or ColumnOptions()
    _check_out(out, copy)
    fmt: DatasetFormat = open_with_extras(copy, input_format, columns, (SAMPLE_ID_COLUMN, LAION_HASH_COLUMN))
    fmt.read_captions = True
    offer = fmt.check()
    key_column = getattr(offer.get("columns"), "key", None)
    has_content_keys = manifest.table["image_md5"].null_count < manifest.table.num_rows
    read_images = bool(offer.get("has_images")) and has_content_keys
    matcher = _Matcher(manifest, _trust_key(manifest, key_column, columns.key_col is not None))
    staging = out.parent / f".{out.name}.staging-{secrets.token_hex(4)}"
    rows_in = rows_kept = 0
    shards = fmt.shards()
    try:
        staging.mkdir(parents=True)
        for shard in shards:
            drops: list[np.ndarray] = []
            members: list[pa.Table] = []
            seen = 0
            for batch in fmt.iter_batches(shard, BATCH_ROWS, read_images=read_images):
                drops.append(matcher.drop_rows(batch, key_column))
                seen = max(seen, int(batch.rows.max()) + 1 if len(batch.rows) else seen)
                if batch.members is not None:
                    members.append(batch.members)
            drop = np.unique(np.concatenate(drops)) if drops else np.zeros(0, dtype=np.int64)
            listing = pa.concat_tables(members) if members else None
            if listing is None and getattr(fmt, "name", "") == "webdataset":
                raise SafesetError(f"{shard.path}: no members were read; cannot copy it")
            written = fmt.write_shard(shard, drop, staging, listing)
            rows_in += seen
            rows_kept += written.rows_written
        if out.is_dir():
            out.rmdir()
        os.replace(staging, out)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, InputError):
            raise SafesetError(f"{exc}; nothing was written") from None
        raise
    return matcher.report(rows_in, rows_kept, manifest.signed, len(shards))


def _check_out(out: Path, copy: Path) -> None:
    if is_inside_dataset(out.resolve(), copy):
        raise SafesetError("--out must be outside the copy's folder")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SafesetError(f"{out} exists and is not an empty folder; choose a new folder")


__all__ = ["ApplyReport", "apply_to_copy", "apply_to_hf_dataset", "apply_to_table", "column_names"]
