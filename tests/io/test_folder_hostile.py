"""Hostile image folders: sidecars that are directories, FIFOs, not UTF-8 or not a JSON object, oversized images,
names that are not UTF-8, folders that cannot be listed. Each is an errored row or a failed shard, named."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from safeset.banks.store import BankStore
from safeset.demo import variant
from safeset.errors import InputError
from safeset.io import folder as folder_module
from safeset.io.folder import ImageFolder
from tests.conftest import write_list
from tests.helpers import assert_reconciles, clean, errors, findings, scan

NAMES = ["coffee", "rocket", "chelsea", "bridge", "hubble"]


def _photos(root: Path, names: list[str] = NAMES) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        (root / f"{name}.jpg").write_bytes(variant(name, i))
        (root / f"{name}.txt").write_text(f"a photo of {name}")
        (root / f"{name}.json").write_text(json.dumps({"url": f"https://example.org/{name}.jpg"}))
    return root


def _banks(tmp_path: Path, root: Path) -> Path:
    """rocket by its bytes, hubble by its URL."""
    banks = tmp_path / "banks"
    known = hashlib.md5((root / "rocket.jpg").read_bytes()).hexdigest()
    BankStore(banks).add("k", "md5", write_list(tmp_path / "k.txt", [known]))
    BankStore(banks).add("u", "url", write_list(tmp_path / "u.txt", ["https://example.org/hubble.jpg"]))
    return banks


SIDECAR_CASES = {
    # case: (file to spoil, how, expected reason)
    "caption is a directory": ("coffee.txt", "dir", "coffee.txt: not a regular file"),
    "caption is a FIFO": ("coffee.txt", "fifo", "coffee.txt: not a regular file"),
    "caption not UTF-8": ("coffee.txt", b"caf\xe9 au lait", "coffee.txt: invalid UTF-8 at byte 3"),
    "json is a list": ("coffee.json", b'["https://example.org/coffee.jpg"]', "coffee.json: JSON list, not an object"),
    "json not UTF-8": ("coffee.json", b'{"url": "https://example.org/caf\xe9.jpg"}', "coffee.json: invalid UTF-8"),
    "json url is a number": ("coffee.json", b'{"url": 42}', "coffee.json: 'url' is a JSON int, not a string"),
    "json deeply nested": ("coffee.json", b"[" * 100_000 + b"]" * 100_000, "coffee.json: unreadable JSON"),
    "json truncated": ("coffee.json", b'{"url": "https://exa', "coffee.json: unreadable JSON"),
    "json lone surrogate": ("coffee.json", b'{"url": "https://x.org/\\ud800"}', "coffee.json: 'url' holds an unpaired"),
    "json is a directory": ("coffee.json", "dir", "coffee.json: not a regular file"),
}


def _spoil(path: Path, how: str | bytes) -> None:
    path.unlink()
    if how == "dir":
        path.mkdir()
        (path / "inside.txt").write_text("not a caption")
    elif how == "fifo":
        os.mkfifo(path)
    else:
        assert isinstance(how, bytes)
        path.write_bytes(how)


@pytest.mark.parametrize("case", sorted(SIDECAR_CASES))
def test_bad_sidecar_is_an_errored_row_naming_the_file(case: str, tmp_path: Path) -> None:
    name, how, reason = SIDECAR_CASES[case]
    root = _photos(tmp_path / "photos")
    _spoil(root / name, how)
    banks = _banks(tmp_path, root)
    summary = scan(root, banks, tmp_path / "run")
    assert (summary["rows_in"], summary["rows_flagged"], summary["rows_errored"]) == (5, 2, 1)
    assert summary["shards_failed"] == 0
    assert sorted(f["key"] for f in findings(tmp_path / "run")) == ["hubble", "rocket"]
    (error,) = errors(tmp_path / "run")
    assert error["key"] == "coffee" and error["reason"].startswith(reason), error["reason"]
    manifest = clean(root, tmp_path / "run", tmp_path / "release", keep_errored=True)
    assert_reconciles(manifest)
    assert (tmp_path / "release" / "coffee.jpg").is_file()  # kept on request; a non-file sidecar is not copied
    assert not (tmp_path / "release" / "coffee.txt").is_dir() and not (tmp_path / "release" / "rocket.jpg").exists()


def test_sidecar_values_that_are_fine(tmp_path: Path) -> None:
    root = _photos(tmp_path / "photos")
    (root / "coffee.json").write_bytes(b'\xef\xbb\xbf{"url": "https://example.org/hubble.jpg", "width": 10}')
    (root / "bridge.json").write_text(json.dumps({"caption": "no url here"}))
    (root / "chelsea.txt").write_bytes("\ufeffun café".encode())
    dataset = ImageFolder(root)
    (batch,) = list(dataset.iter_batches(dataset.shards()[0], 100, read_images=False))
    assert batch.read_errors is not None and batch.read_errors.null_count == 5
    assert batch.urls is not None and batch.captions is not None
    pairs = zip(batch.urls.to_pylist(), batch.captions.to_pylist(), strict=True)
    by_key = dict(zip(batch.keys_at(np.arange(5)), pairs, strict=True))
    assert by_key["coffee"][0] == "https://example.org/hubble.jpg"  # a BOM before the JSON is tolerated
    assert by_key["bridge"][0] is None
    assert by_key["chelsea"][1] == "un café"


def test_oversized_image_is_refused_unread(tmp_path: Path) -> None:
    root = _photos(tmp_path / "photos")
    with open(root / "bridge.jpg", "r+b") as handle:
        handle.truncate(600 * 1024 * 1024)  # sparse: over the 512 MiB default without using the disk
    banks = _banks(tmp_path, root)
    summary = scan(root, banks, tmp_path / "run")
    assert (summary["rows_in"], summary["rows_flagged"], summary["rows_errored"]) == (5, 2, 1)
    (error,) = errors(tmp_path / "run")
    assert error["key"] == "bridge"
    assert (
        error["reason"] == f"bridge.jpg: {600 * 1024 * 1024} bytes, over the {512 * 1024 * 1024}-byte limit; not read"
    )


def test_member_limit_set_by_the_scan_applies(tmp_path: Path) -> None:
    root = _photos(tmp_path / "photos")
    dataset = ImageFolder(root)
    dataset.max_member_bytes = min(p.stat().st_size for p in root.glob("*.jpg"))
    (batch,) = list(dataset.iter_batches(dataset.shards()[0], 100, read_images=True))
    assert batch.images is not None and batch.read_errors is not None
    refused = [e is not None for e in batch.read_errors.to_pylist()]
    assert refused == [b is None for b in batch.images.to_pylist()]
    assert 0 < sum(refused) < 5


def test_file_names_that_are_not_utf8(tmp_path: Path) -> None:
    root = _photos(tmp_path / "photos", ["coffee", "rocket"])
    odd = os.fsdecode(b"caf\xe9")
    (root / f"{odd}.jpg").write_bytes((root / "rocket.jpg").read_bytes())
    (root / f"{odd}.txt").write_bytes(b"a caption")
    banks = _banks(tmp_path, root)
    summary = scan(root, banks, tmp_path / "run")
    assert (summary["rows_in"], summary["rows_flagged"], summary["rows_errored"]) == (3, 2, 0)
    assert sorted(f["key"] for f in findings(tmp_path / "run")) == ["caf\\xe9", "rocket"]


def test_unlistable_first_folder_fails_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "photos"
    _photos(root / "a", ["coffee", "rocket"])
    _photos(root / "b", ["hubble", "bridge"])
    banks = tmp_path / "banks"
    BankStore(banks).add("u", "url", write_list(tmp_path / "u.txt", ["https://example.org/hubble.jpg"]))
    listing = folder_module._images_in

    def unlistable_a(directory: Path) -> list[Path]:
        if directory.name == "a":
            raise PermissionError(13, "Permission denied", str(directory))
        return listing(directory)

    monkeypatch.setattr(folder_module, "_images_in", unlistable_a)
    summary = scan(root, banks, tmp_path / "run")
    by_shard = {s["shard"]: s for s in summary["shards"]}
    assert "Permission denied" in by_shard["a"]["error"] and str(root / "a") in by_shard["a"]["error"]
    assert by_shard["b"]["error"] is None and by_shard["b"]["rows_flagged"] == 1
    assert summary["shards_failed"] == 1


def test_no_listable_folder_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "photos"
    _photos(root / "a", ["coffee"])

    def unlistable(directory: Path) -> list[Path]:
        raise PermissionError(13, "Permission denied", str(directory))

    monkeypatch.setattr(folder_module, "_images_in", unlistable)
    with pytest.raises(InputError, match="can be listed"):
        ImageFolder(root).check()


def test_shard_files_are_images_and_sidecars(tmp_path: Path) -> None:
    root = _photos(tmp_path / "photos", ["coffee", "rocket"])
    (root / "rocket.json").unlink()
    _spoil(root / "coffee.txt", "dir")
    (root / "notes.md").write_text("not part of any row")
    dataset = ImageFolder(root)
    (shard,) = dataset.shards()
    names = [p.relative_to(root).as_posix() for p in dataset.shard_files(shard)]
    assert names == ["coffee.jpg", "coffee.json", "rocket.jpg", "rocket.txt"]


def test_dds_file_named_jpg_is_an_errored_row(tmp_path: Path) -> None:
    from tests.signals.test_image_fuzz import dds_with_unknown_pixel_format

    root = _photos(tmp_path / "photos")
    (root / "chelsea.jpg").write_bytes(dds_with_unknown_pixel_format())
    summary = scan(root, _banks(tmp_path, root), tmp_path / "run")
    assert (summary["rows_in"], summary["rows_flagged"], summary["rows_errored"]) == (5, 2, 1)
    assert [(e["key"], e["reason"]) for e in errors(tmp_path / "run")] == [
        ("chelsea", "not a supported image format: DDS")
    ]
