"""Findings name the bank entry that matched, by its list-file line, for every bank kind; banks imported before
lines were kept still load and match, with evidence that names no line."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from safeset.banks.store import BankStore
from safeset.demo import PHOTOS
from safeset.kinds.digest.digestset import DigestSet, StringSet
from safeset.signals import pdq
from safeset.signals.urls import NORMALIZERS
from tests.helpers import findings, scan

URLS = {
    "r-md5": "https://img.example.org/a.jpg",
    "r-url-te": "https://Img.Example.org/B.jpg",
    "r-url-canonical": "https://img.example.org:443/c/./d.jpg#top",
    "r-url-md5": "https://img.example.org/e.jpg",
    "r-domain": "https://cdn.listed.example.net/f.jpg",
    "r-prefix": "https://img.example.org/gallery/g.jpg",
    "r-optout": "https://optout.example.com/h.jpg",
    "r-clean": "https://img.example.org/clean.jpg",
}
MD5_OF = {key: hashlib.md5(key.encode()).hexdigest() for key in URLS}


def _lines(path: Path, *entries: str) -> Path:
    path.write_text("".join(e + "\n" for e in entries), encoding="utf-8")
    return path


def _dataset(root: Path) -> Path:
    root.mkdir()
    keys = list(URLS)
    table = pa.table({"key": keys, "url": [URLS[k] for k in keys], "md5": [MD5_OF[k] for k in keys]})
    pq.write_table(table, root / "part-00000.parquet")
    return root


def _evidence(run: Path) -> dict[tuple[str, str], str]:
    return {(f["key"], f["bank"]): f["evidence"] for f in findings(run)}


def _build_banks(tmp_path: Path) -> Path:
    banks = tmp_path / "banks"
    store = BankStore(banks)
    md5_list = _lines(tmp_path / "md5.txt", "# known", "0" * 32, "", MD5_OF["r-md5"], MD5_OF["r-md5"])
    store.add("md5s", "md5", md5_list)
    store.add(
        "urls",
        "url",
        _lines(
            tmp_path / "u.txt", "https://unrelated.example/x", "img.example.org/b.jpg", "http://IMG.example.org/c/d.jpg"
        ),
    )
    te_md5 = hashlib.md5(NORMALIZERS["te"].normalize(URLS["r-url-md5"]).encode()).hexdigest()
    store.add("url-md5s", "url-md5", _lines(tmp_path / "h.csv", "hash,note", f"{'1' * 32},x", f"{te_md5},y"))
    store.add("domains", "domain", _lines(tmp_path / "d.txt", "other.example", "listed.example.net"))
    store.add("prefixes", "url-prefix", _lines(tmp_path / "p.txt", "# c", "# c", "img.example.org/gallery"))
    store.add("optout", "exclude-domain", _lines(tmp_path / "o.txt", "optout.example.com"))
    return banks


def test_every_kind_names_its_entry_line(tmp_path: Path) -> None:
    dataset, banks = _dataset(tmp_path / "d"), _build_banks(tmp_path)
    scan(dataset, banks, tmp_path / "run", metadata_only=True)
    got = _evidence(tmp_path / "run")
    te_md5 = hashlib.md5(NORMALIZERS["te"].normalize(URLS["r-url-md5"]).encode()).hexdigest()
    assert got[("r-md5", "md5s")] == f"md5:{MD5_OF['r-md5']} L4 (metadata column md5)"  # first of two lines
    assert got[("r-url-te", "urls")] == "url L2 (te form)"
    assert got[("r-url-canonical", "urls")] == "url L3 (canonical form)"
    assert got[("r-url-md5", "url-md5s")] == f"url-md5:{te_md5} L3 (te form)"
    assert got[("r-domain", "domains")] == "domain:listed.example.net L2"
    assert got[("r-prefix", "prefixes")] == "url-prefix:img.example.org/gallery L3"
    assert got[("r-optout", "optout")] == "domain:optout.example.com L1"
    assert not any(key == "r-clean" for key, _ in got)


def _forget_lines(folder: Path, files: list[str]) -> None:
    """Make a bank look imported by a version that kept no lines: files and parquet columns gone, bank.json
    without them."""
    meta = json.loads((folder / "bank.json").read_text())
    for name in files:
        path = folder / name
        if name.endswith(".npy"):
            path.unlink()
            meta["details"]["stored_files"].pop(name)
        else:
            table = pq.read_table(path)
            pq.write_table(table.drop_columns(["line"]), path)
            meta["details"]["stored_files"][name]["bytes"] = path.stat().st_size
    (folder / "bank.json").write_text(json.dumps(meta))


def test_banks_without_lines_still_load_and_match(tmp_path: Path) -> None:
    dataset, banks = _dataset(tmp_path / "d"), _build_banks(tmp_path)
    _forget_lines(banks / "md5s", ["lines.npy"])
    _forget_lines(banks / "url-md5s", ["lines.npy"])
    _forget_lines(banks / "urls", ["urls.parquet"])
    _forget_lines(banks / "domains", ["domains.parquet"])
    _forget_lines(banks / "prefixes", ["prefixes.parquet"])
    scan(dataset, banks, tmp_path / "run", metadata_only=True)
    got = _evidence(tmp_path / "run")
    assert got[("r-md5", "md5s")] == f"md5:{MD5_OF['r-md5']} (metadata column md5)"
    assert got[("r-url-te", "urls")] == "url matched in te form"
    assert got[("r-domain", "domains")] == "domain:listed.example.net"
    assert got[("r-prefix", "prefixes")] == "url-prefix:img.example.org/gallery"
    assert got[("r-url-md5", "url-md5s")].endswith(" (te form)") and " L" not in got[("r-url-md5", "url-md5s")]


def test_pdq_finding_names_its_entry_line(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("coffee", "rocket", "grass"):
        shutil.copy(PHOTOS / f"{name}.jpg", folder / f"{name}.jpg")
    hashes = {n: pdq.hash_images([(PHOTOS / f"{n}.jpg").read_bytes()], "exact").hex(0) for n in ("coffee", "rocket")}
    BankStore(tmp_path / "banks").add(
        "p", "pdq", _lines(tmp_path / "p.txt", "# header comment", hashes["rocket"], "", hashes["coffee"])
    )
    scan(folder, tmp_path / "banks", tmp_path / "run")
    got = {f["key"]: f["evidence"] for f in findings(tmp_path / "run") if f["detector"] == "pdq"}
    coffee = next(e for k, e in got.items() if "coffee" in k)
    rocket = next(e for k, e in got.items() if "rocket" in k)
    assert coffee.startswith(f"pdq:{hashes['coffee']} L4 distance 0 ")
    assert rocket.startswith(f"pdq:{hashes['rocket']} L2 distance 0 ")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=16, max_size=16), min_size=1, max_size=40), st.data())
def test_digest_lookup_returns_the_first_line_of_each_entry(entries: list[bytes], data: st.DataObject) -> None:
    digests = np.frombuffer(b"".join(entries), dtype=np.uint8).reshape(-1, 16)
    lines = np.arange(1, len(entries) + 1, dtype=np.int64) * 3
    dset = DigestSet.build(digests, lines)
    queries = [*data.draw(st.lists(st.sampled_from(entries), max_size=10)), b"\xff" * 15 + b"\x00"]
    found = dset.lookup(np.frombuffer(b"".join(queries), dtype=np.uint8).reshape(-1, 16))
    for query, index in zip(queries, found.tolist(), strict=True):
        if query in entries:
            assert index >= 0 and dset.lines_of(np.array([index])) == [3 * (entries.index(query) + 1)]
        else:
            assert index == -1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=6), min_size=1, max_size=30), st.lists(st.text(max_size=6), max_size=30))
def test_string_positions_agree_with_a_dictionary(values: list[str], queries: list[str]) -> None:
    stored = pa.array(values, type=pa.string())
    got = StringSet(stored).positions(pa.array(queries, type=pa.string())).tolist()
    for query, position in zip(queries, got, strict=True):
        assert (values[position] == query) if query in values else position == -1
