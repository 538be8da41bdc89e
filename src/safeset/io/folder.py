"""A plain folder of images, optionally with sidecar captions (`NAME.txt`) and metadata (`NAME.json`).

Each directory that holds images is one shard (img2dataset's `files` output puts one shard per
directory); rows are its images in name order, keyed by their path relative to the dataset root.

Every file is someone else's: a sidecar may be a directory, a FIFO, not UTF-8, JSON that is not an object,
and an image may be far larger than any web image. Each such problem makes its row an errored row whose
reason names the file; nothing is read before its type and size are checked (a FIFO would block the scan,
a huge file would exhaust memory), and an unreadable directory is a failed shard, named.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa

from safeset.errors import ColumnError, InputError
from safeset.io.base import DatasetFormat, ShardRef, ShardWriteResult
from safeset.io.batch import RowBatch
from safeset.io.webdataset import IMAGE_EXTENSIONS

SIDECAR_SUFFIXES = (".txt", ".json")
#: Sidecars are a caption and a few fields; anything larger is not one, and is not read.
MAX_SIDECAR_BYTES = 16 * 1024 * 1024


class UnusableFile(ValueError):
    """A file that is present but cannot be used (with the reason, without the file name)."""


def _images_in(directory: Path) -> list[Path]:
    """Image files of one directory in name order; OSError if the directory cannot be listed."""
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS)


def _is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def _readable_within(path: Path, limit: int) -> bool:
    """Whether the scan could have read this image: a regular file of at most `limit` bytes."""
    try:
        info = path.stat()
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size <= limit


def _printable_name(name: str) -> str:
    """A file name as valid UTF-8: bytes that are not (Linux allows any) written as `\\xNN`."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(name).decode("utf-8", "backslashreplace")
    return name


def read_bounded(path: Path, limit: int) -> bytes | None:
    """The bytes of a regular file of at most `limit` bytes; None if there is no such file.

    Opened without blocking and checked on the open descriptor before anything is read, so a FIFO or device
    named like an image or sidecar cannot hang the scan, and an oversized file is refused unread.
    Raises UnusableFile (not a regular file, too large) or OSError (unreadable).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnusableFile("not a regular file")
        if info.st_size > limit:
            raise UnusableFile(f"{info.st_size} bytes, over the {limit}-byte limit; not read")
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        data = handle.read(limit + 1)
    if len(data) > limit:  # it grew since fstat
        raise UnusableFile(f"over the {limit}-byte limit; not read")
    return data


class ImageFolder(DatasetFormat):
    name: ClassVar[str] = "folder"

    def shards(self) -> list[ShardRef]:
        directories = [self.root, *sorted(p for p in self.root.rglob("*") if p.is_dir())]
        shards = []
        for directory in directories:
            try:
                holds_images = bool(_images_in(directory))
            except OSError:
                holds_images = True  # cannot tell: listed, so that the scan reports it as a failed shard
            if holds_images:
                rel = directory.relative_to(self.root).as_posix()
                shards.append(ShardRef(_printable_name(rel) if rel != "." else ".", directory))
        return shards

    def check(self) -> dict[str, object]:
        shards = self.shards()
        if not shards:
            raise InputError("no images found", self.root)
        if self.columns.extra_cols:
            raise ColumnError(f"{self.root} (image folder)", self.columns.extra_cols[0], [])
        if not any(self.known_row_count(shard) is not None for shard in shards):
            raise InputError(f"none of the {len(shards)} folders with images can be listed", self.root)
        return {"has_urls": True, "has_captions": True, "has_images": True, "metadata_hashes": []}

    def known_row_count(self, shard: ShardRef) -> int | None:
        try:
            return len(_images_in(shard.path))
        except OSError:
            return None

    def shard_files(self, shard: ShardRef) -> list[Path]:
        """The shard's images and their `.txt` / `.json` sidecars (regular files only), sorted."""
        files = []
        for image in self._images(shard):
            files.append(image)
            files.extend(s for s in (image.with_suffix(x) for x in SIDECAR_SUFFIXES) if _is_regular_file(s))
        return sorted(files)

    def _images(self, shard: ShardRef) -> list[Path]:
        try:
            return _images_in(shard.path)
        except OSError as exc:
            raise InputError(f"unreadable folder: {exc}", shard.path) from exc

    def _key(self, image: Path) -> str:
        return _printable_name(image.relative_to(self.root).with_suffix("").as_posix())

    def iter_batches(self, shard: ShardRef, batch_rows: int, read_images: bool) -> Iterator[RowBatch]:
        images = self._images(shard)
        for lo in range(0, len(images), batch_rows):
            part = images[lo : lo + batch_rows]
            keys, urls, captions, blobs, errors = [], [], [], [], []
            for path in part:
                problems: list[str] = []
                keys.append(self._key(path))
                captions.append(_read_sidecar_text(path.with_suffix(".txt"), problems))
                urls.append(_read_url(path.with_suffix(".json"), problems))
                blobs.append(self._read_image(path, problems) if read_images else None)
                errors.append("; ".join(problems) or None)
            yield RowBatch(
                shard=shard.id,
                rows=np.arange(lo, lo + len(part), dtype=np.int64),
                keys=pa.array(keys, type=pa.string()),
                urls=pa.array(urls, type=pa.string()),
                captions=pa.array(captions, type=pa.string()),
                images=pa.array(blobs, type=pa.binary()) if read_images else None,
                read_errors=pa.array(errors, type=pa.string()),
            )

    def _read_image(self, path: Path, problems: list[str]) -> bytes | None:
        try:
            blob = read_bounded(path, self.max_member_bytes)
        except (UnusableFile, OSError) as exc:
            problems.append(f"{_printable_name(path.name)}: {_reason(exc)}")
            return None
        if blob is None:
            problems.append(f"{_printable_name(path.name)}: vanished while the folder was read")
        return blob

    def write_shard(
        self, shard: ShardRef, drop_rows: np.ndarray, out_root: Path, members: pa.Table | None = None
    ) -> ShardWriteResult:
        """Copy the kept images with their sidecars (`members` is unused: the files are the shard's own)."""
        drop = set(int(r) for r in drop_rows)
        files = []
        written = 0
        unchecked = 0
        for row, path in enumerate(self._images(shard)):
            if row in drop:
                continue  # dropped images and their sidecars are never copied
            if not _readable_within(path, self.max_member_bytes):
                unchecked += 1  # the scan refused it unread (over the limit, not a regular file): never released
                continue
            for source in (path, *(path.with_suffix(x) for x in SIDECAR_SUFFIXES)):
                if _is_regular_file(source):  # a directory or FIFO named like a sidecar is not data
                    target = out_root / source.relative_to(self.root)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, target)
                    files.append(target.relative_to(out_root).as_posix())
            written += 1
        return ShardWriteResult(rows_written=written, files=files, rows_unchecked=unchecked)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, UnusableFile):
        return str(exc)
    return f"unreadable ({exc.strerror or type(exc).__name__})" if isinstance(exc, OSError) else str(exc)


def _read_sidecar_text(path: Path, problems: list[str]) -> str | None:
    """A sidecar's text (UTF-8, an optional BOM dropped), or None with the problem noted."""
    try:
        data = read_bounded(path, MAX_SIDECAR_BYTES)
    except (UnusableFile, OSError) as exc:
        problems.append(f"{_printable_name(path.name)}: {_reason(exc)}")
        return None
    if data is None:
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.append(f"{_printable_name(path.name)}: invalid UTF-8 at byte {exc.start}")
        return None


def _read_url(path: Path, problems: list[str]) -> str | None:
    """The `url` field of a JSON sidecar (img2dataset's metadata), or None with the problem noted."""
    text = _read_sidecar_text(path, problems)
    if text is None:
        return None
    name = _printable_name(path.name)
    try:
        meta = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:  # RecursionError: deeply nested arrays
        problems.append(f"{name}: unreadable JSON ({type(exc).__name__}: {str(exc)[:80]})")
        return None
    if not isinstance(meta, dict):
        problems.append(f"{name}: JSON {type(meta).__name__}, not an object")
        return None
    url = meta.get("url")
    if url is not None and not isinstance(url, str):
        problems.append(f"{name}: 'url' is a JSON {type(url).__name__}, not a string")
        return None
    if url is not None and not _encodable(url):
        problems.append(f"{name}: 'url' holds an unpaired surrogate escape")
        return None
    return url


def _encodable(text: str) -> bool:
    """JSON's `\\udXXX` escapes can produce strings that are not valid Unicode (and not storable as UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
