"""Caption/term normalisation: each step on its own, their interplay, and batch == row-by-row."""

from __future__ import annotations

import unicodedata

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safeset.signals.text import STEPS, TextNormalizer, char_tables, parse_steps


def norm(text: str, *steps: str) -> str:
    return TextNormalizer(steps).normalize_strings([text])[0]


def fold(text: str) -> str:
    """With every step, as term banks use by default."""
    return TextNormalizer().normalize_strings([text])[0]


@pytest.mark.parametrize(
    ("step", "raw", "folded"),
    [
        ("nfkc", "Ｚｏｒｂｌａｘ ﬁ", "zorblax fi"),
        ("invisible", "zor\u200bbl\u00adax\ufe0f", "zorblax"),
        ("invisible", "여\u200d성\U000e0101", "여성"),
        ("casefold", "ZORBLAX Straße", "zorblax strasse"),
        ("accents", "zörblàx", "zorblax"),
        ("confusables", "zоrblах", "zorblax"),  # Cyrillic о, а, х
        ("leetspeak", "z0rbl4x", "zorblax"),
        ("separators", "z.o.r.b.l.a.x", "zorblax"),
        ("separators", "사 진", "사진"),
        ("spacing", "zorblax,  quinfrob!", "zorblax quinfrob"),
        ("spacing", "猫  咖啡 ภาพ", "猫咖啡ภาพ"),
        ("repeats", "zooorblaaax", "zorblax"),
    ],
)
def test_each_step_folds_its_evasion_and_only_when_chosen(step: str, raw: str, folded: str) -> None:
    # casefold and spacing are needed to compare the results; the step under test is what makes the difference.
    helpers = {"casefold", "spacing"} - {step}
    assert norm(raw, step, *helpers) == folded
    assert norm(raw, *helpers) != folded


def test_no_steps_leaves_text_as_is() -> None:
    assert norm("  Zörblax, W.O.R.D  ") == "  Zörblax, W.O.R.D  "


def test_separators_join_single_characters_but_not_a_neighbouring_article() -> None:
    assert fold("a photo of a Z.O.R.B.L.A.X here") == "a photo of a zorblax here"
    assert fold("z o r b l a x") == "zorblax"
    assert fold("q-u-i-n-f-r-0-b") == "quinfrob"  # leetspeak again after joining
    assert fold("a b") == "a b"  # two single letters are not a spelled-out word


def test_leetspeak_leaves_numbers_alone() -> None:
    assert fold("h4x0r 2014 $ign") == "haxor 2014 sign"


def test_scripts_survive_and_fold_the_same_way_for_term_and_caption() -> None:
    normalizer = TextNormalizer()
    for term, caption in [("блорф", "БЛОРФ в лесу"), ("蛋糕兔", "我爱蛋糕兔子"), ("كعكة", "كَعْكَة لذيذة")]:
        folded_term = normalizer.normalize_strings([term])[0]
        assert folded_term and folded_term in normalizer.normalize_strings([caption])[0]


def test_batch_equals_row_by_row_and_rows_stay_apart() -> None:
    rows = ["Z.O.R", "B.L.A.X", "a", "b", "c", "zoo", "oorblax", None, "", "x\x00y", "4", "ll"]
    normalizer = TextNormalizer()
    batch = normalizer.normalize_array(pa.array(rows, type=pa.string()))
    assert len(batch.starts) == len(rows) + 1
    one_by_one = [normalizer.normalize_strings([r or ""])[0] for r in rows]
    assert batch.rows() == one_by_one
    assert "zorblax" not in batch.text and "abc" not in batch.text  # nothing joined across rows


@pytest.mark.parametrize("compiled", [True, False])
def test_a_row_folds_the_same_whatever_else_its_batch_holds(compiled: bool) -> None:
    # Leetspeak runs a second time only on rows the separators step joined: a long run of leet symbols reaches
    # further on a second pass, so running it on every row of a batch holding one joined row made a row's
    # normal form depend on its neighbours.
    import safeset.signals.text as text_module

    long_run = "a" + "0" * 20 + "b"
    text_module.COMPILED = compiled
    try:
        normalizer = TextNormalizer()
        alone = normalizer.normalize_strings([long_run])
        beside_a_joined_row = normalizer.normalize_strings([long_run, "s t o c k", "w 0 r d"])
    finally:
        text_module.COMPILED = True
    assert alone == ["ao0000ob"]
    assert beside_a_joined_row == ["ao0000ob", "stock", "word"]


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.text(alphabet="ab01@$ .-사진猫\u0301\u200b", max_size=24), min_size=1, max_size=6))
def test_each_row_of_a_batch_folds_as_it_does_alone(rows: list[str]) -> None:
    normalizer = TextNormalizer()
    assert normalizer.normalize_strings(rows) == [normalizer.normalize_strings([r])[0] for r in rows]


def test_step_lists_parse_and_refuse_unknown_steps() -> None:
    assert parse_steps("all") == STEPS and parse_steps("none") == ()
    assert parse_steps("spacing,casefold") == ("casefold", "spacing")  # always in pipeline order
    with pytest.raises(ValueError, match="unknown normalisation step"):
        parse_steps("casefold,stemming")


def test_invisible_characters_go_whatever_their_kind() -> None:
    # Category Cf (zero-width space/joiners, word joiner, BOM, bidi controls, tags), the soft hyphen, the
    # Mongolian vowel separator, variation selectors and Hangul fillers: none may split a word.
    hidden = (
        "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e\u202e\u2066\ufe00\ufe0f\U000e0100\U000e01ef\U000e0041\u3164\u034f"
    )
    for char in hidden:
        assert fold(f"zor{char}blax") == "zorblax", hex(ord(char))
    assert norm("zor\u200bblax", "casefold") == "zor\u200bblax"  # only when the step is chosen


def test_spaced_syllables_join_but_two_latin_letters_and_single_hangul_words_beside_longer_ones_do_not() -> None:
    assert fold("사 진 작 가") == "사진작가" and fold("여 성의") == "여 성의"
    assert fold("蛋 糕") == "蛋糕" and fold("a b") == "a b" and fold("이 책을") == "이 책을"


def test_whitespace_stays_between_words_of_spaced_scripts_next_to_unspaced_ones() -> None:
    assert fold("猫 cat 猫") == "猫 cat 猫" and fold("고양이 猫") == "고양이 猫" and fold("猫。咖啡") == "猫 咖啡"


# Characters that compose, reorder or decompose under NFKC: marks, conjoining jamo, full-width and half-width
# forms, ligatures, Indic vowel signs that compose with the sign before them.
TRICKY = "ae\u0301\u0327\u0323\u0300\u1100\u1161\u11a8\u1112가각ＡＢ，ﬁ①ｶﾞ\u0e01\u0e48\u0e35"
TRICKY += "\u0915\u093c\u09c7\u09be\u0cc6\u0cd5 "


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.one_of(
            st.text(alphabet=TRICKY, max_size=12),
            st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12),
        ),
        max_size=6,
    )
)
def test_nfkc_step_equals_python_nfkc_row_by_row(rows: list[str]) -> None:
    # Only rows that are not in NFKC already go through Python's normaliser; the result must not differ.
    assert TextNormalizer(["nfkc"]).normalize_strings(rows) == [unicodedata.normalize("NFKC", r) for r in rows]


# Letters of several scripts, leet symbols, separators, whitespace, invisible characters, row-closing NULs.
MIXED = "abAB0134@$ .-_,ｚ０１β\u3000\t\u200b\u00ad\ufe0fßﬁ사진이가蛋糕兔ネコภาพ่жщыكعة" + TRICKY


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.text(alphabet=MIXED, max_size=30), max_size=6),
    steps=st.sets(st.sampled_from(STEPS)),
)
def test_compiled_steps_equal_the_numpy_reference(rows: list[str], steps: set[str]) -> None:
    import safeset.signals.text as text_module

    normalizer = TextNormalizer(steps)
    compiled = normalizer.normalize_array(pa.array(rows, type=pa.string()))
    try:
        text_module.COMPILED = False
        reference = normalizer.normalize_array(pa.array(rows, type=pa.string()))
    finally:
        text_module.COMPILED = True
    assert bytes(compiled.data) == bytes(reference.data)
    assert compiled.byte_starts.tolist() == reference.byte_starts.tolist()
    assert compiled.byte_ends.tolist() == reference.byte_ends.tolist()


def test_compiled_steps_equal_the_numpy_reference_on_long_runs() -> None:
    import safeset.signals.text as text_module

    rows = [
        "a" + "0" * 20 + "b",
        "0" * 12 + "x",
        "猫" + " " * 65 + "猫",
        "猫" + " " * 66 + "猫",
        "x" + "1" * 9,
        "s t o c k",
        "a" + "0" * 70 + "b",  # longer than the streaming path's run buffer
        "x00０y",  # a leet run going on into the image of a full-width digit
        "a0\u200bb x1ﬁ ß0a β0 0ы",  # an invisible character after a run, images around runs
        "ﷺ" * 40,  # a row growing far past four bytes per byte
    ]
    normalizer = TextNormalizer()
    compiled = normalizer.normalize_strings(rows)
    text_module.COMPILED = False
    try:
        assert compiled == normalizer.normalize_strings(rows)
    finally:
        text_module.COMPILED = True


def test_bytes_that_are_not_utf8_read_as_replacement_characters_without_an_error() -> None:
    data = b"zor\xffblax" + b"ab\xe4\xb8" + b"\xf0\x9f\x98\x80ok" + b"\xed\xa0\x80x"
    offsets = pa.py_buffer(bytes(pa.array([0, 8, 12, 18, 22], type=pa.int32()).buffers()[1]))
    values = pa.StringArray.from_buffers(4, offsets, pa.py_buffer(data))
    rows = TextNormalizer(["nfkc", "casefold"]).normalize_array(values).rows()
    assert rows == ["zor\ufffdblax", "ab\ufffd\ufffd", "\U0001f600ok", "\ufffd\ufffd\ufffdx"]


def _decode_byte_by_byte(data: bytes) -> str:
    """The decoding the normaliser promises: every byte that does not start a valid UTF-8 sequence (overlong,
    surrogate, past U+10FFFF, cut short) is one U+FFFD; a NUL reads as a space."""
    out, i = [], 0
    while i < len(data):
        lead = data[i]
        size = 1 if lead < 0x80 else 2 if 0xC2 <= lead < 0xE0 else 3 if 0xE0 <= lead < 0xF0 else 4 if lead < 0xF5 else 0
        piece = data[i : i + size] if size else b""
        try:
            char = piece.decode("utf-8") if len(piece) == size else ""
        except UnicodeDecodeError:
            char = ""
        if len(char) == 1:
            out.append(" " if char == "\x00" else char)
            i += size
        else:
            out.append("\ufffd")
            i += 1
    return "".join(out)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.lists(
            st.one_of(
                # Valid characters of every length, and sequences that only look valid: overlong, surrogate,
                # past U+10FFFF, cut short, a lone continuation byte.
                st.sampled_from(
                    [
                        *(b"a", b" ", b"\x00", b"\xc3\xa9", b"\xe4\xb8\xad", b"\xf0\x9f\x98\x80", b"\xe2\x80\x8b"),
                        *(b"\xe0\x80\xaf", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe4\xb8", b"\x80"),
                    ]
                ),
                st.binary(min_size=1, max_size=3),
            ),
            max_size=8,
        ).map(b"".join),
        min_size=1,
        max_size=4,
    )
)
def test_any_bytes_decode_as_promised(rows: list[bytes]) -> None:
    # Arrow does not check that a file's strings are UTF-8: the kernel's own decoder must read any bytes the same
    # way on every path (streaming, buffered, NFKC), one replacement character per byte it cannot read.
    offsets = np.cumsum([0] + [len(r) for r in rows]).astype(np.int32)
    values = pa.StringArray.from_buffers(len(rows), pa.py_buffer(offsets.tobytes()), pa.py_buffer(b"".join(rows)))
    invisible = char_tables().invisible
    expected = ["".join(c for c in _decode_byte_by_byte(r) if not invisible[ord(c)]) for r in rows]
    assert TextNormalizer(["invisible"]).normalize_array(values).rows() == expected
