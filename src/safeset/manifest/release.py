"""What `clean` needs from the manifest package: decoys drawn over the whole dataset, and the manifest's rows.

Both read the dataset through its format's `iter_batches` (metadata only for features; image bytes too for the
manifest when the format carries them, so that re-downloaded copies can be matched by content digest), with the
scan's column options plus the columns these need (`SAMPLE_ID`, LAION's `hash`, the score columns).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from safeset.io.base import DatasetFormat, ShardRef
from safeset.io.columns import ColumnOptions
from safeset.io.detect import open_dataset
from safeset.manifest.decoys import DecoyDraw, DecoyOptions, select_decoys
from safeset.manifest.features import batch_features, observable_columns
from safeset.manifest.keys import (
    LAION_HASH_COLUMN,
    MANIFEST_SCHEMA,
    POSITIONAL_KEY_COLUMNS,
    SAMPLE_ID_COLUMN,
    batch_keys,
)

BATCH_ROWS = 65536
#: Private record of which withheld rows are decoys, beside `removed.parquet` (read by `audit-roadmap`).
WITHHELD_NAME = "withheld.parquet"


def column_names(fmt: DatasetFormat) -> list[str]:
    """Columns of the first shard's metadata table (parquet part or webdataset sidecar); [] when it has none."""
    for shard in fmt.shards():
        for path in (shard.path, shard.path.with_suffix(".parquet")):
            if path.suffix == ".parquet" and path.is_file():
                try:
                    return list(pq.read_schema(path).names)
                except (OSError, pa.ArrowException):
                    continue
        break
    return []


def open_with_extras(root: Path, input_format: str, columns: ColumnOptions, wanted: tuple[str, ...]) -> DatasetFormat:
    """The dataset opened to also read whichever of `wanted` its metadata has."""
    plain = open_dataset(root, input_format, columns)
    names = column_names(plain)
    extra = tuple(dict.fromkeys((*columns.extra_cols, *(c for c in wanted if c in names))))
    if extra == columns.extra_cols:
        return plain
    return open_dataset(root, input_format, dataclasses.replace(columns, extra_cols=extra))


@dataclass
class DecoyPlan:
    rows_by_shard: dict[str, list[int]]
    draw: DecoyDraw
    summary: dict[str, Any]
    withheld: pa.Table  # shard, row, decoy + features of every withheld sensitive row and decoy (private)


def plan_decoys(
    root: Path,
    input_format: str,
    columns: ColumnOptions,
    sensitive: dict[str, set[int]],
    excluded: dict[str, set[int]],
    shards: list[ShardRef],
    options: DecoyOptions,
    max_member_bytes: int | None = None,
) -> DecoyPlan:
    """Decoys for the `sensitive` rows (true removals), drawn from rows neither sensitive nor `excluded` (already
    withheld for other reasons, or in a failed shard), matched on what a diff-reader can observe."""
    probe = open_dataset(root, input_format, columns)
    fmt = open_with_extras(root, input_format, columns, observable_columns(column_names(probe)))
    fmt.read_captions = True
    if max_member_bytes is not None:
        fmt.max_member_bytes = max_member_bytes
    shard_ids: list[str] = []
    shard_rows: list[np.ndarray] = []
    parts: list[pa.Table] = []
    feature_columns = observable_columns(list(fmt.columns.extra_cols))
    wanted = {s.id for s in shards}
    for shard in fmt.shards():
        if shard.id not in wanted:
            continue
        for batch in fmt.iter_batches(shard, BATCH_ROWS, read_images=False):
            rows, features = batch_features(batch, feature_columns)
            shard_ids.extend([shard.id] * len(rows))
            shard_rows.append(rows)
            parts.append(features)
    if not parts:
        empty = DecoyDraw(np.zeros(0, dtype=bool), "none", 0, 0.0)
        return DecoyPlan({}, empty, empty.summary(options.roadmap_bound, 0), pa.table({}))
    features = pa.concat_tables(parts, promote_options="permissive")
    rows = np.concatenate(shard_rows)
    shard_array = np.array(shard_ids, dtype=object)
    true_mask = np.zeros(len(rows), dtype=bool)
    blocked = np.zeros(len(rows), dtype=bool)
    for shard_id in set(shard_ids):
        here = shard_array == shard_id
        if sensitive.get(shard_id):
            true_mask[here] = np.isin(rows[here], np.fromiter(sensitive[shard_id], dtype=np.int64))
        if excluded.get(shard_id):
            blocked[here] = np.isin(rows[here], np.fromiter(excluded[shard_id], dtype=np.int64))
    draw = select_decoys(features, true_mask, ~true_mask & ~blocked, options)
    by_shard: dict[str, list[int]] = {}
    for i in np.flatnonzero(draw.decoys):
        by_shard.setdefault(shard_array[i], []).append(int(rows[i]))
    withheld_mask = draw.decoys | true_mask
    withheld = features.filter(pa.array(withheld_mask))
    withheld = withheld.add_column(0, "decoy", pa.array(draw.decoys[withheld_mask]))
    withheld = withheld.add_column(0, "row", pa.array(rows[withheld_mask], type=pa.int64()))
    withheld = withheld.add_column(0, "shard", pa.array(shard_array[withheld_mask].tolist(), type=pa.string()))
    return DecoyPlan(by_shard, draw, draw.summary(options.roadmap_bound, int(true_mask.sum())), withheld)


def manifest_table(
    root: Path,
    input_format: str,
    columns: ColumnOptions,
    withheld: dict[str, set[int]],
    max_member_bytes: int | None = None,
) -> tuple[pa.Table, str | None]:
    """Every key of every withheld row (one entry per image of a multi-image sample); and the key column's name."""
    fmt = open_with_extras(root, input_format, columns, (SAMPLE_ID_COLUMN, LAION_HASH_COLUMN))
    fmt.read_captions = True
    if max_member_bytes is not None:
        fmt.max_member_bytes = max_member_bytes
    offer = fmt.check()
    cmap = offer.get("columns")
    key_column = getattr(cmap, "key", None)
    read_images = bool(offer.get("has_images"))
    parts: list[pa.Table] = []
    for shard in fmt.shards():
        wanted = withheld.get(shard.id)
        if not wanted:
            continue
        wanted_rows = np.fromiter(wanted, dtype=np.int64)
        for batch in fmt.iter_batches(shard, BATCH_ROWS, read_images=read_images):
            take = np.flatnonzero(np.isin(batch.rows, wanted_rows))
            if len(take) == 0:
                continue
            keys = batch_keys(batch, key_column, trust_key=True)
            indices = pa.array(take, type=pa.int64())
            parts.append(
                pa.table(
                    {
                        f.name: keys[f.name].take(indices).cast(f.type)
                        if f.name in keys
                        else pa.nulls(len(take), f.type)
                        for f in MANIFEST_SCHEMA
                    },
                    schema=MANIFEST_SCHEMA,
                )
            )
    table = pa.concat_tables(parts) if parts else MANIFEST_SCHEMA.empty_table()
    if key_column is None:
        table = table.set_column(0, "dataset_key", pa.nulls(table.num_rows, pa.string()))
    return table, key_column


def key_is_stable(key_column: str | None) -> bool:
    return key_column is not None and key_column not in POSITIONAL_KEY_COLUMNS
