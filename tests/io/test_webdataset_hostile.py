"""Hostile webdataset shards: what the scan reads of a tar is exactly what `clean` may release.

Every case here shipped flagged bytes, lost samples silently, or stopped the run before the sample model: a
flagged image beside a benign one, under a second name, an odd extension or a dotted key; truncated tars and
sidecars; crafted `.json`/`.txt` members; sparse and over-size members; shards changed after the scan. The reader
and `write_shard` are driven directly (a "flagged" set of digests plays the bank), and a few cases run through
`scan` and `clean` end to end.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xxhash
from PIL import Image

from safeset.banks.store import BankStore
from safeset.errors import InputError
from safeset.io.base import ShardRef
from safeset.io.batch import MEMBERS_SCHEMA, RowBatch
from safeset.io.webdataset import (
    NOT_CHECKED_BY_METADATA_SCAN,
    TarWriteResult,
    WebDatasetShards,
    member_key,
    sniff_image,
)
from tests.conftest import write_list
from tests.helpers import assert_reconciles, clean, errors, findings, scan

# --------------------------------------------------------------------------------------------------------------
# benign stand-ins


def make_image(seed: int, fmt: str = "JPEG", size: int = 12) -> bytes:
    """A tiny ordinary picture (a colour gradient); distinct seeds give distinct bytes."""
    rows, cols = np.indices((size, size))
    pixels = np.stack([cols * (seed + 3), rows * 7 + seed * 31, np.full_like(rows, seed * 53)], axis=-1) % 256
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(buffer, format=fmt)
    return buffer.getvalue()


BENIGN = make_image(1)
OTHER = make_image(2)
FLAGGED = make_image(66)  # plays a known image: its digest is in the "bank"
FLAGGED_PNG = make_image(67, "PNG")
FLAGGED_MD5S = {hashlib.md5(FLAGGED).hexdigest(), hashlib.md5(FLAGGED_PNG).hexdigest()}


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def write_tar(path: Path, members: list[tuple[str, bytes]], **headers: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            for attribute, value in headers.items():
                setattr(info, attribute, value)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_sidecar(tar: Path, keys: list[str], **columns: list[object]) -> Path:
    table = {"key": keys, "url": [f"https://example.org/{k}.jpg" for k in keys], **columns}
    if "status" not in columns:
        table["status"] = ["success"] * len(keys)
    path = tar.with_suffix(".parquet")
    pq.write_table(pa.table(table), path)
    return path


def write_stats(tar: Path, count: int, successes: int) -> None:
    tar.with_name(tar.stem + "_stats.json").write_text(json.dumps({"count": count, "successes": successes}))


def open_shard(tar: Path, max_member_bytes: int | None = None) -> tuple[WebDatasetShards, ShardRef]:
    dataset = WebDatasetShards(tar.parent)
    if max_member_bytes is not None:
        dataset.max_member_bytes = max_member_bytes
    return dataset, ShardRef(tar.name, tar)


@dataclass
class Read:
    batches: list[RowBatch]

    @property
    def members(self) -> pa.Table:
        tables = [b.members for b in self.batches if b.members is not None]
        return pa.concat_tables(tables) if tables else MEMBERS_SCHEMA.empty_table()

    def rows(self) -> set[int]:
        return {int(r) for b in self.batches for r in b.rows}

    def errors(self) -> dict[int, str]:
        """Row -> reason of every errored row."""
        out: dict[int, str] = {}
        for batch in self.batches:
            if batch.read_errors is None:
                continue
            for row, reason in zip(batch.rows.tolist(), batch.read_errors.to_pylist(), strict=True):
                if reason:
                    out[row] = f"{out[row]}; {reason}" if row in out else reason
        return out

    def images(self) -> dict[int, list[bytes]]:
        out: dict[int, list[bytes]] = {}
        for batch in self.batches:
            if batch.images is None:
                continue
            for row, image in zip(batch.rows.tolist(), batch.images.to_pylist(), strict=True):
                if image is not None:
                    out.setdefault(row, []).append(image)
        return out

    def keys(self) -> dict[int, str]:
        return {
            row: key
            for b in self.batches
            for row, key in zip(b.rows.tolist(), b.keys.to_pylist() if b.keys is not None else [], strict=True)
        }

    def flagged_rows(self, md5s: set[str]) -> set[int]:
        return {row for row, images in self.images().items() if any(hashlib.md5(i).hexdigest() in md5s for i in images)}


def read(tar: Path, read_images: bool = True, batch_rows: int = 3, max_member_bytes: int | None = None) -> Read:
    dataset, shard = open_shard(tar, max_member_bytes)
    return Read(list(dataset.iter_batches(shard, batch_rows, read_images)))


def release(tar: Path, got: Read, drop: set[int], out: Path) -> tuple[TarWriteResult, dict[str, bytes]]:
    dataset, shard = open_shard(tar)
    result = dataset.write_shard(shard, np.array(sorted(drop), dtype=np.int64), out, got.members)
    return result, tar_members(out / tar.name)


def tar_members(path: Path) -> dict[str, bytes]:
    """What `tar -x` would give back: every member's bytes (later duplicates win, as they would on disk)."""
    out: dict[str, bytes] = {}
    with tarfile.open(path) as tar:
        for member in tar:
            handle = tar.extractfile(member)
            out[member.name] = handle.read() if handle else b""
    return out


def assert_nothing_flagged(released: dict[str, bytes]) -> None:
    for name, data in released.items():
        assert FLAGGED not in data and FLAGGED_PNG not in data, name


# --------------------------------------------------------------------------------------------------------------
# flagged bytes never reach the release


HIDING_PLACES = {
    "png beside a benign jpg": ["k.jpg", "k.png"],
    "second member of the same name": ["k.jpg", "k.jpg"],
    "unlisted extension .jfif": ["k.jpg", "k.jfif"],
    "double extension .orig.jpg": ["k.jpg", "k.orig.jpg"],
    "image bytes named .txt": ["k.jpg", "k.txt"],
    "no extension at all": ["k.jpg", "k"],
}


@pytest.mark.parametrize("names", HIDING_PLACES.values(), ids=HIDING_PLACES.keys())
@pytest.mark.parametrize("sidecar", [True, False], ids=["sidecar", "no-sidecar"])
def test_a_flagged_image_in_any_member_of_a_sample_never_reaches_the_release(
    tmp_path: Path, names: list[str], sidecar: bool
) -> None:
    benign_name, hidden_name = names
    tar = write_tar(
        tmp_path / "ds" / "00000.tar",
        [("a.jpg", OTHER), ("a.txt", b"https://example.org/a.jpg"), (benign_name, BENIGN), (hidden_name, FLAGGED)],
    )
    if sidecar:
        write_sidecar(tar, ["a", "k"], caption=["https://example.org/a.jpg", None])
    got = read(tar)
    assert got.rows() == {0, 1}
    k_row = next(row for row, key in got.keys().items() if key == "k")
    duplicate = benign_name == hidden_name
    if duplicate:
        assert "appears 2 times" in got.errors()[k_row]  # withheld as errored; its images are still matched
    # Every image member is hashed: the flagged one is found whatever its name.
    assert FLAGGED in got.images()[k_row] and BENIGN in got.images()[k_row]
    flagged = got.flagged_rows(FLAGGED_MD5S)
    assert flagged == {k_row}
    result, released = release(tar, got, flagged, tmp_path / "release")
    assert_nothing_flagged(released)
    assert released["a.jpg"] == OTHER and result.rows_written == 1
    # Even a policy that keeps errored rows releases only members the scan checked.
    _, kept_errored = release(tar, got, set(), tmp_path / "keep-all")
    if duplicate:
        assert "k.jpg" not in kept_errored and "a.jpg" in kept_errored


def test_a_dotted_key_joins_its_sidecar_row_and_its_flagged_image_is_withheld(tmp_path: Path) -> None:
    tar = write_tar(
        tmp_path / "ds" / "00000.tar",
        [
            ("img.001.jpg", FLAGGED),
            ("img.001.txt", b"first"),
            ("img.001.json", json.dumps({"url": "https://example.org/img.001.jpg"}).encode()),
            ("img.002.jpg", BENIGN),
            ("img.002.txt", b"second"),
        ],
    )
    write_sidecar(tar, ["img.001", "img.002"], caption=["first", "second"])
    got = read(tar)
    assert got.rows() == {0, 1} and got.errors() == {}  # no tar-only `img` sample
    assert got.keys() == {0: "img.001", 1: "img.002"}
    assert set(got.members["row"].to_pylist()) == {0, 1}
    assert got.flagged_rows(FLAGGED_MD5S) == {0}
    result, released = release(tar, got, {0}, tmp_path / "release")
    assert sorted(released) == ["img.002.jpg", "img.002.txt"]
    assert result.rows_written == 1 and result.members_withheld == 0
    assert pq.read_table(tmp_path / "release" / "00000.parquet")["key"].to_pylist() == ["img.002"]


def test_scan_and_clean_release_no_flagged_member(tmp_path: Path) -> None:
    """End to end: the bank's image under `.png` beside a benign `.jpg`, and under a dotted key."""
    tar = write_tar(
        tmp_path / "ds" / "00000.tar",
        [
            ("a.jpg", OTHER),
            ("k.jpg", BENIGN),
            ("k.png", FLAGGED_PNG),
            ("img.001.jpg", FLAGGED),
            ("z.jpg", make_image(5)),
        ],
    )
    write_sidecar(tar, ["a", "k", "img.001", "z"])
    banks = tmp_path / "banks"
    BankStore(banks).add("known", "md5", write_list(tmp_path / "md5.txt", sorted(FLAGGED_MD5S)))
    summary = scan(tmp_path / "ds", banks, tmp_path / "run")
    assert (summary["rows_in"], summary["rows_flagged"], summary["rows_errored"]) == (4, 2, 0)
    assert {f["key"] for f in findings(tmp_path / "run")} == {"k", "img.001"}
    manifest = clean(tmp_path / "ds", tmp_path / "run", tmp_path / "release")
    assert_reconciles(manifest)
    released = tar_members(tmp_path / "release" / "00000.tar")
    assert sorted(released) == ["a.jpg", "z.jpg"]
    assert_nothing_flagged(released)


# --------------------------------------------------------------------------------------------------------------
# member classification


def test_image_magic_not_extension_decides_what_is_an_image() -> None:
    assert sniff_image(BENIGN) == "JPEG" and sniff_image(FLAGGED_PNG) == "PNG"
    assert sniff_image(make_image(3, "GIF")) == "GIF" and sniff_image(make_image(3, "WEBP")) == "WEBP"
    assert sniff_image(make_image(3, "BMP")) == "BMP" and sniff_image(make_image(3, "TIFF")) == "TIFF"
    # Captions that start like a BMP are captions: a real BMP header needs NUL bytes no text has.
    assert sniff_image(b"BMW 3 series parked by the road") is None
    assert sniff_image(b"") is None and sniff_image(b"\xff\xd8") is None


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("k.json", b"[1, 2, 3]", "not an object"),
        ("k.json", b'{"url": "caf\xe9"}', "not UTF-8 JSON"),
        ("k.json", b"[" * 5000 + b"]" * 5000, "not UTF-8 JSON"),
        ("k.json", b"", "not UTF-8 JSON"),
        ("k.txt", b"caf\xe9 au lait", "not UTF-8 text"),
        ("k.npy", b"\x93NUMPY\x01\x00garbage", "not a readable .npy"),
        ("k.npy", npy_bytes(np.frombuffer(FLAGGED, dtype=np.uint8)), "not a float16/float32 embedding"),
        ("k.xyz", b"plain bytes", "neither an image"),
        ("k.orig.jpg", b"not really a jpeg", "neither an image"),
    ],
)
@pytest.mark.parametrize("sidecar", [True, False], ids=["sidecar", "no-sidecar"])
def test_crafted_members_are_errored_rows_never_released(
    tmp_path: Path, name: str, data: bytes, reason: str, sidecar: bool
) -> None:
    tar = write_tar(tmp_path / "ds" / "00000.tar", [("a.jpg", OTHER), ("k.jpg", BENIGN), (name, data)])
    if sidecar:
        write_sidecar(tar, ["a", "k"])
    got = read(tar)
    (row, message), *rest = got.errors().items()
    assert not rest and got.keys()[row] == "k"
    assert reason in message and repr(name) in message
    listed = {(r["name"], r["size"]): r for r in got.members.to_pylist()}
    assert listed[(name, len(data))]["checked"] is False
    _, released = release(tar, got, set(), tmp_path / "keep-errored")
    assert name not in released and released["k.jpg"] == BENIGN


def test_valid_text_json_and_embedding_members_are_checked(tmp_path: Path) -> None:
    vector = io.BytesIO()
    np.save(vector, np.arange(8, dtype=np.float16))
    members = [
        ("k.jpg", BENIGN),
        ("k.txt", "a cup of café".encode()),
        ("k.json", json.dumps({"url": "https://example.org/k.jpg", "caption": "a cup of café"}).encode()),
        ("k.img_emb.npy", vector.getvalue()),
    ]
    tar = write_tar(tmp_path / "ds" / "00000.tar", members)
    got = read(tar)
    assert got.errors() == {}
    rows = got.members.to_pylist()
    assert [r["name"] for r in rows] == [name for name, _ in members]
    assert all(r["checked"] for r in rows)
    assert [r["digest"] for r in rows] == [xxhash.xxh3_128_digest(data) for _, data in members]
    batch = got.batches[0]
    assert batch.captions.to_pylist() == ["a cup of café"]
    assert batch.urls.to_pylist() == ["https://example.org/k.jpg"]
    _, released = release(tar, got, set(), tmp_path / "release")
    assert released == dict(members)


def test_members_that_disagree_with_the_sidecar_are_errored_and_withheld(tmp_path: Path) -> None:
    """The scan matches the sidecar's caption and URL; a `.txt` or `.json` saying otherwise ships unmatched text."""
    tar = write_tar(
        tmp_path / "ds" / "00000.tar",
        [
            ("a.jpg", OTHER),
            ("a.txt", b"a benign caption"),
            ("k.jpg", BENIGN),
            ("k.txt", b"some other text"),
            ("m.jpg", make_image(4)),
            ("m.json", json.dumps({"url": "https://elsewhere.example.net/m.jpg"}).encode()),
        ],
    )
    write_sidecar(tar, ["a", "k", "m"], caption=["a benign caption", "a benign caption", None])
    got = read(tar)
    assert set(got.errors()) == {1, 2}
    assert "'k.txt' holds another caption" in got.errors()[1] and "'m.json' gives another url" in got.errors()[2]
    _, released = release(tar, got, set(), tmp_path / "keep-errored")
    assert "k.txt" not in released and "m.json" not in released and "a.txt" in released


# --------------------------------------------------------------------------------------------------------------
# keys, rows and samples


@pytest.mark.parametrize(
    ("name", "keys", "expected"),
    [
        ("img.001.jpg", {"img.001"}, "img.001"),
        ("img.001.jpg", set(), "img"),
        ("img.001.orig.jpg", {"img", "img.001"}, "img.001"),
        ("d/img.001.jpg", {"d/img.001"}, "d/img.001"),
        ("./000001.jpg", {"000001"}, "000001"),
        ("000001", set(), "000001"),
        (".hidden.jpg", set(), ""),
    ],
)
def test_member_key_is_the_longest_sidecar_prefix_else_the_first_dot(name: str, keys: set[str], expected: str) -> None:
    assert member_key(name, keys) == expected


def test_split_samples_and_duplicate_sidecar_keys_are_errored_rows(tmp_path: Path) -> None:
    tar = write_tar(
        tmp_path / "ds" / "00000.tar",
        [("a.jpg", OTHER), ("b.jpg", BENIGN), ("a.txt", b"late caption"), ("c.jpg", make_image(7))],
    )
    write_sidecar(tar, ["a", "b", "c", "c"])
    got = read(tar)
    assert got.rows() == {0, 1, 2, 3}
    problems = got.errors()
    assert set(problems) == {0, 2, 3}
    assert "not contiguous" in problems[0]
    assert "more than one sidecar row" in problems[2] and "more than one sidecar row" in problems[3]
    checked = {r["name"]: r["checked"] for r in got.members.to_pylist()}
    assert checked == {"a.jpg": True, "b.jpg": True, "a.txt": False, "c.jpg": True}


def test_metadata_only_scan_reads_no_member_but_reports_tar_only_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tar = write_tar(
        tmp_path / "ds" / "00000.tar", [("a.jpg", OTHER), ("stowaway.jpg", FLAGGED), ("stowaway.txt", b"x")]
    )
    write_sidecar(tar, ["a", "failed"], status=["success", "failed_to_download"])

    def no_member_data(*args: object) -> bytes:
        raise AssertionError("a metadata-only scan read member data")

    monkeypatch.setattr("safeset.io.webdataset._read_at", no_member_data)
    got = read(tar, read_images=False)
    assert got.rows() == {0, 1, 2}
    assert got.errors() == {2: NOT_CHECKED_BY_METADATA_SCAN}
    assert got.keys()[2] == "stowaway"
    assert all(b.members is None and b.images is None for b in got.batches)
    dataset, shard = open_shard(tar)
    with pytest.raises(InputError, match="metadata-only"):
        dataset.write_shard(shard, np.array([], dtype=np.int64), tmp_path / "release", None)


def test_metadata_only_scan_counts_tar_only_samples_as_errored(tmp_path: Path) -> None:
    tar = write_tar(tmp_path / "ds" / "00000.tar", [("a.jpg", OTHER), ("stowaway.jpg", FLAGGED)])
    write_sidecar(tar, ["a"], md5=[hashlib.md5(OTHER).hexdigest()])
    banks = tmp_path / "banks"
    BankStore(banks).add("known", "md5", write_list(tmp_path / "md5.txt", sorted(FLAGGED_MD5S)))
    summary = scan(tmp_path / "ds", banks, tmp_path / "run", metadata_only=True)
    assert (summary["rows_in"], summary["rows_errored"]) == (2, 1)
    (error,) = errors(tmp_path / "run")
    assert error["key"] == "stowaway" and "metadata-only" in error["reason"]


# --------------------------------------------------------------------------------------------------------------
# nothing disappears: truncated and damaged shards fail whole


def _member_ends(tar: Path) -> list[int]:
    """Byte offsets where each member's data (padded) ends: cutting there leaves a readable prefix."""
    with tarfile.open(tar) as archive:
        return [m.offset_data + -(-m.size // 512) * 512 for m in archive.getmembers()]


def _cuts(tar: Path) -> dict[str, tuple[bytes, int | None]]:
    """Damaged copies of a four-sample tar, each with the samples its readable headers still show."""
    data = tar.read_bytes()
    ends = _member_ends(tar)
    junk = bytearray(data)
    junk[ends[1] : ends[1] + 512] = b"J" * 512  # a junk block where the third member's header was
    return {
        "at a header boundary": (data[: ends[1]], 2),
        "inside a header": (data[: ends[1] + 100], 2),
        "inside member data": (data[: ends[1] - 300], 2),
        "one end block only": (data[: ends[-1] + 512], 4),
        "junk header block in the middle": (bytes(junk), 2),
        "a second archive after the end": (data + data, 4),
        "empty file": (b"", None),
    }


CUTS = [
    "at a header boundary",
    "inside a header",
    "inside member data",
    "one end block only",
    "junk header block in the middle",
    "a second archive after the end",
    "empty file",
]


@pytest.mark.parametrize("cut", CUTS)
def test_a_damaged_tar_fails_its_shard_instead_of_losing_samples(tmp_path: Path, cut: str) -> None:
    source = write_tar(tmp_path / "src" / "00000.tar", [(f"{k}.jpg", make_image(k)) for k in range(4)])
    damaged, samples_readable = _cuts(source)[cut]
    tar = tmp_path / "ds" / "00000.tar"
    tar.parent.mkdir()
    tar.write_bytes(damaged)
    for read_images in (True, False):
        with pytest.raises(InputError, match=r"truncated|unreadable") as caught:
            read(tar, read_images=read_images)
        assert str(tar) in str(caught.value)
    # Without sidecar or stats, the rows a failed shard counts as errored are the samples its headers show.
    dataset, shard = open_shard(tar)
    assert dataset.known_row_count(shard) == samples_readable


def test_a_tar_holding_fewer_samples_than_its_stats_fails(tmp_path: Path) -> None:
    tar = write_tar(tmp_path / "ds" / "00000.tar", [("a.jpg", OTHER), ("b.jpg", BENIGN)])
    write_stats(tar, count=3, successes=3)  # the third sample was dropped cleanly, end blocks rewritten
    with pytest.raises(InputError, match=re.escape("holds 2 samples, but 00000_stats.json counts 3")):
        read(tar)
    dataset, shard = open_shard(tar)
    assert dataset.known_row_count(shard) == 3
    write_stats(tar, count=3, successes=2)
    assert read(tar).rows() == {0, 1}


@pytest.mark.parametrize("damage", ["truncated", "garbage", "dangling link"])
def test_an_unreadable_sidecar_fails_the_shard_and_counts_its_rows_from_stats(tmp_path: Path, damage: str) -> None:
    tar = write_tar(tmp_path / "ds" / "00000.tar", [("a.jpg", OTHER)])
    sidecar = write_sidecar(tar, ["a", "b", "c"], status=["success", "failed_to_download", "failed_to_download"])
    if damage == "truncated":
        sidecar.write_bytes(sidecar.read_bytes()[:-20])
    elif damage == "garbage":
        sidecar.write_bytes(b"PAR1 not really parquet PAR1")
    else:
        sidecar.unlink()
        sidecar.symlink_to(tmp_path / "nowhere.parquet")
    for read_images in (True, False):
        with pytest.raises(InputError, match="sidecar") as caught:
            read(tar, read_images=read_images)
        assert "00000.parquet" in str(caught.value)
    dataset, shard = open_shard(tar)
    assert dataset.known_row_count(shard) == 1  # without stats: the samples in the tar
    write_stats(tar, count=3, successes=1)
    assert dataset.known_row_count(shard) == 3
    assert sidecar in dataset.shard_files(shard)
    with pytest.raises(InputError, match="sidecar"):
        dataset.write_shard(shard, np.array([], dtype=np.int64), tmp_path / "release", MEMBERS_SCHEMA.empty_table())


def test_check_skips_an_unreadable_first_sidecar(tmp_path: Path) -> None:
    first = write_tar(tmp_path / "ds" / "00000.tar", [("a.jpg", OTHER)])
    first.with_suffix(".parquet").write_bytes(b"not parquet")
    second = write_tar(tmp_path / "ds" / "00001.tar", [("b.jpg", BENIGN)])
    write_sidecar(second, ["b"], md5=[hashlib.md5(BENIGN).hexdigest()])
    offer = WebDatasetShards(tmp_path / "ds").check()
    assert offer["metadata_hashes"] == ["md5"]


@pytest.mark.timeout(30)
def test_a_negative_member_size_fails_instead_of_looping_forever(tmp_path: Path) -> None:
    tar = tmp_path / "ds" / "00000.tar"
    tar.parent.mkdir()
    with tarfile.open(tar, "w", format=tarfile.GNU_FORMAT) as archive:
        good = tarfile.TarInfo("a.txt")
        good.size = 3
        archive.addfile(good, io.BytesIO(b"abc"))
        looping = tarfile.TarInfo("b.txt")
        looping.size = -512  # base-256: tarfile would read this header again and again
        archive.addfile(looping)
    with pytest.raises(InputError, match="negative size"):
        read(tar)


def test_a_name_that_is_not_utf8_fails_the_shard(tmp_path: Path) -> None:
    tar = tmp_path / "ds" / "00000.tar"
    tar.parent.mkdir()
    with tarfile.open(tar, "w", format=tarfile.GNU_FORMAT, encoding="latin-1") as archive:
        info = tarfile.TarInfo("caf\xe9.jpg")
        info.size = len(BENIGN)
        archive.addfile(info, io.BytesIO(BENIGN))
    with pytest.raises(InputError, match="not valid UTF-8"):
        read(tar)


# --------------------------------------------------------------------------------------------------------------
# resources: over-size and sparse members are refused before any byte is read


def _gnu_sparse_tar(path: Path, real_size: int) -> Path:
    """An old-GNU sparse member (type 'S') whose header claims `real_size` bytes of mostly holes."""
    payload = b"\xff\xd8\xff" + b"\0" * 509
    info = tarfile.TarInfo("k.jpg")
    info.type = tarfile.GNUTYPE_SPARSE
    info.size = len(payload)
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    header[386:398] = b"%011o\0" % 0  # one data region at offset 0 ...
    header[398:410] = b"%011o\0" % len(payload)  # ... of 512 bytes
    header[483:495] = b"%011o\0" % real_size
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header[:512])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(header) + payload + b"\0" * 10240)
    return path


def _pax_sparse_tar(path: Path, real_size: int) -> Path:
    """A PAX 1.0 sparse member: the map leads its data, the real size is in a PAX record."""
    sparse_map = b"1\n0\n512\n".ljust(512, b"\0")
    data = sparse_map + b"\xff\xd8\xff" + b"\0" * 509
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("k.jpg")
        info.size = len(data)
        info.pax_headers = {
            "GNU.sparse.major": "1",
            "GNU.sparse.minor": "0",
            "GNU.sparse.name": "k.jpg",
            "GNU.sparse.realsize": str(real_size),
        }
        tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("build", [_gnu_sparse_tar, _pax_sparse_tar], ids=["gnu", "pax"])
def test_a_sparse_member_is_refused_unread(tmp_path: Path, build: object, monkeypatch: pytest.MonkeyPatch) -> None:
    tar = build(tmp_path / "ds" / "00000.tar", 1 << 30)  # type: ignore[operator]
    assert tar.stat().st_size < 20_000
    monkeypatch.setattr(tarfile.TarFile, "extractfile", lambda *a, **k: pytest.fail("a sparse member was read"))
    monkeypatch.setattr("safeset.io.webdataset._read_at", lambda *a, **k: pytest.fail("a sparse member was read"))
    got = read(tar)
    assert "sparse" in got.errors()[0]
    (listed,) = got.members.to_pylist()
    assert (listed["size"], listed["digest"], listed["checked"]) == (1 << 30, None, False)
    assert got.images() == {}
    dataset, shard = open_shard(tar)
    result = dataset.write_shard(shard, np.array([], dtype=np.int64), tmp_path / "keep-errored", got.members)
    monkeypatch.undo()
    assert result.members_withheld == 1 and tar_members(tmp_path / "keep-errored" / "00000.tar") == {}


def test_an_over_size_member_is_refused_unread(tmp_path: Path) -> None:
    big = make_image(9, "BMP", size=64)  # uncompressed: 12 kB
    tar = write_tar(tmp_path / "ds" / "00000.tar", [("a.jpg", OTHER), ("k.jpg", BENIGN), ("k.bmp", big)])
    cap = max(len(OTHER), len(BENIGN)) + 10
    assert len(big) > cap
    got = read(tar, max_member_bytes=cap)
    (row, reason), *rest = got.errors().items()
    assert not rest and got.keys()[row] == "k" and "over the" in reason and "'k.bmp'" in reason
    listed = {r["name"]: r for r in got.members.to_pylist()}
    assert listed["k.bmp"]["digest"] is None and listed["k.bmp"]["checked"] is False
    assert listed["k.jpg"]["checked"] is True and got.images()[row] == [BENIGN]


# --------------------------------------------------------------------------------------------------------------
# write_shard: only what the scan checked, byte for byte


def test_write_shard_refuses_a_shard_that_changed_since_the_scan(tmp_path: Path) -> None:
    tar = write_tar(tmp_path / "ds" / "00000.tar", [("a.jpg", OTHER), ("k.jpg", BENIGN)])
    got = read(tar)
    dataset, shard = open_shard(tar)
    keep_all = np.array([], dtype=np.int64)

    # Same size, other bytes: caught by the digest while copying, and nothing is left behind.
    data = bytearray(tar.read_bytes())
    at = data.index(BENIGN) + len(BENIGN) // 2
    data[at] ^= 0xFF
    tar.write_bytes(bytes(data))
    with pytest.raises(InputError, match=re.escape("'k.jpg' changed since the scan")):
        dataset.write_shard(shard, keep_all, tmp_path / "r1", got.members)
    assert not (tmp_path / "r1" / "00000.tar").exists()

    # A member the scan never saw, and a member that went away.
    write_tar(tar, [("a.jpg", OTHER), ("k.jpg", BENIGN), ("k.png", FLAGGED_PNG)])
    with pytest.raises(InputError, match=re.escape("'k.png' was not seen by the scan")):
        dataset.write_shard(shard, keep_all, tmp_path / "r2", got.members)
    write_tar(tar, [("a.jpg", OTHER)])
    with pytest.raises(InputError, match=re.escape("'k.jpg' that the scan read is no longer in the tar")):
        dataset.write_shard(shard, keep_all, tmp_path / "r3", got.members)
    with pytest.raises(InputError, match="metadata-only"):
        dataset.write_shard(shard, keep_all, tmp_path / "r4", None)


def test_write_shard_writes_fresh_headers_and_withholds_unchecked_members(tmp_path: Path) -> None:
    tar = tmp_path / "ds" / "00000.tar"
    tar.parent.mkdir()
    with tarfile.open(tar, "w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in [("a.jpg", OTHER), ("a.xyz", b"unclassifiable"), ("k.jpg", BENIGN)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.uname, info.gname = "someone", "somegroup"
            info.mode = 0o4755
            info.pax_headers = {"comment": "bytes no scan looked at"}
            archive.addfile(info, io.BytesIO(data))
    got = read(tar)
    result, released = release(tar, got, set(), tmp_path / "keep-errored")
    assert released == {"a.jpg": OTHER, "k.jpg": BENIGN}
    assert result.members_withheld == 1 and result.rows_written == 2
    with tarfile.open(tmp_path / "keep-errored" / "00000.tar") as archive:
        for member in archive:
            assert (member.uname, member.gname, member.pax_headers, member.mode) == ("", "", {}, 0o755)
    raw = (tmp_path / "keep-errored" / "00000.tar").read_bytes()
    assert b"bytes no scan looked at" not in raw and b"someone" not in raw


def test_rows_are_counted_once_however_many_images_a_sample_has(tmp_path: Path) -> None:
    tar = write_tar(
        tmp_path / "ds" / "00000.tar",
        [("a.jpg", OTHER), ("a.png", make_image(8, "PNG")), ("a.webp", make_image(8, "WEBP")), ("b.jpg", BENIGN)],
    )
    write_sidecar(tar, ["a", "b", "c"], status=["success", "success", "failed_to_download"])
    got = read(tar, batch_rows=1)
    assert [b.row_count() for b in got.batches] == [1, 1, 1]
    first = got.batches[0]
    assert first.rows.tolist() == [0, 0, 0] and first.urls.to_pylist()[1:] == [None, None]
    assert first.urls.to_pylist()[0] == "https://example.org/a.jpg"
    result, released = release(tar, got, set(), tmp_path / "release")
    assert result.rows_written == 3 and len(released) == 4


def test_a_release_with_withheld_members_reads_back_whole(tmp_path: Path) -> None:
    """A kept errored row whose only image was withheld leaves no sample: the release's stats must not count it,
    or reading the release back would fail its shard as truncated."""
    big = make_image(9, "BMP", size=64)
    tar = write_tar(tmp_path / "ds" / "00000.tar", [("a.jpg", OTHER), ("k.bmp", big)])
    write_sidecar(tar, ["a", "k"])
    write_stats(tar, count=2, successes=2)
    got = read(tar, max_member_bytes=len(big) - 1)
    result, released = release(tar, got, set(), tmp_path / "release")
    assert (result.rows_written, result.members_withheld, list(released)) == (2, 1, ["a.jpg"])
    stats = json.loads((tmp_path / "release" / "00000_stats.json").read_text())
    assert (stats["count"], stats["successes"]) == (2, 1)
    again = read(tmp_path / "release" / "00000.tar")
    assert again.rows() == {0, 1} and "missing from tar" in again.errors()[1]
    dataset, shard = open_shard(tmp_path / "release" / "00000.tar")
    assert [p.name for p in dataset.shard_files(shard)] == ["00000.tar", "00000.parquet"]
    (tmp_path / "release" / "00000.parquet").unlink()
    assert [p.name for p in dataset.shard_files(shard)] == ["00000.tar"]


def test_scan_and_clean_account_for_crafted_members_and_a_truncated_shard(tmp_path: Path) -> None:
    """End to end: crafted members are errored rows and a tar cut at a member boundary is a failed shard whose rows
    (from its stats) are all errored; the run finishes and the release reconciles."""
    crafted = write_tar(
        tmp_path / "ds" / "00000.tar",
        [("a.jpg", OTHER), ("k.jpg", BENIGN), ("k.json", b"[1, 2]"), ("m.jpg", make_image(3)), ("m.txt", b"\xff")],
    )
    write_sidecar(crafted, ["a", "k", "m"])
    source = write_tar(tmp_path / "src" / "00001.tar", [(f"s{i}.jpg", make_image(20 + i)) for i in range(4)])
    cut = tmp_path / "ds" / "00001.tar"
    cut.write_bytes(source.read_bytes()[: _member_ends(source)[1]])  # two samples left, ends at a header
    write_stats(cut, count=5, successes=4)
    banks = tmp_path / "banks"
    BankStore(banks).add("known", "md5", write_list(tmp_path / "md5.txt", sorted(FLAGGED_MD5S)))
    summary = scan(tmp_path / "ds", banks, tmp_path / "run")
    by_shard = {s["shard"]: s for s in summary["shards"]}
    assert (by_shard["00000.tar"]["rows_in"], by_shard["00000.tar"]["rows_errored"]) == (3, 2)
    assert by_shard["00001.tar"]["error"] and "truncated" in by_shard["00001.tar"]["error"]
    assert by_shard["00001.tar"]["rows_in"] == by_shard["00001.tar"]["rows_errored"] == 4  # max(stats, headers)
    reasons = {e["key"]: e["reason"] for e in errors(tmp_path / "run") if e["shard"] == "00000.tar"}
    assert "'k.json' is JSON but not an object" in reasons["k"] and "'m.txt' is not UTF-8" in reasons["m"]
    manifest = clean(tmp_path / "ds", tmp_path / "run", tmp_path / "release")
    assert_reconciles(manifest)
    assert sorted(tar_members(tmp_path / "release" / "00000.tar")) == ["a.jpg"]
    assert not (tmp_path / "release" / "00001.tar").exists()
