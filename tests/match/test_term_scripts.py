"""Script-aware term matching (issue 13): invisible characters, spacing in every script, word boundaries chosen
per character (Hangul particles, scripts without spaces), hyphen and joiner spellings, and recall per script on
synthetic multilingual captions against an independent oracle. Benign stand-in words only."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import safeset.kinds.terms.matcher as terms_module
from safeset.banks.store import BankStore
from safeset.errors import InputError
from safeset.io.batch import RowBatch
from safeset.kinds.base import MATCHERS, Hits
from safeset.signals.compute import Signals
from safeset.signals.text import TextNormalizer
from tests.match import multilingual
from tests.match.test_term_engines import ENGINES

# One bank, terms in every script.
BANK_TERMS = ["zorblax", "t-shirt", "блорф", "여성", "고양이", "북한", "蛋糕兔", "ネコカフェ", "แมวดำ", "كعكة"]


def make_bank(root: Path, terms: list[str], **options: object) -> tuple[Path, str]:
    root.mkdir(parents=True, exist_ok=True)
    source = root / "terms.txt"
    source.write_text("\n".join(terms) + "\n", encoding="utf-8")
    BankStore(root / "banks").add("t", "term", source, options=dict(options))
    return root / "banks", "t"


def matched(banks: Path, name: str, captions: list[str | None]) -> dict[int, str]:
    """Row -> evidence for the rows the bank flags, through the scan's own path (Signals -> TermMatcher)."""
    store = BankStore(banks)
    info = store.info(name)
    matcher = MATCHERS[info.kind](info, store.folder(info.name))
    values = pa.array(captions, type=pa.string())
    batch = RowBatch("t", np.arange(len(captions), dtype=np.int64), None, captions=values)
    hits: list[Hits] = matcher.match(Signals(batch, []))
    return {int(p): e for h in hits for p, e in zip(h.positions.tolist(), h.evidence, strict=True)}


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(terms_module, "ENGINE", request.param)
    return str(request.param)


@pytest.fixture
def bank(tmp_path: Path) -> tuple[Path, str]:
    return make_bank(tmp_path, BANK_TERMS)


def line_of(term: str) -> str:
    return f"term L{BANK_TERMS.index(term) + 1}; score 1"


@pytest.mark.parametrize(
    ("caption", "term"),
    [
        ("여성의 가방", "여성"),
        ("귀여운 고양이가 잔다", "고양이"),
        ("북한과 남한", "북한"),
        ("고양이에서", "고양이"),
        ("여성", "여성"),
        ("zorblax가 좋아요", "zorblax"),  # a particle after a Latin word
        ("LG고양이", "고양이"),  # a script change starts a Hangul word
        ("我爱蛋糕兔子", "蛋糕兔"),
        ("新款zorblax贴纸", "zorblax"),
        ("かわいいネコカフェです", "ネコカフェ"),
        ("ร้านแมวดำน่ารัก", "แมวดำ"),
        ("كعكة لذيذة", "كعكة"),
        ("БЛОРФ в лесу", "блорф"),
    ],
)
def test_boundaries_fit_the_script_of_each_character(
    bank: tuple[Path, str], engine: str, caption: str, term: str
) -> None:
    assert matched(*bank, [caption]) == {0: line_of(term)}


@pytest.mark.parametrize(
    "caption",
    [
        "zorblaxian architecture",  # a Latin term inside a longer word
        "superzorblax",
        "남북한 지도",  # a Hangul term inside a Hangul word, not at its start
        "미여성",
        "блорфы",  # whole words in Cyrillic too
        "zorb lax",
    ],
)
def test_no_match_inside_words_of_spaced_scripts(bank: tuple[Path, str], engine: str, caption: str) -> None:
    assert matched(*bank, [caption]) == {}


@pytest.mark.parametrize("invisible", multilingual.INVISIBLE)
def test_invisible_characters_inside_caption_words_are_ignored(
    bank: tuple[Path, str], engine: str, invisible: str
) -> None:
    captions = [
        f"a zor{invisible}blax here",
        f"여{invisible}성의 사진",
        f"蛋糕{invisible}兔",
        f"kein zorblax{invisible}ian",
    ]
    assert matched(*bank, captions) == {0: line_of("zorblax"), 1: line_of("여성"), 2: line_of("蛋糕兔")}


def test_bank_terms_with_invisible_characters_match_plain_captions(tmp_path: Path) -> None:
    banks, name = make_bank(tmp_path, ["zor\u200bblax", "soft\u00adhyphen", "고\u200d양이", "ネコ\ufe0fカフェ"])
    stored = pq.read_table(banks / name / "terms.parquet").column("pattern").to_pylist()
    assert stored == TextNormalizer().normalize_strings(["zorblax", "softhyphen", "고양이", "ネコカフェ"])
    found = matched(banks, name, ["zorblax", "softhyphen", "고양이가", "ネコカフェ", "soft hyphen"])
    assert sorted(found) == [0, 1, 2, 3]


@pytest.mark.parametrize("steps", [(), ("casefold", "spacing")], ids=["raw", "without-invisible-step"])
def test_a_bank_term_keeping_an_invisible_character_is_refused_by_line(tmp_path: Path, steps: tuple[str, ...]) -> None:
    source = tmp_path / "terms.txt"
    source.write_text("zorblax\nzor\u200bblax\n", encoding="utf-8")
    with pytest.raises(InputError, match="invisible format character") as err:
        BankStore(tmp_path / "banks").add("t", "term", source, options={"normalize": steps})
    assert f"{source}:2" in str(err.value)


@pytest.mark.parametrize(
    ("caption", "term"),
    [
        ("예쁜 여 성 사진", "여성"),  # Hangul syllables spaced apart, like `s t o c k`
        ("고 양 이 카페", "고양이"),
        ("z o r b l a x", "zorblax"),
        ("蛋 糕 兔", "蛋糕兔"),
    ],
)
def test_spaced_out_syllables_and_letters_join_in_every_script(
    bank: tuple[Path, str], engine: str, caption: str, term: str
) -> None:
    assert matched(*bank, [caption]) == {0: line_of(term)}


def test_two_spaced_latin_letters_stay_apart() -> None:
    assert TextNormalizer().normalize_strings(["a b", "사 진", "이 책을"]) == ["a b", "사진", "이 책을"]


@pytest.mark.parametrize(
    "caption", ["red t-shirt", "red tshirt", "red t shirt", "RED T‐SHIRT", "red t_shirt", "t·shirt"]
)
def test_hyphen_and_joiner_spellings_match_each_other(bank: tuple[Path, str], engine: str, caption: str) -> None:
    assert matched(*bank, [caption]) == {0: line_of("t-shirt")}


@pytest.mark.parametrize(
    "caption", ["red t-shirt", "red t shirt", "RED T‐SHIRT", "red tshirt", "t_shirt", "t\u200bshirt"]
)
def test_a_joined_term_matches_its_hyphen_and_space_spellings(tmp_path: Path, caption: str) -> None:
    banks, name = make_bank(tmp_path, ["tshirt", "zorblax", "emails"])
    found = matched(
        banks, name, [caption, "e-mails", "tsh", "t shirts", "at shirt", "zorb lax", "zo r blax", "z orblax"]
    )
    # Only a one-letter prefix is split off (`zorb lax` is two words, as test_no_match_inside_words... says).
    assert found == {0: "term L1; score 1", 1: "term L3; score 1", 7: "term L2; score 1"}


def test_short_joined_terms_are_not_split(tmp_path: Path) -> None:
    banks, name = make_bank(tmp_path, ["abc", "고양이"])
    assert matched(banks, name, ["a bc", "ab c", "고 양이"]) == {}


@pytest.mark.parametrize("term", ["t shirt", "tshirt-", "t-shirt"])
def test_each_spelling_of_a_term_imports_as_one_line(tmp_path: Path, term: str) -> None:
    banks, name = make_bank(tmp_path, [term, "flim zap kor blax"])
    table = pq.read_table(banks / name / "terms.parquet").to_pydict()
    assert table["line"] == [1, 2]
    # Evidence names the line once even where two spellings of it are in one caption.
    found = matched(banks, name, ["tshirt and t shirt", "flimzapkorblax", "flim zapkor blax"])
    assert (found[0], found[1], found[2]) == ("term L1; score 1", "term L2; score 1", "term L2; score 1")


def test_substring_mode_and_raw_banks_keep_their_behaviour(tmp_path: Path) -> None:
    sub_banks, sub = make_bank(tmp_path / "sub", ["zorblax", "여성"], match="substring")
    assert sorted(matched(sub_banks, sub, ["superzorblaxian", "미여성", "nothing"])) == [0, 1]
    raw_banks, raw = make_bank(tmp_path / "raw", ["t-shirt", "여성"], normalize=())
    assert sorted(matched(raw_banks, raw, ["t-shirt", "tshirt", "여성의", "T-shirt"])) == [0, 2]


def recall_by_script(
    engine_banks: tuple[Path, str], captions: list[multilingual.Caption]
) -> dict[str, tuple[int, int]]:
    """(found, expected) per script, where expected comes from the oracle over the normalised captions."""
    normalizer = TextNormalizer()
    texts = [c.text for c in captions]
    normalised = normalizer.normalize_strings(texts)
    patterns = normalizer.normalize_strings(multilingual.all_terms())
    spellings = [s for p in patterns for s in multilingual.joined_spellings(p)]
    expected = {i for i, text in enumerate(normalised) if multilingual.oracle_matches(text, spellings)}
    found = set(matched(*engine_banks, texts))
    assert found == expected, [(texts[i], normalised[i]) for i in sorted(found ^ expected)][:5]
    totals: Counter[str] = Counter()
    hits: Counter[str] = Counter()
    for i in expected:
        totals[captions[i].script] += 1
        hits[captions[i].script] += i in found
    return {script: (hits[script], totals[script]) for script in totals}


def test_recall_per_script_on_synthetic_multilingual_captions(tmp_path: Path, engine: str) -> None:
    captions = multilingual.make_captions(3000)
    banks = make_bank(tmp_path, multilingual.all_terms())
    recall = recall_by_script(banks, captions)
    assert set(recall) == set(multilingual.VOCABULARY)  # every script is measured
    assert all(found == total > 0 for found, total in recall.values()), recall
    # Every planted term is found, whatever the trick, but a spaced-script term inside a longer word.
    found = set(matched(*banks, [c.text for c in captions]))
    for i, caption in enumerate(captions):
        if caption.planted is None:
            continue
        inside_spaced_word = caption.evasion == "inside-word" and caption.script not in (
            "hangul",
            "han",
            "kana",
            "thai",
        )
        if not inside_spaced_word:
            assert i in found, caption


@settings(max_examples=60, deadline=None)
@given(
    words=st.lists(
        st.sampled_from([w for ws in multilingual.VOCABULARY.values() for w in ws] + multilingual.all_terms()),
        min_size=1,
        max_size=8,
    ),
    glue=st.sampled_from([" ", "", "-", " \u200b", "의 "]),
)
@example(words=["여성", "사진"], glue="의 ")
@example(words=["t-shirt", "zorblax"], glue="\u200b")
def test_matcher_agrees_with_the_oracle_on_any_mix_of_scripts(
    tmp_path_factory: pytest.TempPathFactory, words: list[str], glue: str
) -> None:
    banks = _shared_bank(tmp_path_factory)
    caption = glue.join(words)
    normalizer = TextNormalizer()
    normalised = normalizer.normalize_strings([caption])[0]
    spellings = [
        s for p in normalizer.normalize_strings(multilingual.all_terms()) for s in multilingual.joined_spellings(p)
    ]
    assert (0 in matched(*banks, [caption])) == multilingual.oracle_matches(normalised, spellings), normalised


_BANKS: dict[str, tuple[Path, str]] = {}


def _shared_bank(factory: pytest.TempPathFactory) -> tuple[Path, str]:
    if "all" not in _BANKS:
        _BANKS["all"] = make_bank(factory.mktemp("bank"), multilingual.all_terms())
    return _BANKS["all"]
