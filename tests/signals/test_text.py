"""Caption/term normalisation: each step on its own, their interplay, and batch == row-by-row."""

from __future__ import annotations

import pyarrow as pa
import pytest

from safeset.signals.text import STEPS, TextNormalizer, parse_steps


def norm(text: str, *steps: str) -> str:
    return TextNormalizer(steps).normalize_strings([text])[0]


def fold(text: str) -> str:
    """With every step, as term banks use by default."""
    return TextNormalizer().normalize_strings([text])[0]


@pytest.mark.parametrize(
    ("step", "raw", "folded"),
    [
        ("nfkc", "Ｚｏｒｂｌａｘ ﬁ", "zorblax fi"),
        ("casefold", "ZORBLAX Straße", "zorblax strasse"),
        ("accents", "zörblàx", "zorblax"),
        ("confusables", "zоrblах", "zorblax"),  # Cyrillic о, а, х
        ("leetspeak", "z0rbl4x", "zorblax"),
        ("separators", "z.o.r.b.l.a.x", "zorblax"),
        ("spacing", "zorblax,  quinfrob!", "zorblax quinfrob"),
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


def test_step_lists_parse_and_refuse_unknown_steps() -> None:
    assert parse_steps("all") == STEPS and parse_steps("none") == ()
    assert parse_steps("spacing,casefold") == ("casefold", "spacing")  # always in pipeline order
    with pytest.raises(ValueError, match="unknown normalisation step"):
        parse_steps("casefold,stemming")
