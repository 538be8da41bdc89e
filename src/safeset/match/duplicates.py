"""Propagation to copies: the same image repeats under many URLs, so every row whose image bytes equal a
flagged row's, or whose PDQ hash is within the PDQ radius of a flagged row's, is flagged too
(`detector=duplicate`, evidence names the row it copies and, for PDQ, the distance).

PDQ propagation (option `duplicate_pdq`, on by default) reaches re-encoded, resized and lightly edited
copies. It is one step from the seeds, never transitive: a copy of a copy is only flagged when it is itself
within the radius of a seed."""

from __future__ import annotations

from typing import Any

import numpy as np
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
        from safeset.match.pdq import option

        self.pdq = str(options.get("duplicate_pdq", "true")).lower() in ("1", "true", "yes", "on")
        self.pdq_radius = int(option(options, "pdq_radius"))
        if self.pdq:
            self.row_signals = ("image_md5", "image_pdq")  # type: ignore[misc]

    def needs_images(self) -> bool:
        return True

    def expand(self, context: ExpansionContext) -> pa.Table:
        seeds = context.seeds
        out = TableBuilder(FINDINGS_SCHEMA)
        if seeds.num_rows == 0:
            return out.table()
        # Strongest action and one representative finding per seed row.
        seed_action: dict[tuple[str, int], tuple[Action, str, str]] = {}
        opted_out = {
            (shard, row)
            for shard, row, action in zip(*(seeds[c].to_pylist() for c in ("shard", "row", "action")), strict=True)
            if Action(action) == Action.EXCLUDE
        }
        for shard, row, key, action, bank in zip(
            *(seeds[c].to_pylist() for c in ("shard", "row", "key", "action", "bank")), strict=True
        ):
            if Action(action) == Action.EXCLUDE:
                continue  # an opt-out covers a site's rows, not the picture wherever it appears
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
        flagged = set(seed_action) | opted_out
        if by_md5:
            self._propagate_md5(context, signals, by_md5, flagged, out)
        if self.pdq:
            self._propagate_pdq(context, signals, seed_action, flagged, out)
        return out.table()

    def _propagate_md5(
        self,
        context: ExpansionContext,
        signals: dict[str, pa.Table],
        by_md5: dict[bytes, tuple[str, Action, str]],
        flagged: set[tuple[str, int]],
        out: TableBuilder,
    ) -> None:
        wanted = pa.array(list(by_md5), type=pa.binary(16))
        for shard in context.shards:
            table = signals[shard.id]
            if table.num_rows == 0:
                continue
            hits = table.filter(pc.fill_null(pc.is_in(table["image_md5"], value_set=wanted), False))
            rows = hits["row"].to_pylist()
            keep = [i for i, row in enumerate(rows) if (shard.id, row) not in flagged]
            if not keep:
                continue
            flagged.update((shard.id, rows[i]) for i in keep)
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

    def _propagate_pdq(
        self,
        context: ExpansionContext,
        signals: dict[str, pa.Table],
        seed_action: dict[tuple[str, int], tuple[Action, str, str]],
        flagged: set[tuple[str, int]],
        out: TableBuilder,
    ) -> None:
        from safeset.match.mih import MultiIndexHash

        seed_hashes: list[bytes] = []
        seed_info: list[tuple[str, Action, str]] = []
        for shard in context.shards:
            table = signals[shard.id]
            if "image_pdq" not in table.column_names or table.num_rows == 0:
                continue
            for row, digest in zip(table["row"].to_pylist(), table["image_pdq"].to_pylist(), strict=True):
                if digest is not None and (shard.id, row) in seed_action:
                    action, key, bank = seed_action[(shard.id, row)]
                    seed_hashes.append(digest)
                    seed_info.append((key, action, bank))
        if not seed_hashes:
            return
        index = MultiIndexHash.build(np.frombuffer(b"".join(seed_hashes), np.uint8).reshape(-1, 32), self.pdq_radius)
        for shard in context.shards:
            table = signals[shard.id]
            if "image_pdq" not in table.column_names or table.num_rows == 0:
                continue
            present = table.filter(pc.is_valid(table["image_pdq"]))
            if present.num_rows == 0:
                continue
            queries = np.frombuffer(b"".join(present["image_pdq"].to_pylist()), np.uint8).reshape(-1, 32)
            q, b, d = index.search(queries, self.pdq_radius)
            # The closest seed for each row (search results are sorted by query, then seed).
            best: dict[int, tuple[int, int]] = {}
            for qi, bi, di in zip(q.tolist(), b.tolist(), d.tolist(), strict=True):
                if qi not in best or di < best[qi][1]:
                    best[qi] = (bi, di)
            rows, keys = present["row"].to_pylist(), present["key"].to_pylist()
            chosen = [(qi, bi, di) for qi, (bi, di) in sorted(best.items()) if (shard.id, rows[qi]) not in flagged]
            if not chosen:
                continue
            flagged.update((shard.id, rows[qi]) for qi, _, _ in chosen)
            n = len(chosen)
            out.extend(
                key=[keys[qi] for qi, _, _ in chosen],
                shard=[shard.id] * n,
                row=[rows[qi] for qi, _, _ in chosen],
                detector=["duplicate"] * n,
                bank=[seed_info[bi][2] for _, bi, _ in chosen],
                evidence=[f"copy of {seed_info[bi][0]} (pdq distance {di})" for _, bi, di in chosen],
                action=[seed_info[bi][1].value for _, bi, _ in chosen],
                domain=[None] * n,
            )
