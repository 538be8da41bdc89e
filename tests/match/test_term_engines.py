"""Term matching on UTF-8 bytes: both engines find the same matches, rows stay apart in the raw Arrow buffer,
word boundaries are read from UTF-8 correctly. Benign made-up words only."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import safeset.kinds.terms.matcher as terms_module
from safeset.banks.store import BankStore
from safeset.io.batch import RowBatch
from safeset.kinds.base import MATCHERS, Hits
from safeset.kinds.terms.matcher import _Automaton, _code_point_at, _lead_byte_before
from safeset.signals.compute import Signals
from tests.helpers import findings, scan
from tests.match.test_terms import CAPTIONS, TERMS, write_dataset

ENGINES = [
    "pyahocorasick",
    pytest.param("hyperscan", marks=pytest.mark.skipif(terms_module.hyperscan is None, reason="no hyperscan")),
]
PATTERNS = ["ab", "b", "abab", "ba", "bö", "ö", "жщ", "щж", "龘", "龘龘", "a b"]


def brute_force(patterns: list[bytes], data: bytes) -> set[tuple[int, int]]:
    """Every occurrence of every pattern, overlapping ones included, as (pattern, end byte)."""
    found = set()
    for i, pattern in enumerate(patterns):
        at = data.find(pattern)
        while at >= 0:
            found.add((i, at + len(pattern)))
            at = data.find(pattern, at + 1)
    return found


@pytest.mark.parametrize("engine", ENGINES)
def test_engine_finds_every_overlapping_occurrence(engine: str) -> None:
    rng = random.Random(7)
    patterns = [p.encode() for p in PATTERNS]
    automaton = _Automaton(patterns, engine)
    assert automaton.engine == engine
    for _ in range(200):
        text = "".join(rng.choice(["a", "b", " ", "ö", "ж", "щ", "龘", "\x00"]) for _ in range(rng.randint(0, 40)))
        data = text.encode()
        if rng.random() < 0.2:  # bytes that are not UTF-8 must not shift the offsets of later matches
            data = data[: len(data) // 2] + b"\xff\xbf" + data[len(data) // 2 :]
        pattern_ids, ends = automaton.find(data)
        got = set(zip(pattern_ids.tolist(), ends.tolist(), strict=True))
        assert len(got) == len(pattern_ids)  # no match reported twice
        assert got == brute_force(patterns, data)


def test_code_points_are_decoded_from_utf8_at_any_offset() -> None:
    text = "aö жщ龘😀x"
    data = np.frombuffer(text.encode(), dtype=np.uint8)
    starts = np.array([len(text[:i].encode()) for i in range(len(text))], dtype=np.int64)
    ends = np.array([len(text[: i + 1].encode()) for i in range(len(text))], dtype=np.int64)
    assert _code_point_at(data, starts).tolist() == [ord(c) for c in text]
    assert _lead_byte_before(data, ends).tolist() == starts.tolist()


def match_rows(bank_dir: Path, bank: str, captions: pa.Array) -> tuple[list[int], list[str]]:
    store = BankStore(bank_dir)
    info = store.info(bank)
    matcher = MATCHERS[info.kind](info, store.folder(info.name))
    batch = RowBatch("t", np.arange(len(captions), dtype=np.int64), None, captions=captions)
    hits: list[Hits] = matcher.match(Signals(batch, []))
    if not hits:
        return [], []
    return hits[0].positions.tolist(), list(hits[0].evidence)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("steps", [(), None], ids=["raw", "normalised"])
def test_rows_stay_apart_and_row_edges_are_word_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str, steps: tuple[str, ...] | None
) -> None:
    monkeypatch.setattr(terms_module, "ENGINE", engine)
    terms = tmp_path / "t.txt"
    terms.write_text("zorblax\nquin frob\n", encoding="utf-8")
    BankStore(tmp_path / "banks").add("t", "term", terms, options={"normalize": steps})
    # A null slot that still owns bytes (Arrow allows it), a term split over two rows, terms touching the start
    # and end of their rows, a NUL inside a caption, and a slice that does not start at offset 0.
    values = ["zzz", "zorblax", "zorblax", "zorblax", "zorb", "lax", "quin\x00frob", "xzorblax"]
    encoded = [v.encode() for v in values]
    offsets = np.cumsum([0] + [len(v) for v in encoded]).astype(np.int32)
    validity = pa.array([v != 1 for v in range(len(values))]).buffers()[1]  # the second slot is null
    whole = pa.StringArray.from_buffers(
        len(values), pa.py_buffer(offsets.tobytes()), pa.py_buffer(b"".join(encoded)), validity
    )
    rows, evidence = match_rows(tmp_path / "banks", "t", whole.slice(1))
    # After the slice: row 0 is the null, rows 1 and 2 are whole-word hits, "zorb"+"lax" is no hit, row 5 holds
    # "quin frob" only once normalisation reads its NUL as a space, and "xzorblax" is not a whole word.
    assert rows == ([1, 2] if steps == () else [1, 2, 5])
    assert all(e.startswith("term L") for e in evidence)


def test_engines_agree_on_the_multilingual_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if terms_module.hyperscan is None:
        pytest.skip("no hyperscan")
    dataset = write_dataset(tmp_path / "laion", CAPTIONS)
    terms = tmp_path / "terms.txt"
    terms.write_text(TERMS, encoding="utf-8")
    near = tmp_path / "near.txt"
    near.write_text("wooden\nbest\n", encoding="utf-8")
    store = BankStore(tmp_path / "banks")
    store.add("words", "term", terms)
    store.add("raw", "term", terms, options={"normalize": ()})
    store.add("rule", "term", terms, options={"near": near, "within": 3})
    results = {}
    for engine in ("hyperscan", "pyahocorasick"):
        monkeypatch.setattr(terms_module, "ENGINE", engine)
        scan(dataset, tmp_path / "banks", tmp_path / engine, batch_rows=4)
        results[engine] = sorted((f["bank"], f["key"], f["evidence"]) for f in findings(tmp_path / engine))
    assert results["hyperscan"] == results["pyahocorasick"]
    assert {bank for bank, _, _ in results["hyperscan"]} == {"words", "raw", "rule"}
