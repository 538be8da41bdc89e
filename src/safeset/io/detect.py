"""Recognise a dataset's format from what is on disk; `--input-format` overrides."""

from __future__ import annotations

from pathlib import Path

from safeset.errors import InputError
from safeset.io.base import DatasetFormat
from safeset.io.columns import ColumnOptions
from safeset.io.folder import ImageFolder
from safeset.io.laion import LaionEmbeddingDataset, is_laion_layout
from safeset.io.parquet import ParquetDataset
from safeset.io.webdataset import IMAGE_EXTENSIONS, WebDatasetShards

FORMATS: dict[str, type[DatasetFormat]] = {
    ParquetDataset.name: ParquetDataset,
    WebDatasetShards.name: WebDatasetShards,
    ImageFolder.name: ImageFolder,
    LaionEmbeddingDataset.name: LaionEmbeddingDataset,
}


def detect_format(root: Path) -> str:
    if not root.exists():
        raise InputError("dataset path does not exist", root)
    if root.is_file():
        if root.suffix == ".parquet":
            return ParquetDataset.name
        if root.suffix == ".tar":
            return WebDatasetShards.name
        raise InputError("cannot tell the format of this file; pass --input-format", root)
    if is_laion_layout(root):
        return LaionEmbeddingDataset.name  # metadata/ + img_emb/: LAION's embedding layout
    if any(root.rglob("*.tar")):
        return WebDatasetShards.name
    if any(root.rglob("*.parquet")):
        return ParquetDataset.name
    if any(p.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS for p in root.rglob("*")):
        return ImageFolder.name
    raise InputError("no .tar shards, .parquet files or images found", root)


def open_dataset(root: Path, input_format: str = "auto", columns: ColumnOptions | None = None) -> DatasetFormat:
    name = detect_format(root) if input_format == "auto" else input_format
    if name not in FORMATS:
        raise InputError(f"unknown input format {name!r}; choose from auto, {', '.join(FORMATS)}")
    return FORMATS[name](root, columns)
