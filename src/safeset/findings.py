"""The findings and errors tables every stage writes, and a builder that appends rows column-wise."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from safeset.signals.urls import host_of, registrable_domain

FINDINGS_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("shard", pa.string()),
        ("row", pa.int64()),
        ("detector", pa.string()),
        ("bank", pa.string()),
        ("evidence", pa.string()),
        ("action", pa.string()),
        ("domain", pa.string()),  # registrable domain of the row's URL: which sites host the matches
    ]
)
ERRORS_SCHEMA = pa.schema([("key", pa.string()), ("shard", pa.string()), ("row", pa.int64()), ("reason", pa.string())])


class TableBuilder:
    """Column lists for one schema; cheap to extend per batch, turned into a sorted Arrow table at the end."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.columns: dict[str, list[Any]] = {name: [] for name in schema.names}

    def extend(self, **values: list[Any]) -> None:
        lengths = {len(v) for v in values.values()}
        if len(lengths) != 1 or set(values) != set(self.schema.names):
            raise ValueError(f"columns {sorted(values)} of lengths {lengths} do not fill {self.schema.names}")
        for name, column in values.items():
            self.columns[name].extend(column)

    def __len__(self) -> int:
        return len(self.columns[self.schema.names[0]])

    def table(self, unique: bool = False) -> pa.Table:
        """The rows sorted by shard, row and content; `unique` drops exact repeats (the entries of a multi-image
        sample share the row's vector and columns, so a detector on those reports the row once per entry)."""
        table = pa.table(self.columns, schema=self.schema)
        if unique and table.num_rows > 1:
            table = table.group_by(self.schema.names, use_threads=False).aggregate([]).select(self.schema.names)
        order = [("shard", "ascending"), ("row", "ascending")] + [
            (n, "ascending") for n in ("bank", "detector", "evidence", "reason") if n in self.schema.names
        ]
        return table.sort_by(order)


class FindingsBuilder(TableBuilder):
    """The one place finding rows are made: every pass adds its hits here, and the row's domain always comes
    from its URL the same way (reports by site must not depend on which pass found the row)."""

    def __init__(self) -> None:
        super().__init__(FINDINGS_SCHEMA)

    def add(
        self,
        *,
        shard: str,
        rows: Sequence[int],
        keys: Sequence[str],
        detector: str,
        bank: str | Sequence[str],
        evidence: Sequence[str],
        action: str | Sequence[str],
        urls: Sequence[str | None] | None,
    ) -> None:
        n = len(rows)
        self.extend(
            key=list(keys),
            shard=[shard] * n,
            row=[int(r) for r in rows],
            detector=[detector] * n,
            bank=[bank] * n if isinstance(bank, str) else list(bank),
            evidence=list(evidence),
            action=[action] * n if isinstance(action, str) else list(action),
            domain=[registrable_domain(host_of(u)) if u else None for u in urls] if urls is not None else [None] * n,
        )


def split_by_shard(table: pa.Table) -> dict[str, pa.Table]:
    """Rows of a findings or errors table grouped by shard, in one sort instead of one scan per shard
    (a LAION-size run has hundreds of thousands of shards). Order within a shard is kept."""
    if table.num_rows == 0:
        return {}
    import numpy as np
    import pyarrow.compute as pc

    order = pc.sort_indices(table, sort_keys=[("shard", "ascending")])  # stable
    ordered = table.take(order)
    shards = np.asarray(ordered["shard"].to_numpy(zero_copy_only=False), dtype=object)
    starts = np.flatnonzero(np.r_[True, shards[1:] != shards[:-1]])
    ends = np.r_[starts[1:], len(shards)]
    return {str(shards[s]): ordered.slice(int(s), int(e - s)) for s, e in zip(starts, ends, strict=True)}
