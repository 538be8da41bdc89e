"""Hostile and odd parquet shards: wrong column types, text that is not UTF-8, unreadable first shards.

None of these may end in a traceback: a wrong type in the first readable shard is refused before any work,
naming file, column and type; in a later shard it fails that shard alone; invalid UTF-8 makes errored rows.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safeset.banks.store import BankStore
from safeset.errors import ColumnError, InputError
from safeset.io.columns import ColumnOptions, ColumnTypeError, text_column
from safeset.io.parquet import ParquetDataset
from tests.conftest import laion_table, write_list
from tests.helpers import assert_reconciles, clean, errors, findings, scan

URLS = [f"https://img.example.org/p/{i}.jpg" for i in range(6)]
MD5S = [hashlib.md5(f"image-{i}".encode()).hexdigest() for i in range(6)]


@pytest.fixture
def banks(tmp_path: Path) -> Path:
    """Row 1 by its URL, row 4 by its md5, row 2 by a caption term (rows 3 and 5 carry the bad bytes below)."""
    root = tmp_path / "banks"
    store = BankStore(root)
    store.add("urls", "url", write_list(tmp_path / "u.txt", [URLS[1], URLS[3]]))
    store.add("md5", "md5", write_list(tmp_path / "m.txt", [MD5S[4], MD5S[5]]))
    store.add("terms", "term", write_list(tmp_path / "t.txt", ["zebra"]), action="remove")
    return root


def _shard(root: Path, name: str, table: pa.Table) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, root / name)
    return root / name


def _text(values: list[bytes], kind: pa.DataType) -> pa.Array:
    """Values as `kind` without UTF-8 validation, as a careless writer would store them."""
    raw = pa.array(values, type=pa.binary())
    if pa.types.is_binary(kind):
        return raw
    if pa.types.is_large_binary(kind):
        return raw.cast(pa.large_binary())
    return raw.view(pa.string()) if pa.types.is_string(kind) else raw.cast(pa.large_binary()).view(pa.large_string())


def _good_table() -> pa.Table:
    return pa.table(
        {
            "key": [f"k{i}" for i in range(6)],
            "url": URLS,
            "caption": ["a cat", "a dog", "a zebra", "a bird", "a fish", "a cow"],
            "md5": MD5S,
        }
    )


# --------------------------------------------------------------------------------------------------------------
# wrong column types


WRONG_TYPES = {  # case: (column written, the good column it replaces, values, options)
    "list-typed url": ("url", "url", pa.array([[u] for u in URLS]), ColumnOptions()),
    "struct caption": ("caption", "caption", pa.array([{"text": "x", "lang": "en"}] * 6), ColumnOptions()),
    "float key": ("key", "key", pa.array([float(i) for i in range(6)]), ColumnOptions()),
    "requested float key": ("id", "key", pa.array([float(i) for i in range(6)]), ColumnOptions(key_col="id")),
    "integer md5": ("md5", "md5", pa.array(range(6), pa.int64()), ColumnOptions()),
    "map url": ("URL", "url", pa.array([[("u", "v")]] * 6, pa.map_(pa.string(), pa.string())), ColumnOptions()),
    "timestamp caption": ("TEXT", "caption", pa.array(np.arange(6).astype("datetime64[s]")), ColumnOptions()),
    "boolean url": ("url", "url", pa.array([True] * 6), ColumnOptions(url_col="url")),
}


@pytest.mark.parametrize("case", sorted(WRONG_TYPES))
def test_wrongly_typed_column_is_refused_before_any_work(case: str, banks: Path, tmp_path: Path) -> None:
    column, replaced, values, options = WRONG_TYPES[case]
    root = tmp_path / "data"
    path = _shard(root, "part-0.parquet", _good_table().drop_columns([replaced]).append_column(column, values))
    stored_type = pq.read_schema(path).field(column).type  # as read back (parquet names list items `element`)
    with pytest.raises(ColumnTypeError) as refused:
        scan(root, banks, tmp_path / "run", columns=options)
    message = str(refused.value)
    assert message.startswith(f"{path}: column {column!r} has type {stored_type}; expected ")
    assert isinstance(refused.value, ColumnError)  # refused like a missing column: before any work
    assert not (tmp_path / "run").exists()


def test_wrongly_typed_caption_is_no_problem_when_captions_are_not_read(tmp_path: Path) -> None:
    table = _good_table().drop_columns(["caption"]).append_column("caption", pa.array([{"text": "x"}] * 6))
    _shard(tmp_path / "data", "part-0.parquet", table)
    banks = tmp_path / "b"
    BankStore(banks).add("m", "md5", write_list(tmp_path / "m.txt", [MD5S[4]]))
    summary = scan(tmp_path / "data", banks, tmp_path / "run")
    assert (summary["rows_in"], summary["rows_flagged"], summary["shards_failed"]) == (6, 1, 0)


def test_wrong_type_in_a_later_shard_fails_that_shard_only(banks: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    _shard(root, "part-0.parquet", _good_table())
    later = _good_table().drop_columns(["url"]).append_column("url", pa.array([[u] for u in URLS]))
    _shard(root, "part-1.parquet", later)
    summary = scan(root, banks, tmp_path / "run")
    by_shard = {s["shard"]: s for s in summary["shards"]}
    assert by_shard["part-0.parquet"]["error"] is None and by_shard["part-0.parquet"]["rows_flagged"] == 5
    failed = by_shard["part-1.parquet"]["error"]
    assert "part-1.parquet" in failed and "'url'" in failed and "list<" in failed
    assert summary["shards_failed"] == 1 and summary["rows_in"] == 12
    with pytest.raises(InputError, match=r"part-1\.parquet"):
        shard = ParquetDataset(root).shards()[1]
        next(ParquetDataset(root).iter_batches(shard, 100, False))


ACCEPTED_TEXT_TYPES = {
    "string": pa.string(),
    "large_string": pa.large_string(),
    "string_view": pa.string_view(),
    "binary": pa.binary(),
    "large_binary": pa.large_binary(),
    "dictionary": pa.dictionary(pa.int32(), pa.string()),
}


@pytest.mark.parametrize("name", sorted(ACCEPTED_TEXT_TYPES))
def test_every_accepted_text_type_is_matched(name: str, banks: Path, tmp_path: Path) -> None:
    kind = ACCEPTED_TEXT_TYPES[name]
    table = _good_table()
    converted = pa.table({c: table[c].cast(kind) for c in table.column_names})
    _shard(tmp_path / "data", "part-0.parquet", converted)
    summary = scan(tmp_path / "data", banks, tmp_path / "run")
    assert (summary["rows_in"], summary["rows_errored"], summary["shards_failed"]) == (6, 0, 0)
    got = sorted((f["key"], f["bank"]) for f in findings(tmp_path / "run"))
    assert got == [("k1", "urls"), ("k2", "terms"), ("k3", "urls"), ("k4", "md5"), ("k5", "md5")]


def test_integer_and_null_columns(banks: Path, tmp_path: Path) -> None:
    table = _good_table().drop_columns(["key", "caption"])
    table = table.append_column("key", pa.array(range(100, 106), pa.uint32()))
    table = table.append_column("caption", pa.nulls(6))
    _shard(tmp_path / "data", "part-0.parquet", table)
    scan(tmp_path / "data", banks, tmp_path / "run")
    assert sorted(f["key"] for f in findings(tmp_path / "run")) == ["101", "103", "104", "105"]


def test_duplicate_column_name_is_refused(banks: Path, tmp_path: Path) -> None:
    table = _good_table().append_column("url", pa.array(URLS[::-1]))
    _shard(tmp_path / "data", "part-0.parquet", table)
    with pytest.raises(ColumnError, match="'url' appears 2 times"):
        scan(tmp_path / "data", banks, tmp_path / "run")


# --------------------------------------------------------------------------------------------------------------
# invalid UTF-8


@pytest.mark.parametrize("kind", [pa.string(), pa.binary(), pa.large_string(), pa.large_binary()], ids=str)
@pytest.mark.parametrize("column", ["url", "caption", "key", "md5"])
def test_invalid_utf8_makes_errored_rows_and_the_rest_is_scanned(
    column: str, kind: pa.DataType, banks: Path, tmp_path: Path
) -> None:
    table = _good_table()
    values = [v.encode() for v in table[column].to_pylist()]
    # Row 3's URL and row 5's md5 are in the banks: with their bytes spoiled, nothing may match them.
    values[3] = values[3][:8] + b"\xff\xfe" + values[3][8:]
    values[5] = values[5][:4] + b"\xc3(" + values[5][6:]
    table = table.set_column(table.column_names.index(column), column, _text(values, kind))
    _shard(tmp_path / "data", "part-0.parquet", table)
    summary = scan(tmp_path / "data", banks, tmp_path / "run")
    assert (summary["rows_in"], summary["shards_failed"]) == (6, 0)
    errored = {e["row"]: e for e in errors(tmp_path / "run")}
    flagged = {(f["row"], f["bank"]) for f in findings(tmp_path / "run")}
    expected = {(1, "urls"), (2, "terms"), (3, "urls"), (4, "md5"), (5, "md5")}
    if column == "url":
        expected.discard((3, "urls"))
    if column == "md5":
        expected.discard((5, "md5"))
    assert flagged == expected
    assert set(errored) == {3, 5}
    assert all(e["reason"] == f"invalid UTF-8 in column {column!r}" for e in errored.values())
    if column == "key":  # the key still names its row, escaped
        assert (errored[3]["key"], errored[5]["key"]) == ("k3\\xff\\xfe", "k5\\xc3(")


def test_invalid_utf8_values_are_null_in_the_batch(tmp_path: Path) -> None:
    table = _good_table()
    urls = [u.encode() for u in URLS]
    urls[2] = b"https://img.example.org/\xe9t\xe9.jpg"
    captions = [c.encode() for c in table["caption"].to_pylist()]
    captions[2], captions[4] = b"\x80", b"caf\xe9"
    table = table.set_column(1, "url", _text(urls, pa.string())).set_column(2, "caption", _text(captions, pa.binary()))
    _shard(tmp_path / "data", "part-0.parquet", table)
    dataset = ParquetDataset(tmp_path / "data")
    (batch,) = list(dataset.iter_batches(dataset.shards()[0], 100, False))
    assert batch.urls is not None and batch.captions is not None and batch.read_errors is not None
    assert batch.urls.to_pylist() == [*URLS[:2], None, *URLS[3:]]
    assert batch.captions.to_pylist() == ["a cat", "a dog", None, "a bird", None, "a cow"]
    assert batch.read_errors.to_pylist() == [
        None,
        None,
        "invalid UTF-8 in column 'url'; invalid UTF-8 in column 'caption'",
        None,
        "invalid UTF-8 in column 'caption'",
        None,
    ]
    assert batch.keys_at(np.arange(6)) == [f"k{i}" for i in range(6)]


def test_valid_batches_carry_no_read_errors(laion_dir: Path) -> None:
    dataset = ParquetDataset(laion_dir)
    batches = list(dataset.iter_batches(dataset.shards()[0], 16, False))
    assert batches and all(b.read_errors is None for b in batches)


def test_release_keeps_the_bytes_of_kept_errored_rows(tmp_path: Path) -> None:
    table = _good_table()
    urls = [u.encode() for u in URLS]
    urls[1] = b"https://img.example.org/\xff.jpg"
    table = table.set_column(1, "url", _text(urls, pa.string()))
    _shard(tmp_path / "data", "part-0.parquet", table)
    banks = tmp_path / "b"
    BankStore(banks).add("m", "md5", write_list(tmp_path / "m.txt", [MD5S[0]]))
    BankStore(banks).add("u", "url", write_list(tmp_path / "u.txt", [URLS[2]]))
    summary = scan(tmp_path / "data", banks, tmp_path / "run")
    assert (summary["rows_flagged"], summary["rows_errored"]) == (2, 1)
    manifest = clean(tmp_path / "data", tmp_path / "run", tmp_path / "release", keep_errored=True)
    assert_reconciles(manifest)
    released = pq.read_table(tmp_path / "release" / "part-0.parquet")
    assert released["url"].chunk(0).view(pa.binary()).to_pylist() == [urls[1], *urls[3:]]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.binary(max_size=12)), max_size=40), st.sampled_from(["string", "binary"]))
def test_text_column_isolates_exactly_the_invalid_values(values: list[bytes | None], kind: str) -> None:
    raw = pa.array(values, type=pa.binary())
    array = raw.view(pa.string()) if kind == "string" else raw
    strings, invalid = text_column(array)

    def decoded(value: bytes | None) -> str | None:
        try:
            return None if value is None else value.decode("utf-8")
        except UnicodeDecodeError:
            return None

    expected_invalid = [v is not None and decoded(v) is None for v in values]
    assert strings.to_pylist() == [decoded(v) for v in values]
    assert (invalid is None) == (not any(expected_invalid))
    if invalid is not None:
        assert invalid.tolist() == expected_invalid
    escaped, _ = text_column(array, escape_invalid=True)
    assert escaped.to_pylist() == [None if v is None else v.decode("utf-8", "backslashreplace") for v in values]


# --------------------------------------------------------------------------------------------------------------
# unreadable first shard


def test_unreadable_first_shard_fails_alone(banks: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "part-0.parquet").write_bytes(b"PAR1 this is not a parquet file PAR1")
    _shard(root, "part-1.parquet", _good_table())
    summary = scan(root, banks, tmp_path / "run")
    by_shard = {s["shard"]: s for s in summary["shards"]}
    assert "part-0.parquet" in by_shard["part-0.parquet"]["error"]
    assert by_shard["part-1.parquet"]["error"] is None and by_shard["part-1.parquet"]["rows_flagged"] == 5
    assert summary["shards_failed"] == 1


def test_column_check_uses_the_first_readable_shard(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "a.parquet").write_bytes(b"garbage")
    _shard(root, "b.parquet", laion_table(5))
    offer = ParquetDataset(root).check()
    assert offer["has_urls"] and offer["metadata_hashes"] == ["md5"]
    with pytest.raises(ColumnError, match=r"b\.parquet: column 'nope' not found"):
        ParquetDataset(root, ColumnOptions(url_col="nope")).check()


def test_no_readable_shard_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    for name in ("a.parquet", "b.parquet"):
        (root / name).write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"none of the 2 \.parquet files is readable"):
        ParquetDataset(root).check()
