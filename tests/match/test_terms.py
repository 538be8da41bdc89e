"""Term matching end to end: LAION-like parquet with captions in Latin, CJK, Cyrillic and Arabic scripts."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from safeset.banks.store import BankStore
from safeset.errors import SafesetError
from tests.helpers import findings, scan

# (key, caption): benign stand-in words only ("zorblax", "quinfrob flimzap", "блорф", "蛋糕兔", "كعكة").
CAPTIONS = [
    ("lat-plain", "A zorblax on a wooden table"),
    ("lat-evasion-case", "ZÖRBLAX!!! best price"),
    ("lat-evasion-homoglyph", "cheap zоrblах here"),  # Cyrillic о, а, х inside a Latin word
    ("lat-evasion-spaced", "a photo of a Z.O.R.B.L.A.X, 2014"),
    ("lat-evasion-leet", "z00rbl4x sticker"),
    ("lat-longer-word", "zorblaxian architecture"),
    ("lat-phrase", "Quinfrob,  FLIMZAP and friends"),
    ("lat-phrase-apart", "quinfrob with a flimzap"),
    ("cjk", "我爱蛋糕兔子"),
    ("cjk-next-to-latin", "新款zorblax贴纸"),
    ("cyrillic", "БЛОРФ в лесу"),
    ("arabic", "كَعْكَة لذيذة"),
    ("clean-latin", "Sunset over the harbour"),
    ("clean-cjk", "海边的日落"),
    ("clean-cyrillic", "Закат над гаванью"),
    ("clean-arabic", "غروب الشمس فوق الميناء"),
    ("no-caption", None),
]
TERMS = "# stand-ins\nzorblax\ten\t1\nquinfrob flimzap\tes\t0.5\nблорф\tru\n蛋糕兔\tzh\nكعكة\tar\n"
EXPECTED = {
    "lat-plain": "L2",
    "lat-evasion-case": "L2",
    "lat-evasion-homoglyph": "L2",
    "lat-evasion-spaced": "L2",
    "lat-evasion-leet": "L2",
    "lat-phrase": "L3",
    "cjk": "L5",
    "cjk-next-to-latin": "L2",
    "cyrillic": "L4",
    "arabic": "L6",
}


def write_dataset(root: Path, captions: list[tuple[str, str | None]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "key": [k for k, _ in captions],
            "URL": [f"https://img.example.org/{k}.jpg" for k, _ in captions],
            "TEXT": pa.array([c for _, c in captions], type=pa.string()),
            "WIDTH": pa.array([256] * len(captions), type=pa.int32()),
        }
    )
    pq.write_table(table, root / "part-00000.parquet", row_group_size=5)
    return root


def flagged(run: Path, bank: str) -> dict[str, str]:
    return {f["key"]: f["evidence"] for f in findings(run) if f["bank"] == bank}


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "laion", CAPTIONS)


def test_multilingual_scan_flags_evasions_without_echoing_captions(dataset: Path, tmp_path: Path) -> None:
    banks = tmp_path / "banks"
    terms = tmp_path / "terms.txt"
    terms.write_text(TERMS, encoding="utf-8")
    BankStore(banks).add("stand-in-terms", "term", terms)
    summary = scan(dataset, banks, tmp_path / "run", batch_rows=4)
    hits = flagged(tmp_path / "run", "stand-in-terms")
    assert set(hits) == set(EXPECTED)
    for key, line in EXPECTED.items():
        assert hits[key].startswith(f"term {line}"), hits[key]
    assert {f["action"] for f in findings(tmp_path / "run")} == {"review"}
    assert summary["rows_by_action"] == {"review": len(EXPECTED)} and summary["findings_by_detector"] == {"term": 10}
    assert summary["banks"][0]["details"]["normalization"][0] == "nfkc"  # the steps are in the run's provenance
    written = b"".join(p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file())
    for _, caption in CAPTIONS:
        for word in (caption or "").split():
            if len(word) > 4:
                assert word.encode() not in written, word


def test_whole_word_versus_substring_and_normalisation_off(dataset: Path, tmp_path: Path) -> None:
    banks = tmp_path / "banks"
    terms = tmp_path / "terms.txt"
    terms.write_text("zorblax\n", encoding="utf-8")
    store = BankStore(banks)
    store.add("word", "term", terms)
    store.add("substring", "term", terms, options={"match": "substring"})
    store.add("raw", "term", terms, options={"normalize": ()})
    scan(dataset, banks, tmp_path / "run")
    word, substring, raw = (set(flagged(tmp_path / "run", b)) for b in ("word", "substring", "raw"))
    assert "lat-longer-word" not in word and "lat-longer-word" in substring
    assert substring - word == {"lat-longer-word"}
    assert raw == {"lat-plain", "cjk-next-to-latin"}  # only the exact lower-case spelling, as whole words


def test_co_occurrence_rule_needs_both_terms_within_the_window(tmp_path: Path) -> None:
    dataset = write_dataset(
        tmp_path / "laion",
        [
            ("adjacent", "zorblax snargle"),
            ("two-between", "snargle and the zorblax"),
            ("three-between", "zorblax is not a snargle"),
            ("only-a", "zorblax alone"),
            ("only-b", "snargle alone"),
            ("cjk", "蛋糕兔和snargle"),
        ],
    )
    terms, near = tmp_path / "a.txt", tmp_path / "b.txt"
    terms.write_text("zorblax\n蛋糕兔\n", encoding="utf-8")
    near.write_text("# context\nsnargle\n", encoding="utf-8")
    banks = tmp_path / "banks"
    BankStore(banks).add("rule", "term", terms, action="remove", options={"near": near, "within": 2})
    summary = scan(dataset, banks, tmp_path / "run")
    hits = flagged(tmp_path / "run", "rule")
    assert set(hits) == {"adjacent", "two-between", "cjk"}
    assert hits["two-between"] == "term L1 within 2 tokens of near-term L2 (rule: within 2)"
    assert hits["cjk"].startswith("term L2 within 1 tokens")  # 和 is one token
    assert summary["rows_by_action"] == {"remove": 3}


def test_min_score_adds_up_weights_of_distinct_terms(tmp_path: Path) -> None:
    dataset = write_dataset(
        tmp_path / "laion", [("one", "a zorblax"), ("two", "zorblax and quinfrob"), ("same-twice", "zorblax zorblax")]
    )
    terms = tmp_path / "t.txt"
    terms.write_text("zorblax\t\t0.6\nquinfrob\t\t0.6\n", encoding="utf-8")
    banks = tmp_path / "banks"
    BankStore(banks).add("scored", "term", terms, options={"min_score": 1.0})
    scan(dataset, banks, tmp_path / "run")
    assert flagged(tmp_path / "run", "scored") == {"two": "terms L1,L2; score 1.2"}


def test_term_bank_refused_for_a_dataset_without_captions(tmp_path: Path) -> None:
    root = tmp_path / "urls-only"
    root.mkdir()
    pq.write_table(pa.table({"URL": ["https://example.org/a.jpg"]}), root / "part.parquet")
    terms = tmp_path / "t.txt"
    terms.write_text("zorblax\n", encoding="utf-8")
    BankStore(tmp_path / "banks").add("t", "term", terms)
    with pytest.raises(SafesetError, match="no caption column"):
        scan(root, tmp_path / "banks", tmp_path / "run")
    assert not (tmp_path / "run" / "summary.json").exists()


def test_summary_file_lists_term_bank_settings(dataset: Path, tmp_path: Path) -> None:
    terms = tmp_path / "t.txt"
    terms.write_text("zorblax\n", encoding="utf-8")
    BankStore(tmp_path / "banks").add("t", "term", terms, options={"normalize": ("casefold", "spacing")})
    scan(dataset, tmp_path / "banks", tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["banks"][0]["details"]["normalization"] == ["casefold", "spacing"]
