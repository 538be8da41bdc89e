"""Recognise a dataset's format from what is on disk (or on a remote filesystem); `--input-format` overrides."""

from __future__ import annotations

from typing import Any

from safeset.errors import InputError
from safeset.io.base import DatasetFormat
from safeset.io.columns import ColumnOptions
from safeset.io.folder import ImageFolder
from safeset.io.laion import LaionEmbeddingDataset, is_laion_layout
from safeset.io.location import (
    DatasetLocation,
    LocationSpec,
    list_files,
    listing,
    remote_call,
    resolve_location,
)
from safeset.io.parquet import ParquetDataset
from safeset.io.webdataset import IMAGE_EXTENSIONS, WebDatasetShards

FORMATS: dict[str, type[DatasetFormat]] = {
    ParquetDataset.name: ParquetDataset,
    WebDatasetShards.name: WebDatasetShards,
    ImageFolder.name: ImageFolder,
    LaionEmbeddingDataset.name: LaionEmbeddingDataset,
}


def detect_format(location: DatasetLocation | Any) -> str:
    """The format of a location (a `DatasetLocation`, or a local path as before)."""
    if not isinstance(location, DatasetLocation):
        location = resolve_location(location)
    if location.files is not None:
        return _format_of_files(location.files, location.describe())
    root = location.root
    if location.local:
        return _detect_local(root)
    return remote_call(root, "cannot be read", _detect_remote, root)


def _format_of_files(files: tuple[Any, ...], where: str) -> str:
    names = [f.name for f in files]
    if any(n.endswith(".tar") for n in names):
        return WebDatasetShards.name
    if any(n.endswith(".parquet") for n in names):
        return ParquetDataset.name
    if any(n.rpartition(".")[2].lower() in IMAGE_EXTENSIONS for n in names):
        raise InputError("image folders are scanned by giving the folder, not globs or several paths", where)
    raise InputError("no .tar shards or .parquet files among the files given", where)


def _detect_local(root: Any) -> str:
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
    with listing(root):
        if any(root.rglob("*.tar")):
            return WebDatasetShards.name
        if any(root.rglob("*.parquet")):
            return ParquetDataset.name
        if any(p.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS for p in root.rglob("*")):
            return ImageFolder.name
    raise InputError("no .tar shards, .parquet files or images found", root)


def _detect_remote(root: Any) -> str:
    """As `_detect_local`, from one recursive listing (each existence check is a request on an object store)."""
    if root.is_file():
        if root.name.endswith(".parquet"):
            return ParquetDataset.name
        if root.name.endswith(".tar"):
            return WebDatasetShards.name
        raise InputError("cannot tell the format of this file; pass --input-format", root)
    if not root.is_dir():
        raise InputError("dataset path does not exist", root)
    if is_laion_layout(root):
        return LaionEmbeddingDataset.name
    files = tuple(list_files(root, None))
    if not files:
        raise InputError("the folder holds no file", root)
    return _format_of_files(files, str(root))


def open_dataset(
    location: LocationSpec | DatasetLocation, input_format: str = "auto", columns: ColumnOptions | None = None
) -> DatasetFormat:
    """Open a dataset: a local path (as always), a glob, a URL of an fsspec filesystem, or several of those."""
    where = location if isinstance(location, DatasetLocation) else resolve_location(location)
    name = detect_format(where) if input_format == "auto" else input_format
    if name not in FORMATS:
        raise InputError(f"unknown input format {name!r}; choose from auto, {', '.join(FORMATS)}")
    if name == ImageFolder.name and (where.files is not None or not where.local):
        raise InputError(
            "image folders are read from one local folder (not globs, several paths or URLs)", where.describe()
        )
    dataset = FORMATS[name](where.root, columns, where.files)
    dataset.location = where
    return dataset
