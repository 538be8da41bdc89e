"""A plain folder of images, optionally with sidecar captions (`NAME.txt`) and metadata (`NAME.json`).

Each directory that holds images is one shard (img2dataset's `files` output puts one shard per
directory); rows are its images in name order, keyed by their path relative to the dataset root.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa

from safeset.errors import ColumnError, InputError
from safeset.io.base import DatasetFormat, ShardRef, ShardWriteResult
from safeset.io.batch import RowBatch
from safeset.io.webdataset import IMAGE_EXTENSIONS


def _images_in(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS)


class ImageFolder(DatasetFormat):
    name: ClassVar[str] = "folder"

    def shards(self) -> list[ShardRef]:
        directories = [self.root, *sorted(p for p in self.root.rglob("*") if p.is_dir())]
        shards = []
        for directory in directories:
            if _images_in(directory):
                rel = directory.relative_to(self.root).as_posix()
                shards.append(ShardRef(rel if rel != "." else ".", directory))
        return shards

    def check(self) -> dict[str, object]:
        if not self.shards():
            raise InputError("no images found", self.root)
        if self.columns.extra_cols:
            raise ColumnError(f"{self.root} (image folder)", self.columns.extra_cols[0], [])
        return {"has_urls": True, "has_captions": True, "has_images": True, "metadata_hashes": []}

    def known_row_count(self, shard: ShardRef) -> int | None:
        return len(_images_in(shard.path))

    def iter_batches(self, shard: ShardRef, batch_rows: int, read_images: bool) -> Iterator[RowBatch]:
        images = _images_in(shard.path)
        for lo in range(0, len(images), batch_rows):
            part = images[lo : lo + batch_rows]
            keys, urls, captions, blobs, errors = [], [], [], [], []
            for path in part:
                keys.append(path.relative_to(self.root).with_suffix("").as_posix())
                caption_file, meta_file = path.with_suffix(".txt"), path.with_suffix(".json")
                captions.append(caption_file.read_text("utf-8", "replace") if caption_file.exists() else None)
                url, error = None, None
                if meta_file.exists():
                    try:
                        meta = json.loads(meta_file.read_text("utf-8"))
                        url = meta.get("url") if isinstance(meta, dict) else None
                    except (OSError, json.JSONDecodeError) as exc:
                        error = f"{meta_file.name}: unreadable JSON ({exc})"
                urls.append(url if isinstance(url, str) else None)
                blob = None
                if read_images:
                    try:
                        blob = path.read_bytes()
                    except OSError as exc:
                        error = f"{path.name}: unreadable ({exc})"
                blobs.append(blob)
                errors.append(error)
            yield RowBatch(
                shard=shard.id,
                rows=np.arange(lo, lo + len(part), dtype=np.int64),
                keys=pa.array(keys, type=pa.string()),
                urls=pa.array(urls, type=pa.string()),
                captions=pa.array(captions, type=pa.string()),
                images=pa.array(blobs, type=pa.binary()) if read_images else None,
                read_errors=pa.array(errors, type=pa.string()),
            )

    def write_shard(self, shard: ShardRef, drop_rows: np.ndarray, out_root: Path) -> ShardWriteResult:
        drop = set(int(r) for r in drop_rows)
        files = []
        written = 0
        for row, path in enumerate(_images_in(shard.path)):
            if row in drop:
                continue  # dropped images and their sidecars are never copied
            for source in (path, path.with_suffix(".txt"), path.with_suffix(".json")):
                if source.exists():
                    target = out_root / source.relative_to(self.root)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, target)
                    files.append(target.relative_to(out_root).as_posix())
            written += 1
        return ShardWriteResult(rows_written=written, files=files)
