"""Shared fixtures: small benign datasets in each format and stand-in banks built from them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from safeset.banks.store import BankStore
from safeset.demo import DemoRow, demo_rows, write_webdataset


@pytest.fixture
def demo_shards() -> list[list[DemoRow]]:
    return demo_rows(shards=3, rows_per_shard=12)


@pytest.fixture
def webdataset_dir(tmp_path: Path, demo_shards: list[list[DemoRow]]) -> Path:
    root = tmp_path / "wds"
    write_webdataset(root, demo_shards)
    return root


def image_rows(shards: list[list[DemoRow]]) -> list[DemoRow]:
    return [r for rows in shards for r in rows if r.image is not None]


def write_list(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.fixture
def md5_bank(tmp_path: Path, demo_shards: list[list[DemoRow]]) -> tuple[Path, list[DemoRow]]:
    """A bank holding the MD5s of three demo images (a stand-in for a hotline list)."""
    known = image_rows(demo_shards)[::7][:3]
    banks = tmp_path / "banks"
    source = write_list(tmp_path / "md5.txt", [hashlib.md5(r.image or b"").hexdigest() for r in known])
    BankStore(banks).add("known", "md5", source)
    return banks, known


def laion_table(n: int, offset: int = 0) -> pa.Table:
    """Rows shaped like LAION-5B 'joined' metadata, with an md5 column as in the laion2B-*-md5 sets."""
    return pa.table(
        {
            "URL": [f"https://img{(i + offset) % 5}.example.org/p/{i + offset}.jpg" for i in range(n)],
            "TEXT": [f"caption number {i + offset}" for i in range(n)],
            "WIDTH": pa.array([256 + i % 7 for i in range(n)], type=pa.int32()),
            "HEIGHT": pa.array([192 + i % 5 for i in range(n)], type=pa.int32()),
            "similarity": [0.3 + (i % 10) / 100 for i in range(n)],
            "hash": pa.array([(i + offset) * 7919 - 10**12 for i in range(n)], type=pa.int64()),
            "punsafe": pa.array([(i % 100) / 100 for i in range(n)], type=pa.float32()),
            "pwatermark": pa.array([(i % 50) / 50 for i in range(n)], type=pa.float32()),
            "md5": [hashlib.md5(f"image-{i + offset}".encode()).hexdigest() for i in range(n)],
        }
    )


@pytest.fixture
def laion_dir(tmp_path: Path) -> Path:
    root = tmp_path / "laion"
    root.mkdir()
    for part in range(2):
        pq.write_table(laion_table(50, offset=part * 50), root / f"part-{part:05d}.parquet", row_group_size=20)
    return root
