"""Propagation to copies: the same image repeats under many URLs, so every row whose image bytes equal a
flagged row's, or whose PDQ hash is within the PDQ radius of a flagged row's, is flagged too
(`detector=duplicate`, evidence names the row it copies and, for PDQ, the distance).

PDQ propagation (option `duplicate_pdq`, on by default) reaches re-encoded, resized and lightly edited
copies. It is one step from the seeds, never transitive: a copy of a copy is only flagged when it is itself
within the radius of a seed."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from safeset.exec.base import Task
from safeset.expansion.base import Expander, ExpansionContext, read_row_signals, register_expander
from safeset.findings import FindingsBuilder
from safeset.io.base import ShardRef
from safeset.policy.actions import ACTION_RANK, Action


@register_expander
class DuplicateExpander(Expander):
    name = "duplicate"
    row_signals = ("image_md5", "url")

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.pdq = bool(config.duplicate.pdq)
        self.pdq_radius = int(config.pdq.radius)
        if self.pdq:
            self.row_signals = ("image_md5", "image_pdq", "url")  # type: ignore[misc]

    def needs_images(self) -> bool:
        return True

    def expand(self, context: ExpansionContext) -> pa.Table:
        seeds = context.seeds
        if seeds.num_rows == 0:
            return FindingsBuilder().table()
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
        # The seeds' own signals, read here (only the shards holding seeds), in shard order: the md5 of each seed's
        # image -> (seed key, action, bank), the first seed in shard order winning; and the seeds' PDQ hashes.
        by_md5: dict[bytes, tuple[str, Action, str]] = {}
        seed_hashes: list[bytes] = []
        seed_info: list[tuple[str, Action, str]] = []
        for shard in context.shards:
            mine = {row: v for (s, row), v in seed_action.items() if s == shard.id}
            if not mine:
                continue
            table = context.row_signals(shard)
            if table.num_rows == 0:
                continue
            picked = table.filter(pc.is_in(table["row"], value_set=pa.array(sorted(mine), type=pa.int64())))
            for row, digest in zip(picked["row"].to_pylist(), picked["image_md5"].to_pylist(), strict=True):
                if digest is not None and digest not in by_md5:
                    action, key, bank = mine[row]
                    by_md5[digest] = (key, action, bank)
            if self.pdq and "image_pdq" in picked.column_names:
                for row, digest in zip(picked["row"].to_pylist(), picked["image_pdq"].to_pylist(), strict=True):
                    if digest is not None:
                        action, key, bank = mine[row]
                        seed_hashes.append(digest)
                        seed_info.append((key, action, bank))
        flagged: dict[str, set[int]] = {}
        for shard_id, row in (*seed_action, *opted_out):
            flagged.setdefault(shard_id, set()).add(row)
        task = _CopySearch(
            run_dir=str(context.run_dir),
            by_md5=by_md5,
            seed_hashes=tuple(seed_hashes),
            seed_info=tuple(seed_info),
            pdq_radius=self.pdq_radius if self.pdq else None,
            flagged=flagged,
            round_id=uuid.uuid4().hex,
        )
        parts = context.map(task, list(context.shards))
        return pa.concat_tables([FindingsBuilder().table(), *parts])


@dataclass(frozen=True)
class _CopySearch(Task):
    """The copy search as an executor task: item = a shard, result = its `duplicate` findings. Exact copies (same
    md5) first, then PDQ copies among the rows not yet flagged, as one pass over the shard's kept signals."""

    run_dir: str
    by_md5: dict[bytes, tuple[str, Action, str]]
    seed_hashes: tuple[bytes, ...]
    seed_info: tuple[tuple[str, Action, str], ...]
    pdq_radius: int | None  # None: exact copies only
    flagged: dict[str, set[int]]  # rows already flagged per shard: seeds and opted-out rows
    round_id: str

    def cache_key(self) -> str:
        return f"copy-search-{self.round_id}"

    def open(self) -> Callable[[ShardRef], pa.Table]:
        index = None
        if self.pdq_radius is not None and self.seed_hashes:
            from safeset.kinds.pdq.index import MultiIndexHash

            hashes = np.frombuffer(b"".join(self.seed_hashes), np.uint8).reshape(-1, 32)
            index = MultiIndexHash.build(hashes, self.pdq_radius)
        wanted = pa.array(list(self.by_md5), type=pa.binary(16))

        def search_shard(shard: ShardRef) -> pa.Table:
            out = FindingsBuilder()
            table = read_row_signals(Path(self.run_dir), shard)
            if table.num_rows == 0:
                return out.table()
            flagged = set(self.flagged.get(shard.id, ()))
            if self.by_md5:
                self._exact_copies(shard, table, wanted, flagged, out)
            if index is not None and "image_pdq" in table.column_names:
                self._near_copies(shard, table, index, flagged, out)
            return out.table()

        return search_shard

    def _exact_copies(
        self, shard: ShardRef, table: pa.Table, wanted: pa.Array, flagged: set[int], out: FindingsBuilder
    ) -> None:
        hits = table.filter(pc.fill_null(pc.is_in(table["image_md5"], value_set=wanted), False))
        rows = hits["row"].to_pylist()
        keep = [i for i, row in enumerate(rows) if row not in flagged]
        if not keep:
            return
        flagged.update(rows[i] for i in keep)
        digests = [hits["image_md5"][i].as_py() for i in keep]
        origin = [self.by_md5[d] for d in digests]
        out.add(
            shard=shard.id,
            rows=[rows[i] for i in keep],
            keys=[hits["key"][i].as_py() for i in keep],
            detector="duplicate",
            bank=[o[2] for o in origin],
            evidence=[f"copy of {o[0]} (same md5 {bytes(d).hex()})" for o, d in zip(origin, digests, strict=True)],
            action=[o[1].value for o in origin],
            urls=[hits["url"][i].as_py() for i in keep] if "url" in hits.column_names else None,
        )

    def _near_copies(
        self, shard: ShardRef, table: pa.Table, index: Any, flagged: set[int], out: FindingsBuilder
    ) -> None:
        present = table.filter(pc.is_valid(table["image_pdq"]))
        if present.num_rows == 0:
            return
        queries = np.frombuffer(b"".join(present["image_pdq"].to_pylist()), np.uint8).reshape(-1, 32)
        q, b, d = index.search(queries, self.pdq_radius)
        # The closest seed for each row (search results are sorted by query, then seed).
        best: dict[int, tuple[int, int]] = {}
        for qi, bi, di in zip(q.tolist(), b.tolist(), d.tolist(), strict=True):
            if qi not in best or di < best[qi][1]:
                best[qi] = (bi, di)
        rows, keys = present["row"].to_pylist(), present["key"].to_pylist()
        urls = present["url"].to_pylist() if "url" in present.column_names else None
        chosen = [(qi, bi, di) for qi, (bi, di) in sorted(best.items()) if rows[qi] not in flagged]
        if not chosen:
            return
        flagged.update(rows[qi] for qi, _, _ in chosen)
        out.add(
            shard=shard.id,
            rows=[rows[qi] for qi, _, _ in chosen],
            keys=[keys[qi] for qi, _, _ in chosen],
            detector="duplicate",
            bank=[self.seed_info[bi][2] for _, bi, _ in chosen],
            evidence=[f"copy of {self.seed_info[bi][0]} (pdq distance {di})" for _, bi, di in chosen],
            action=[self.seed_info[bi][1].value for _, bi, _ in chosen],
            urls=[urls[qi] for qi, _, _ in chosen] if urls is not None else None,
        )
