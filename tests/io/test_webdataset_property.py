"""Property: whatever a tar holds, the reader fails cleanly or accounts for every row, and `write_shard` releases
only members the scan listed as checked, byte for byte, with no flagged image among them.

Random shards are built from a few benign pictures (two of them play the flagged set), random bytes, text and
JSON of every kind, and `.npy` arrays, under random names (duplicates, odd and missing extensions, dotted keys),
with or without a sidecar, then maybe truncated at any byte. The reader and `write_shard` are driven directly:
rows whose images are flagged are dropped, errored rows are dropped or kept, and the release is read back whole.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xxhash
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from safeset.errors import InputError
from safeset.io.base import ShardRef
from safeset.io.batch import MEMBERS_SCHEMA
from safeset.io.webdataset import FastTarInfo, WebDatasetShards, _byte_sum
from tests.io.test_webdataset_hostile import make_image, npy_bytes

BENIGN_IMAGES = [make_image(10 + i, fmt) for i, fmt in enumerate(["JPEG", "JPEG", "PNG", "GIF"])]
FLAGGED_IMAGES = [make_image(90), make_image(91, "PNG")]
FLAGGED_MD5S = {hashlib.md5(image).hexdigest() for image in FLAGGED_IMAGES}


FIXED_CONTENTS = [
    *BENIGN_IMAGES,
    *FLAGGED_IMAGES,
    FLAGGED_IMAGES[0][:100],  # a truncated flagged image: still an image to the sniffer, still hashed
    b"a benign caption",
    b"caf\xe9 \xff not utf-8",
    json.dumps({"url": "https://example.org/a.jpg", "caption": "a benign caption"}).encode(),
    json.dumps(["not", "an", "object"]).encode(),
    b'{"url": "\\ud800"}',
    b"BMW parked by a river",
    npy_bytes(np.linspace(0, 1, 8, dtype=np.float32)),
    npy_bytes(np.frombuffer(FLAGGED_IMAGES[0], dtype=np.uint8)),  # flagged bytes in an array: never released
    b"",
]
KEYS = ["a", "b", "img.001", "img.002", "c", "d/e"]
SUFFIXES = ["jpg", "png", "jfif", "orig.jpg", "txt", "json", "npy", "img_emb.npy", "xyz", ""]

member_strategy = st.tuples(
    st.sampled_from(KEYS),
    st.sampled_from(SUFFIXES),
    st.one_of(st.sampled_from(FIXED_CONTENTS), st.binary(max_size=48), st.text(max_size=24).map(str.encode)),
)
sidecar_strategy = st.none() | st.lists(
    st.tuples(st.sampled_from([*KEYS, "failed", "img"]), st.sampled_from(["success", "failed_to_download"])),
    max_size=6,
)


def _write_shard_files(
    root: Path, members: list[tuple[str, str, bytes]], sidecar: list[tuple[str, str]] | None, captions: bool
) -> Path:
    tar = root / "00000.tar"
    with tarfile.open(tar, "w", format=tarfile.GNU_FORMAT) as archive:
        for key, suffix, data in members:
            info = tarfile.TarInfo(f"{key}.{suffix}" if suffix else key)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    if sidecar is not None:
        columns: dict[str, list[object]] = {
            "key": [k for k, _ in sidecar],
            "url": [f"https://example.org/{k}.jpg" for k, _ in sidecar],
            "status": [s for _, s in sidecar],
        }
        if captions:
            columns["caption"] = ["a benign caption"] * len(sidecar)
        pq.write_table(pa.table(columns), tar.with_suffix(".parquet"))
    return tar


def _released(path: Path) -> list[tuple[str, bytes]]:
    """Every member of the written tar, duplicates included (what `tar -x` would write, in order)."""
    out: list[tuple[str, bytes]] = []
    with tarfile.open(path) as archive:
        for member in archive:
            handle = archive.extractfile(member)
            out.append((member.name, handle.read() if handle else b""))
    return out


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    members=st.lists(member_strategy, max_size=12),
    sidecar=sidecar_strategy,
    captions=st.booleans(),
    cut=st.none() | st.floats(min_value=0.0, max_value=1.0),
    batch_rows=st.integers(min_value=1, max_value=4),
    withhold_errored=st.booleans(),
    max_member_bytes=st.sampled_from([1 << 20, 300]),
)
def test_random_shards_release_only_checked_unflagged_members(
    members: list[tuple[str, str, bytes]],
    sidecar: list[tuple[str, str]] | None,
    captions: bool,
    cut: float | None,
    batch_rows: int,
    withhold_errored: bool,
    max_member_bytes: int,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        root.mkdir()
        tar = _write_shard_files(root, members, sidecar, captions)
        if cut is not None:
            data = tar.read_bytes()
            tar.write_bytes(data[: int(cut * len(data))])
        dataset = WebDatasetShards(root)
        dataset.max_member_bytes = max_member_bytes
        shard = ShardRef(tar.name, tar)
        try:
            batches = list(dataset.iter_batches(shard, batch_rows, read_images=True))
        except InputError as exc:
            note(f"shard failed: {exc}")
            assert cut is not None, "an intact tar written by tarfile must read"
            return

        # Every row once, in one batch, numbered densely; every sidecar row among them.
        batch_rows_seen = [set(b.rows.tolist()) for b in batches]
        rows = set().union(*batch_rows_seen) if batch_rows_seen else set()
        assert sum(len(r) for r in batch_rows_seen) == len(rows) == sum(b.row_count() for b in batches)
        assert rows == set(range(len(rows)))
        assert set(range(len(sidecar or []))) <= rows

        listed = pa.concat_tables(
            [MEMBERS_SCHEMA.empty_table(), *(b.members for b in batches if b.members is not None)]
        )
        if cut is None:
            names = [f"{k}.{s}" if s else k for k, s, _ in members]
            assert Counter(listed["name"].to_pylist()) == Counter(names)
        entries = listed.to_pylist()
        # A member named after a sidecar key (dotted keys included) belongs to that key's sidecar row.
        sidecar_keys = {k for k, _ in sidecar or []}
        for entry in entries:
            if any(entry["name"] == k or entry["name"].startswith(k + ".") for k in sidecar_keys):
                assert entry["row"] < len(sidecar or []), entry
        flagged: set[int] = set()
        errored: set[int] = set()
        for batch in batches:
            images = batch.images.to_pylist() if batch.images is not None else [None] * len(batch)
            reasons = batch.read_errors.to_pylist() if batch.read_errors is not None else [None] * len(batch)
            for row, image, reason in zip(batch.rows.tolist(), images, reasons, strict=True):
                if reason:
                    errored.add(row)
                if image is None:
                    continue
                # Every image the scan matches is a listed member of its row, with that digest.
                digest = xxhash.xxh3_128_digest(image)
                assert any(e["row"] == row and e["digest"] == digest for e in entries)
                if hashlib.md5(image).hexdigest() in FLAGGED_MD5S:
                    flagged.add(row)
        drop = flagged | (errored if withhold_errored else set())
        out = Path(tmp) / "release"
        result = dataset.write_shard(shard, np.array(sorted(drop), dtype=np.int64), out, listed)
        released = _released(out / tar.name)

        expected = Counter(e["name"] for e in entries if e["checked"] and e["row"] not in drop)
        assert Counter(name for name, _ in released) == expected
        assert len({name for name, _ in released}) == len(released), "a release never repeats a member name"
        for name, data in released:
            digest = xxhash.xxh3_128_digest(data)
            assert any(e["name"] == name and e["checked"] and e["digest"] == digest for e in entries), name
            for image in FLAGGED_IMAGES:
                assert image not in data, f"flagged bytes released in {name}"
        assert result.rows_written == len(rows) - len(drop & rows)


# --------------------------------------------------------------------------------------------------------------
# the fast header parser reads every header as tarfile does

HEADER_FIELDS = ("name", "mode", "uid", "gid", "size", "mtime", "chksum", "type", "linkname", "uname", "gname")


def _parse(cls: type[tarfile.TarInfo], block: bytes) -> tuple[object, ...]:
    try:
        info = cls.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError as exc:
        return ("refused", type(exc).__name__)
    return tuple(getattr(info, f) for f in (*HEADER_FIELDS, "devmajor", "devminor"))


def _with_checksum(block: bytearray) -> bytes:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


header_strategy = st.builds(
    lambda name, size, kind, fmt, edits, fix: (name, size, kind, fmt, edits, fix),
    # Path segments, so that long names take ustar's prefix field; and any text.
    st.lists(st.text(alphabet="ab._-é\0", min_size=1, max_size=60), min_size=1, max_size=5).map("/".join)
    | st.text(min_size=1, max_size=20),
    st.integers(min_value=-(8**11), max_value=8**12),
    st.sampled_from([b"0", b"\0", b"5", b"2", b"7", b"S", b"x", b"L"]),
    st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT]),
    st.lists(st.tuples(st.integers(min_value=0, max_value=511), st.integers(min_value=0, max_value=255)), max_size=4),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(header=header_strategy, noise=st.binary(min_size=512, max_size=512))
def test_fast_header_parser_agrees_with_tarfile(
    header: tuple[str, int, bytes, int, list[tuple[int, int]], bool], noise: bytes
) -> None:
    name, size, kind, fmt, edits, fix = header
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mtime = size, kind, 1_700_000_000
    try:
        block = bytearray(info.tobuf(fmt, "utf-8", "surrogateescape")[-512:])
    except ValueError:  # a name or number this format cannot hold
        block = bytearray(noise)
    for at, value in edits:
        block[at] = value
    data = _with_checksum(block) if fix else bytes(block)
    assert _parse(FastTarInfo, data) == _parse(tarfile.TarInfo, data)
    assert _byte_sum(data) == sum(data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(members=st.lists(member_strategy, max_size=10), cut=st.none() | st.floats(min_value=0.0, max_value=1.0))
def test_fast_walk_lists_what_tarfile_lists(members: list[tuple[str, str, bytes]], cut: float | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tar = _write_shard_files(Path(tmp), members, None, False)
        if cut is not None:
            data = tar.read_bytes()
            tar.write_bytes(data[: int(cut * len(data))])

        def walk(cls: type[tarfile.TarInfo]) -> list[tuple[object, ...]]:
            seen: list[tuple[object, ...]] = []
            try:
                with tarfile.open(tar, "r:", tarinfo=cls) as archive:
                    seen += [(m.name, m.size, m.type, m.offset, m.offset_data) for m in archive]
            except (tarfile.TarError, OSError) as exc:
                seen.append(("failed", type(exc).__name__))
            return seen

        assert walk(FastTarInfo) == walk(tarfile.TarInfo)


def _header(name: str, kind: bytes = tarfile.REGTYPE, fmt: int = tarfile.USTAR_FORMAT, **fields: object) -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mtime = kind, 5, 1_700_000_000
    for field, value in fields.items():
        setattr(info, field, value)
    return info.tobuf(fmt, "utf-8", "surrogateescape")[-512:]


def _signed_checksum(header: bytes) -> bytes:
    block = bytearray(header)
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(b - 256 if b > 127 else b for b in block)
    return bytes(block)


KNOWN_HEADERS = {
    "ustar long name in the prefix field": _header("p" * 90 + "/" + "n" * 90),
    "old V7 directory (a regular file with a trailing slash)": _header("dir/", tarfile.AREGTYPE),
    "directory": _header("dir//", tarfile.DIRTYPE),
    "GNU header with owner names": _header("k.jpg", fmt=tarfile.GNU_FORMAT, uname="someone", gname="group"),
    "symlink": _header("k.jpg", tarfile.SYMTYPE, linkname="/etc/passwd"),
    "base-256 size": _header("k.jpg", fmt=tarfile.GNU_FORMAT, size=8**12),
    "signed checksum (old writers)": _signed_checksum(_header("café.jpg")),
    "non-UTF-8 name": _header("k.jpg").replace(b"k.jpg", b"k\xe9jpg"),
}


@pytest.mark.parametrize("block", KNOWN_HEADERS.values(), ids=KNOWN_HEADERS.keys())
def test_fast_header_parser_agrees_with_tarfile_on_known_shapes(block: bytes) -> None:
    assert _parse(FastTarInfo, block) == _parse(tarfile.TarInfo, block)
