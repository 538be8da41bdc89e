"""A planted LAION-style parquet dataset: benign synthetic rows, a few of them listed in a URL bank as "known"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from safeset.banks.store import BankStore
from safeset.manifest.keys import laion_hash

ROWS_PER_PART = 400
PARTS = 3


def planted_table(rows: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    urls = [f"https://img{i % 40}.example.org/photos/{i}.jpg" for i in range(rows)]
    texts = [f"a photo number {i} of a {('cat', 'boat', 'tree', 'house')[i % 4]}" for i in range(rows)]
    return pa.table(
        {
            "SAMPLE_ID": pa.array(np.arange(rows, dtype=np.int64) * 3 + 1000),
            "URL": urls,
            "TEXT": texts,
            "WIDTH": pa.array(rng.integers(200, 1200, rows), type=pa.int32()),
            "HEIGHT": pa.array(rng.integers(200, 1200, rows), type=pa.int32()),
            "punsafe": pa.array(rng.beta(1, 6, rows), type=pa.float32()),
            "pwatermark": pa.array(rng.beta(1, 6, rows), type=pa.float32()),
            "hash": pa.array([laion_hash(u, t) for u, t in zip(urls, texts, strict=True)], type=pa.int64()),
        }
    )


def write_planted(root: Path, tmp: Path, planted_every: int = 37) -> tuple[Path, Path, pa.Table, set[str]]:
    """(dataset, banks, the whole table, planted URLs): parts of ROWS_PER_PART rows; every `planted_every`-th row's
    URL goes into a `url` bank (action remove)."""
    root.mkdir(parents=True)
    table = planted_table(ROWS_PER_PART * PARTS)
    for part in range(PARTS):
        pq.write_table(table.slice(part * ROWS_PER_PART, ROWS_PER_PART), root / f"part-{part:05d}.parquet")
    planted = set(table["URL"].to_pylist()[::planted_every])
    source = tmp / "planted-urls.txt"
    source.write_text("".join(u + "\n" for u in sorted(planted)))
    banks = tmp / "banks"
    BankStore(banks).add("planted", "url", source, action="remove")
    return root, banks, table, planted
