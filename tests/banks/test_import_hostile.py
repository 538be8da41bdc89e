"""Bank import, one behaviour for every kind: encodings, line ends, the header rule, CSV rows read whole,
`safeset hash` output, public suffixes, damaged banks, and a property test over random hostile lists.

Every list here is a synthetic stand-in (random hashes, example.org hosts, made-up words)."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from safeset.banks.listfile import KNOWN_COLUMNS
from safeset.banks.store import BankStore
from safeset.cli.main import app
from safeset.demo import PHOTOS, demo_rows, write_webdataset
from safeset.errors import InputError, SafesetError
from safeset.signals import pdq
from safeset.signals.urls import NORMALIZERS
from tests.helpers import scan

MD5 = [hashlib.md5(f"stand-in {i}".encode()).hexdigest() for i in range(6)]
PDQ = [hashlib.sha256(f"stand-in {i}".encode()).hexdigest() for i in range(6)]

#: A valid entry of each kind, and a line that is no entry and names no column.
VALID = {
    "md5": MD5[0],
    "sha256": PDQ[0],
    "url-md5": MD5[1],
    "url": "https://img.example.org/a/1.jpg",
    "exclude-url": "https://art.example.net/p/2.png",
    "domain": "hotline-standin.example.org",
    "exclude-domain": "optout.example.net",
    "url-prefix": "photos.example.org/gallery",
    "exclude-url-prefix": "artist.example.org/portfolio",
    "pdq": PDQ[1],
    "term": "zorblax",
}
MALFORMED = {kind: "zz!not an entry" for kind in VALID} | {"term": "quinfrob\tenglish!"}
HEADER = {
    "md5": "md5",
    "sha256": "sha256",
    "url-md5": "hash",
    "url": "url",
    "exclude-url": "url",
    "domain": "domain",
    "exclude-domain": "domain",
    "url-prefix": "prefix",
    "exclude-url-prefix": "prefix",
    "pdq": "hash,quality",
    "term": "term\tlang\tweight",
}


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def add(tmp_path: Path, kind: str, source: Path, **options: object) -> object:
    return BankStore(tmp_path / "banks").add("b", kind, source, replace=True, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", sorted(VALID))
def test_invalid_utf8_line_is_named_by_number_and_can_be_skipped(tmp_path: Path, kind: str) -> None:
    entry = VALID[kind].encode()
    source = write(tmp_path / "list.txt", b"# stand-ins\n" + entry + b"\ncaf\xe9 au lait\n# caf\xe9 comment\n")
    with pytest.raises(InputError) as err:
        add(tmp_path, kind, source)
    assert err.value.line == 3 and f"{source}:3: not valid UTF-8" in str(err.value)
    assert not (tmp_path / "banks" / "b").exists()
    info = add(tmp_path, kind, source, skip_invalid=True)
    assert (info.entries, info.skipped_invalid) == (1, 1)  # the Latin-1 comment is a comment, not a bad line


@pytest.mark.parametrize("kind", sorted(VALID))
def test_bom_crlf_and_old_mac_line_ends(tmp_path: Path, kind: str) -> None:
    entry = VALID[kind]
    for ending in ("\r\n", "\r"):
        text = ending.join(["# list", entry, "   ", MALFORMED[kind], entry]) + ending
        source = write(tmp_path / "list.txt", b"\xef\xbb\xbf" + text.encode())
        with pytest.raises(InputError) as err:
            add(tmp_path, kind, source)
        assert err.value.line == 4
        info = add(tmp_path, kind, source, skip_invalid=True)
        assert info.skipped_invalid == 1 and info.details["header"] is None


def test_csv_with_bom_and_header_is_read(tmp_path: Path) -> None:
    source = write(tmp_path / "l.csv", "\ufeffid,md5,note\r\n1," + MD5[0] + ",x\r\n2," + MD5[1] + ",y\r\n")
    info = add(tmp_path, "md5", source, column="md5")
    assert info.entries == 2 and info.details["header"] == {"line": 1, "text": "id,md5,note"}
    assert add(tmp_path, "md5", source).entries == 2  # without --column: the header names the md5 column


def test_malformed_first_line_of_a_pdq_list_is_an_error_not_a_header(tmp_path: Path) -> None:
    source = write(tmp_path / "p.txt", f"{PDQ[0][:-1]}\n{PDQ[1]}\n{PDQ[2]},80\n")
    with pytest.raises(InputError) as err:
        add(tmp_path, "pdq", source)
    assert err.value.line == 1 and "not a 64-hex-digit PDQ hash" in str(err.value)
    info = add(tmp_path, "pdq", source, skip_invalid=True)
    assert (info.entries, info.skipped_invalid, info.details["header"]) == (2, 1, None)


def test_blank_cells_keep_each_hash_with_its_own_quality(tmp_path: Path) -> None:
    rows = ["id,hash,quality", f"1,{PDQ[0]},", f"2,{PDQ[1]},30", "3,,95", f"4,{PDQ[2]},90"]
    source = write(tmp_path / "p.csv", "\n".join(rows) + "\n")
    with pytest.raises(InputError) as err:
        add(tmp_path, "pdq", source, column="hash")
    assert err.value.line == 4 and "no value in column 'hash'" in str(err.value)
    info = add(tmp_path, "pdq", source, column="hash", skip_invalid=True)
    # PDQ[1] has quality 30 (dropped), PDQ[0] none (kept, unknown), PDQ[2] 90: read from their own rows.
    assert (info.entries, info.skipped_invalid, info.details["dropped_low_quality"]) == (2, 1, 1)
    stored = np.load(tmp_path / "banks" / "b" / "pdq.npy")
    quality = np.load(tmp_path / "banks" / "b" / "quality.npy")
    by_hash = {bytes(h).hex(): int(q) for h, q in zip(stored, quality, strict=True)}
    assert by_hash == {PDQ[0]: -1, PDQ[2]: 90}


@pytest.mark.parametrize("kind", sorted(VALID))
def test_one_header_rule_for_every_kind(tmp_path: Path, kind: str) -> None:
    source = write(tmp_path / "l.txt", f"# exported list\n\n{HEADER[kind]}\n{VALID[kind]}\n")
    info = add(tmp_path, kind, source)
    assert info.entries == 1 and info.skipped_invalid == 0
    assert info.details["header"] == {"line": 3, "text": HEADER[kind]}
    recorded = json.loads((tmp_path / "banks" / "b" / "bank.json").read_text())
    assert recorded["details"]["header"]["text"] == HEADER[kind]
    # The same word further down is no header: an invalid line, named.
    source = write(tmp_path / "l.txt", f"{VALID[kind]}\n{HEADER[kind]}\n")
    with pytest.raises(InputError) as err:
        add(tmp_path, kind, source)
    assert err.value.line == 2
    # A malformed first line naming no column is an error too, never taken as a header.
    source = write(tmp_path / "l.txt", f"{MALFORMED[kind]}\n{VALID[kind]}\n")
    with pytest.raises(InputError) as err:
        add(tmp_path, kind, source)
    assert err.value.line == 1


def test_first_line_that_is_a_valid_entry_is_data(tmp_path: Path) -> None:
    # `term` is a valid term: by the one rule it is an entry, not a header.
    info = add(tmp_path, "term", write(tmp_path / "t.txt", "term\nzorblax\n"))
    assert info.entries == 2 and info.details["header"] is None


def test_header_naming_no_entry_column_asks_for_column(tmp_path: Path) -> None:
    source = write(tmp_path / "l.csv", f"id,note\n1,{MD5[0]}\n")
    with pytest.raises(InputError, match="choose one with --column") as err:
        add(tmp_path, "md5", source)
    assert err.value.line == 1
    with pytest.raises(InputError, match="column 'md5' not in CSV header"):
        add(tmp_path, "md5", source, column="md5")


def test_unbalanced_quote_does_not_swallow_the_lines_after_it(tmp_path: Path) -> None:
    source = write(tmp_path / "p.csv", f'hash,quality\n{PDQ[0]},"90\n{PDQ[1]},80\n{PDQ[2]},70\n')
    with pytest.raises(InputError, match="unbalanced quote") as err:
        add(tmp_path, "pdq", source)
    assert err.value.line == 2
    info = add(tmp_path, "pdq", source, skip_invalid=True)
    assert (info.entries, info.skipped_invalid) == (2, 1)


def _safeset_hash_output(tmp_path: Path) -> tuple[Path, dict[str, tuple[str, str, int]]]:
    """`safeset hash` run on copies of two demo photos under paths with spaces (one with --dihedral)."""
    folder = tmp_path / "my photos"
    folder.mkdir()
    runner = CliRunner()
    lines: list[str] = []
    expected = {}
    for name, extra in (("coffee", []), ("rocket", ["--dihedral"])):
        path = folder / f"{name} copy.jpg"
        shutil.copy(PHOTOS / f"{name}.jpg", path)
        result = runner.invoke(app, ["hash", str(path), "--mode", "exact", *extra])
        assert result.exit_code == 0, result.output
        lines += result.stdout.splitlines()
        blob = path.read_bytes()
        hashed = pdq.hash_images([blob], "exact")
        expected[name] = (hashlib.md5(blob).hexdigest(), hashed.hex(0), int(hashed.quality[0]))
    return write(tmp_path / "hashes.tsv", "\n".join(lines) + "\n"), expected


def test_safeset_hash_output_imports_as_pdq_and_as_md5(tmp_path: Path) -> None:
    source, expected = _safeset_hash_output(tmp_path)
    pdq_bank = add(tmp_path, "pdq", source)
    assert pdq_bank.details["list_shape"] == "safeset-hash" and pdq_bank.skipped_invalid == 0
    stored = {bytes(h).hex() for h in np.load(tmp_path / "banks" / "b" / "pdq.npy")}
    kept = {p for _, p, q in expected.values() if q >= 50}
    assert stored == kept and pdq_bank.entries == len(kept)
    quality = sorted(int(q) for q in np.load(tmp_path / "banks" / "b" / "quality.npy"))
    assert quality == sorted(q for _, _, q in expected.values() if q >= 50)
    md5_bank = add(tmp_path, "md5", source)
    stored = {bytes(h).hex() for h in np.load(tmp_path / "banks" / "b" / "digests.npy")}
    assert md5_bank.entries == 2 and stored == {m for m, _, _ in expected.values()}


def test_truncated_safeset_hash_line_is_an_invalid_line(tmp_path: Path) -> None:
    source, _ = _safeset_hash_output(tmp_path)
    write(source, source.read_text() + "cut/off.jpg\t" + MD5[0] + "\n")
    with pytest.raises(InputError, match="not a `safeset hash` line") as err:
        add(tmp_path, "md5", source)
    assert err.value.line == 3


@pytest.mark.parametrize(
    ("kind", "entry"),
    [
        ("domain", "co.kr"),
        ("domain", "*.co.uk"),
        ("exclude-domain", "CO.KR."),
        ("domain", "https://co.kr/some/page"),
        ("url-prefix", "co.kr/gallery"),
        ("exclude-url-prefix", "https://com/"),
    ],
)
def test_public_suffixes_are_refused_naming_the_line(tmp_path: Path, kind: str, entry: str) -> None:
    good = VALID[kind]
    source = write(tmp_path / "l.txt", f"{good}\nexample.co.kr\n{entry}\n")
    with pytest.raises(InputError, match="public suffix") as err:
        add(tmp_path, kind, source)
    assert err.value.line == 3 and f"{source}:3" in str(err.value)
    info = add(tmp_path, kind, source, skip_invalid=True)
    assert (info.entries, info.skipped_invalid) == (2, 1)


# --- damaged banks -------------------------------------------------------------------------------------------


def _scan_with_bank(tmp_path: Path, kind: str, entries: list[str]) -> tuple[Path, Path]:
    dataset = tmp_path / "wds"
    write_webdataset(dataset, demo_rows(shards=1, rows_per_shard=4))
    banks = tmp_path / "banks"
    BankStore(banks).add("known", kind, write(tmp_path / "l.txt", "\n".join(entries) + "\n"))
    return dataset, banks


@pytest.mark.parametrize(
    ("kind", "entries", "damaged"),
    [
        ("md5", MD5[:3], "digests.npy"),
        ("pdq", PDQ[:3], "mih_layout.npy"),
        ("url", ["https://img.example.org/x.jpg"], "urls.parquet"),
        ("domain", ["example.org"], "domains.parquet"),
    ],
)
@pytest.mark.parametrize("how", ["deleted", "truncated", "garbage header"])
def test_damaged_bank_is_refused_by_scan_naming_bank_and_file(
    tmp_path: Path, kind: str, entries: list[str], damaged: str, how: str
) -> None:
    dataset, banks = _scan_with_bank(tmp_path, kind, entries)
    target = banks / "known" / damaged
    if how == "deleted":
        target.unlink()
    elif how == "truncated":
        target.write_bytes(target.read_bytes()[:-5])
    else:
        target.write_bytes(b"\x00" * target.stat().st_size)  # same size: caught by the header check
    with pytest.raises(SafesetError) as err:
        scan(dataset, banks, tmp_path / "run")
    assert "bank 'known'" in str(err.value) and str(target) in str(err.value)
    assert [b.name for b in BankStore(banks).list()] == ["known"]  # still listed, and removable
    BankStore(banks).remove("known")


def test_bank_from_before_file_records_is_still_checked(tmp_path: Path) -> None:
    _, banks = _scan_with_bank(tmp_path, "md5", MD5[:2])
    meta = banks / "known" / "bank.json"
    data = json.loads(meta.read_text())
    del data["details"]["stored_files"]
    meta.write_text(json.dumps(data))
    assert BankStore(banks).info("known").entries == 2
    (banks / "known" / "prefix.npy").unlink()
    with pytest.raises(InputError, match="bank 'known' is damaged: stored file missing"):
        BankStore(banks).info("known")
    del data["details"]["bitmap_bits"]
    meta.write_text(json.dumps(data))
    with pytest.raises(InputError, match="bank metadata lacks 'bitmap_bits'"):
        BankStore(banks).info("known")


def test_verify_finds_a_changed_byte(tmp_path: Path) -> None:
    _, banks = _scan_with_bank(tmp_path, "md5", MD5[:2])
    store = BankStore(banks)
    assert store.verify("known").entries == 2
    target = banks / "known" / "digests.npy"
    blob = bytearray(target.read_bytes())
    blob[-1] ^= 1
    target.write_bytes(bytes(blob))
    store.info("known")  # same size, same header: the cheap check passes
    with pytest.raises(InputError, match="changed since import"):
        store.verify("known")


# --- property: random hostile lists --------------------------------------------------------------------------

_label = st.from_regex(r"[a-z][a-z0-9]{2,9}", fullmatch=True)
_hex32 = st.binary(min_size=16, max_size=16).map(bytes.hex)
_hex64 = st.binary(min_size=32, max_size=32).map(bytes.hex)
_word = _label.filter(lambda w: w not in KNOWN_COLUMNS and w != "pdq")
_bad_hex = st.one_of(
    st.integers(1, 31).flatmap(lambda n: st.text("0123456789abcdef", min_size=n, max_size=n)),
    st.text("0123456789abcdef", min_size=33, max_size=40).filter(lambda t: len(t) != 64),
)
_bad_utf8 = st.tuples(_label, st.sampled_from([b"\xff", b"\xc3(", b"\x80", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\xaf"]))

#: kind -> (header, valid entry strategy, malformed entry strategy, what the stored entry of a valid line is)
PROPERTY_KINDS = {
    "md5": ("md5", st.one_of(_hex32, _hex32.map(str.upper)), st.one_of(_bad_hex, _word)),
    "domain": (
        "domain",
        st.tuples(_label, st.sampled_from(["example.org", "Example.NET", "example.co.uk"])).map(".".join),
        st.one_of(_word, st.sampled_from(["co.kr", "com", "org.uk", "bad domain!", "a..b"])),
    ),
    "url": (
        "url",
        st.tuples(_label, _label).map(lambda p: f"https://{p[0]}.example.org/{p[1]}.jpg"),
        st.one_of(_word, _label.map(lambda w: f"not a url {w}")),
    ),
    "pdq": (
        "hash,quality",
        st.one_of(_hex64, st.tuples(_hex64, st.integers(50, 100)).map(lambda p: f"{p[0]},{p[1]}")),
        st.one_of(_bad_hex, _hex64.map(lambda h: f"{h},101"), _word),
    ),
}


def _stored(kind: str, folder: Path) -> set[str]:
    if kind == "md5":
        return {bytes(h).hex() for h in np.load(folder / "digests.npy")}
    if kind == "pdq":
        return {bytes(h).hex() for h in np.load(folder / "pdq.npy")}
    if kind == "domain":
        return set(pq.read_table(folder / "domains.parquet")["domain"].to_pylist())
    return set(pq.read_table(folder / "urls.parquet")["te"].to_pylist())


def _expected(kind: str, entry: str) -> str:
    if kind in ("md5", "pdq"):
        return entry.split(",")[0].lower()
    if kind == "domain":
        return entry.lower()
    return NORMALIZERS["te"].normalize(entry)


@st.composite
def hostile_lists(draw: st.DrawFn) -> tuple[str, bytes, list[int], list[str], int | None]:
    """(kind, file bytes, numbers of the bad lines, valid entries, header line or None)."""
    kind = draw(st.sampled_from(sorted(PROPERTY_KINDS)))
    header, valid, malformed = PROPERTY_KINDS[kind]
    items = draw(
        st.lists(
            st.one_of(
                st.tuples(st.just("valid"), valid),
                st.tuples(st.just("bad"), malformed),
                st.tuples(st.just("badutf8"), _bad_utf8),
                st.tuples(st.just("comment"), st.sampled_from([b"# note", b"  # caf\xe9 (Latin-1)", b"#"])),
                st.tuples(st.just("blank"), st.sampled_from([b"", b"   ", b"\t"])),
            ),
            max_size=25,
        )
    )
    leading_comments = draw(st.integers(0, 2))
    with_header = draw(st.booleans())
    ending = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    lines: list[bytes] = [b"# exported list"] * leading_comments + ([header.encode()] if with_header else [])
    bad: list[int] = []
    entries: list[str] = []
    for what, value in items:
        if what == "valid":
            entries.append(value)
            lines.append(draw(st.sampled_from(["", " "])).encode() + value.encode())
        elif what == "bad":
            bad.append(len(lines) + 1)
            lines.append(value.encode())
        elif what == "badutf8":
            bad.append(len(lines) + 1)
            lines.append(value[0].encode() + value[1])
        else:
            lines.append(value)
    data = (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + ending.join(lines)
    if draw(st.booleans()):
        data += ending
    header_line = leading_comments + 1 if with_header else None
    return kind, data, bad, entries, header_line


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_lists())
def test_any_hostile_list_is_refused_at_a_bad_line_or_imported_exactly(
    case: tuple[str, bytes, list[int], list[str], int | None],
) -> None:
    kind, data, bad, entries, header_line = case
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = write(root / "list.txt", data)
        store = BankStore(root / "banks")
        if bad:
            with pytest.raises(InputError) as err:
                store.add("b", kind, source)
            assert err.value.line in bad and str(source) in str(err.value)
            assert not (root / "banks" / "b").exists()
        info = store.add("b", kind, source, skip_invalid=True, replace=True)
        assert info.skipped_invalid == len(bad)
        assert _stored(kind, root / "banks" / "b") == {_expected(kind, e) for e in entries}
        counted = info.entries if kind == "url" else info.entries + info.duplicates
        assert counted == len(entries)
        header = info.details["header"]
        assert (header["line"] if header else None) == header_line
