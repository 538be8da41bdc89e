"""Attack the whole pipeline: random hostile webdataset shards through scan and clean.

For every generated dataset — extra and duplicate members, images under any name, dotted keys, bad UTF-8 and
bad JSON members, sidecars that disagree with the tar, truncation at any byte, junk appended — the invariants of
a release must hold: no exception escapes, rows in = kept + removed + errored per shard and in total, and no
flagged image's bytes appear anywhere in the release (raw files and every member of every released tar).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from safeset.banks.store import BankStore
from safeset.policy.actions import ReleasePolicy
from safeset.release.clean import clean_dataset
from safeset.scan.config import ScanConfig
from safeset.scan.driver import run_scan


@cache
def image_pool() -> tuple[bytes, ...]:
    """Small benign images in several formats; the first two play the "known-bad" role in the bank."""
    blobs = []
    for i, (fmt, size) in enumerate([("JPEG", 24), ("PNG", 20), ("JPEG", 32), ("PNG", 16), ("GIF", 18), ("BMP", 12)]):
        image = Image.new("RGB", (size, size), ((37 * i) % 256, (91 * i) % 256, (53 * i + 40) % 256))
        for x in range(size):
            image.putpixel((x, (x * (i + 1)) % size), (255 - 20 * i, 10 * i, 128))
        buffer = io.BytesIO()
        image.save(buffer, format=fmt)
        blobs.append(buffer.getvalue())
    return tuple(blobs)


FLAGGED = (0, 1)  # indices into image_pool()

member_kinds = st.sampled_from(
    ["image", "image", "image", "txt", "json", "json-list", "json-bad", "txt-bad", "unknown", "npy-junk"]
)
image_names = st.sampled_from(["jpg", "png", "jpeg", "webp", "jfif", "orig.jpg", "bin", "JPG", "txt", "json"])


@dataclass
class Member:
    name: str
    data: bytes


@st.composite
def samples(draw: st.DrawFn) -> list[Member]:
    """Members of one to five samples, in tar order (possibly interleaved or repeated)."""
    members: list[Member] = []
    for index in range(draw(st.integers(1, 5))):
        key = draw(st.sampled_from([f"{index:05d}", f"img.{index:03d}", f"d/{index:04d}"]))
        for _ in range(draw(st.integers(1, 4))):
            kind = draw(member_kinds)
            if kind == "image":
                blob = image_pool()[draw(st.integers(0, len(image_pool()) - 1))]
                members.append(Member(f"{key}.{draw(image_names)}", blob))
            elif kind == "txt":
                members.append(Member(f"{key}.txt", "a caption ✓".encode()))
            elif kind == "txt-bad":
                members.append(Member(f"{key}.txt", b"\xff\xfe caption"))
            elif kind == "json":
                members.append(Member(f"{key}.json", json.dumps({"url": f"https://example.org/{index}.jpg"}).encode()))
            elif kind == "json-list":
                members.append(Member(f"{key}.json", b"[1, 2, 3]"))
            elif kind == "json-bad":
                members.append(Member(f"{key}.json", b'{"url": "\xff"'))
            elif kind == "npy-junk":
                members.append(Member(f"{key}.npy", b"\x93NUMPY junk"))
            else:
                extension = draw(st.sampled_from(["dat", "xyz", "bin"]))
                members.append(Member(f"{key}.{extension}", draw(st.binary(min_size=0, max_size=64))))
    if draw(st.booleans()) and members:
        members.append(draw(st.sampled_from(members)))  # a duplicate member name
    return members


def build_tar(members: list[Member]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for member in members:
            info = tarfile.TarInfo(member.name)
            info.size = len(member.data)
            tar.addfile(info, io.BytesIO(member.data))
    return buffer.getvalue()


def sidecar(keys: list[str]) -> pa.Table:
    return pa.table(
        {
            "key": keys,
            "url": [f"https://example.org/{k}.jpg" for k in keys],
            "caption": [f"caption {k}" for k in keys],
            "status": ["success"] * len(keys),
        }
    )


@st.composite
def hostile_shards(draw: st.DrawFn) -> dict[str, object]:
    members = draw(samples())
    data = build_tar(members)
    damage = draw(st.sampled_from(["none", "none", "truncate", "junk"]))
    if damage == "truncate":
        data = data[: draw(st.integers(0, max(0, len(data) - 1)))]
    elif damage == "junk":
        data += draw(st.binary(min_size=1, max_size=600))
    keys = sorted({m.name.split(".")[0] for m in members})
    meta = draw(st.sampled_from(["none", "exact", "subset", "superset", "garbage"]))
    listed = {"none": None, "exact": keys, "subset": keys[:-1], "superset": [*keys, "99999"], "garbage": []}[meta]
    return {"tar": data, "sidecar": listed, "garbage_sidecar": meta == "garbage"}


def release_bytes(release: Path) -> list[bytes]:
    """Every file's bytes, and every member of every tar that still opens (a release must open)."""
    chunks = []
    for path in sorted(release.rglob("*")):
        if path.is_file():
            chunks.append(path.read_bytes())
            if path.suffix == ".tar":
                with tarfile.open(path) as tar:
                    chunks.extend(tar.extractfile(m).read() for m in tar if m.isfile())  # type: ignore[union-attr]
    return chunks


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(shard=hostile_shards(), keep_errored=st.booleans())
def test_hostile_shards_never_leak_flagged_bytes(
    tmp_path_factory: object, shard: dict[str, object], keep_errored: bool
) -> None:
    work = tmp_path_factory.mktemp("hostile")  # type: ignore[attr-defined]
    dataset = work / "wds"
    dataset.mkdir()
    (dataset / "00000.tar").write_bytes(shard["tar"])  # type: ignore[arg-type]
    if shard["garbage_sidecar"]:
        (dataset / "00000.parquet").write_bytes(b"PAR1 not really")
    elif shard["sidecar"] is not None:
        pq.write_table(sidecar(shard["sidecar"]), dataset / "00000.parquet")  # type: ignore[arg-type]
    # A second, intact shard: whatever the first does, this one is scanned and released.
    pq.write_table(sidecar(["00000"]), dataset / "00001.parquet")
    (dataset / "00001.tar").write_bytes(build_tar([Member("00000.jpg", image_pool()[2])]))

    flagged = [image_pool()[i] for i in FLAGGED]
    banks = work / "banks"
    (work / "md5.txt").write_text("".join(hashlib.md5(b).hexdigest() + "\n" for b in flagged))
    BankStore(banks).add("known", "md5", work / "md5.txt")

    config = ScanConfig(dataset=str(dataset), input_format="webdataset", banks_dir=str(banks), bank_names=("known",))
    summary = run_scan(config, work / "run").summary
    assert summary["rows_in"] == summary["rows_flagged"] + summary["rows_errored"] + summary["rows_clean"]
    manifest = clean_dataset(
        dataset,
        work / "run",
        work / "release",
        ReleasePolicy(keep_errored=keep_errored, roadmap_bound=0.0),
        allow_failed_shards=True,
    )
    for account in manifest["shards"]:
        assert account["rows_in"] == account["rows_kept"] + account["rows_removed"] + account["rows_errored"]
    assert manifest["rows_in"] == summary["rows_in"]
    by_shard = {a["shard"]: a for a in manifest["shards"]}
    assert by_shard["00001.tar"]["rows_kept"] == 1  # the intact shard is untouched by its neighbour
    for chunk in release_bytes(work / "release"):
        for bad in flagged:
            assert bad not in chunk
