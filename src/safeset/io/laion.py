"""LAION's embedding layout: `metadata/metadata_NNNN.parquet` with `img_emb/img_emb_NNNN.npy` (and often
`text_emb/text_emb_NNNN.npy`) row-aligned beside it, as clip-retrieval writes and LAION-5B distributes.

The shards are the metadata parts. A cleaned release keeps the layout: each part's metadata and every
embedding array of the same number lose the same rows, so the arrays stay aligned and the vectors of
removed rows leave the release with them.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa

from safeset.errors import InputError
from safeset.fsutil import atomic_path
from safeset.io.base import ShardRef, ShardWriteResult
from safeset.io.embeddings import NpyVectors, shard_number
from safeset.io.location import relative_id
from safeset.io.parquet import ParquetDataset

METADATA_FOLDER = "metadata"
IMAGE_EMBEDDING_FOLDER = "img_emb"
EMBEDDING_FOLDERS = ("img_emb", "text_emb")
COPY_ROWS = 65536  # rows copied at a time when writing a cleaned array: bounded memory


def is_laion_layout(root: Path) -> bool:
    return root.is_dir() and (root / METADATA_FOLDER).is_dir() and (root / IMAGE_EMBEDDING_FOLDER).is_dir()


class LaionEmbeddingDataset(ParquetDataset):
    name: ClassVar[str] = "laion-embeddings"

    @property
    def embedding_folder(self) -> Path:  # a UPath for a remote dataset
        return self.root / IMAGE_EMBEDDING_FOLDER

    def shards(self) -> list[ShardRef]:
        files = sorted(p for p in (self.root / METADATA_FOLDER).glob("*.parquet") if p.is_file())
        return [ShardRef(relative_id(p, self.root), p) for p in files]

    def check(self) -> dict[str, object]:
        if not self.shards():
            raise InputError(f"no .parquet files in {METADATA_FOLDER}/", self.root)
        return super().check()

    def embedding_parts(self, shard: ShardRef) -> list[Path]:
        """The embedding arrays row-aligned with this metadata part (one per embedding folder present)."""
        number = shard_number(shard.path)
        parts = []
        for folder in EMBEDDING_FOLDERS:
            source_dir = self.root / folder
            if source_dir.is_dir():
                matches = [p for p in sorted(source_dir.glob("*.npy")) if shard_number(p) == number]
                parts.extend(matches[:1])
        return parts

    def shard_files(self, shard: ShardRef) -> list[Path]:
        return [shard.path, *self.embedding_parts(shard)]

    def write_shard(
        self, shard: ShardRef, drop_rows: np.ndarray, out_root: Path, members: pa.Table | None = None
    ) -> ShardWriteResult:
        result = super().write_shard(shard, drop_rows, out_root)
        drop = np.unique(np.asarray(drop_rows, dtype=np.int64))
        for part in self.embedding_parts(shard):
            written = _write_filtered_npy(part, drop, self.relative_out(shard, out_root, part))
            if written != result.rows_written:
                raise InputError(
                    f"{written} rows written from the embeddings but {result.rows_written} from {shard.path}", part
                )
            result.files.append(self.relative_name(part))
        return result


def _write_filtered_npy(source: Path, drop: np.ndarray, target: Path) -> int:
    """Copy an N × d array without the dropped rows, streaming so memory stays bounded."""
    vectors = NpyVectors(source)
    keep = np.ones(vectors.count, dtype=bool)
    keep[drop[drop < vectors.count]] = False
    kept = int(keep.sum())
    with atomic_path(target) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=vectors.dtype, shape=(kept, vectors.dim))
        position = 0
        for block in vectors.blocks(COPY_ROWS):
            chosen = block.vectors[keep[block.rows[0] : block.rows[-1] + 1]]
            out[position : position + len(chosen)] = chosen
            position += len(chosen)
        out.flush()
        del out
    return kept
