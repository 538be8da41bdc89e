"""Benign synthetic embedding data: LAION-layout folders and vectors at known cosines to seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tests.conftest import laion_table


def unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def at_cosine(seed: np.ndarray, cosine: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector whose cosine to `seed` is exactly `cosine` (before storage rounding)."""
    s = unit(seed)
    other = rng.standard_normal(len(s))
    other -= other.dot(s) * s
    other = unit(other)
    return cosine * s + np.sqrt(max(0.0, 1 - cosine * cosine)) * other


def exact_cosines(seeds: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """Ground truth from the stored values: float64 cosines, seeds × rows."""
    return unit(seeds) @ unit(stored.astype(np.float64)).T


def write_laion_layout(root: Path, parts: list[np.ndarray], offset: int = 0, text_emb: bool = True) -> Path:
    """`metadata/metadata_NNNN.parquet` + `img_emb/img_emb_NNNN.npy` (+ text_emb), LAION-5B style."""
    (root / "metadata").mkdir(parents=True)
    (root / "img_emb").mkdir()
    if text_emb:
        (root / "text_emb").mkdir()
    start = offset
    for number, vectors in enumerate(parts):
        table = laion_table(len(vectors), offset=start)
        table = table.append_column("key", pa.array([f"{number:05d}{i:04d}" for i in range(len(vectors))]))
        pq.write_table(table, root / "metadata" / f"metadata_{number:04d}.parquet", row_group_size=64)
        np.save(root / "img_emb" / f"img_emb_{number:04d}.npy", vectors.astype(np.float16))
        if text_emb:
            np.save(root / "text_emb" / f"text_emb_{number:04d}.npy", vectors[:, ::-1].astype(np.float16))
        start += len(vectors)
    return root


def random_unit(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    return unit(rng.standard_normal((n, dim)))
