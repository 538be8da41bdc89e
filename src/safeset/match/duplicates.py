"""Propagation to copies: the same image repeats under many URLs, so every row whose image bytes equal a
flagged row's is flagged too (`detector=duplicate`, evidence names the row it copies)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from safeset.findings import FINDINGS_SCHEMA, TableBuilder
from safeset.match.expand import Expander, ExpansionContext, register_expander
from safeset.policy.actions import ACTION_RANK, Action


@register_expander
class DuplicateExpander(Expander):
    name = "duplicate"
    row_signals = ("image_md5",)

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)

    def needs_images(self) -> bool:
        return True

    def expand(self, context: ExpansionContext) -> pa.Table:
        seeds = context.seeds
        out = TableBuilder(FINDINGS_SCHEMA)
        if seeds.num_rows == 0:
            return out.table()
        # Strongest action and one representative finding per seed row.
        seed_action: dict[tuple[str, int], tuple[Action, str, str]] = {}
        for shard, row, key, action, bank in zip(
            *(seeds[c].to_pylist() for c in ("shard", "row", "key", "action", "bank")), strict=True
        ):
            current = seed_action.get((shard, row))
            if current is None or ACTION_RANK[Action(action)] > ACTION_RANK[current[0]]:
                seed_action[(shard, row)] = (Action(action), key, bank)
        signals = {shard.id: context.row_signals(shard) for shard in context.shards}
        # md5 of each seed's image -> (seed key, action, bank); the first seed in shard order wins.
        by_md5: dict[bytes, tuple[str, Action, str]] = {}
        for shard in context.shards:
            table = signals[shard.id]
            mine = {row: v for (s, row), v in seed_action.items() if s == shard.id}
            if not mine or table.num_rows == 0:
                continue
            picked = table.filter(pc.is_in(table["row"], value_set=pa.array(sorted(mine), type=pa.int64())))
            for row, digest in zip(picked["row"].to_pylist(), picked["image_md5"].to_pylist(), strict=True):
                if digest is not None and digest not in by_md5:
                    action, key, bank = mine[row]
                    by_md5[digest] = (key, action, bank)
        if not by_md5:
            return out.table()
        wanted = pa.array(list(by_md5), type=pa.binary(16))
        for shard in context.shards:
            table = signals[shard.id]
            if table.num_rows == 0:
                continue
            hits = table.filter(pc.fill_null(pc.is_in(table["image_md5"], value_set=wanted), False))
            rows = hits["row"].to_pylist()
            keep = [i for i, row in enumerate(rows) if (shard.id, row) not in seed_action]
            if not keep:
                continue
            digests = [hits["image_md5"][i].as_py() for i in keep]
            origin = [by_md5[d] for d in digests]
            n = len(keep)
            out.extend(
                key=[hits["key"][i].as_py() for i in keep],
                shard=[shard.id] * n,
                row=[rows[i] for i in keep],
                detector=["duplicate"] * n,
                bank=[o[2] for o in origin],
                evidence=[f"copy of {o[0]} (same md5 {bytes(d).hex()})" for o, d in zip(origin, digests, strict=True)],
                action=[o[1].value for o in origin],
                domain=[None] * n,
            )
        return out.table()
