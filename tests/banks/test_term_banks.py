"""Importing term banks: file formats, validation with file and line, options, provenance of the settings."""

from __future__ import annotations

import stat
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from safeset.banks.store import BankStore
from safeset.errors import InputError, SafesetError
from safeset.signals.text import STEPS


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_plain_file_with_lang_and_weight_columns(tmp_path: Path) -> None:
    source = write(
        tmp_path / "t.txt", "# stand-ins\nzorblax\ten\t2\nQuinfrob  Flimzap\tpt_BR\n\nблорф\t\t0.5\nZORBLAX\n"
    )
    info = BankStore(tmp_path / "banks").add("t", "term", source)
    assert (info.entries, info.duplicates, info.action) == (4, 1, "review")
    assert info.details["normalization"] == list(STEPS) and info.details["match"] == "word"
    assert info.details["languages"] == {"en": 1, "pt-br": 1, "unspecified": 2}
    stored = pq.read_table(tmp_path / "banks" / "t" / "terms.parquet").to_pydict()
    assert stored["line"] == [2, 3, 5, 6]
    assert stored["pattern"][:2] == ["zorblax", "quinfrob flimzap"]
    assert stored["weight"] == [2.0, 1.0, 0.5, 1.0]
    for path in (tmp_path / "banks" / "t").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_csv_with_term_lang_and_weight_columns(tmp_path: Path) -> None:
    source = write(tmp_path / "t.csv", 'id,phrase,language,weight\n1,zorblax,en,3\n2,"quinfrob, flimzap",es,\n')
    info = BankStore(tmp_path / "banks").add("t", "term", source, column="phrase")
    stored = pq.read_table(tmp_path / "banks" / "t" / "terms.parquet").to_pydict()
    assert info.entries == 2 and stored["line"] == [2, 3]
    assert stored["pattern"] == ["zorblax", "quinfrob flimzap"] and stored["lang"] == ["en", "es"]
    assert stored["weight"] == [3.0, 1.0]


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        ("zorblax\nquinfrob\tenglish!\n", 2, "language is not a tag"),
        ("zorblax\nquinfrob\ten\theavy\n", 2, "weight is not a number"),
        ("zorblax\n\n!!!\n", 3, "nothing left of the term"),
        ("zorblax\nquinfrob\ten\t1\textra\n", 2, "more than three tab-separated fields"),
    ],
)
def test_invalid_lines_name_file_and_line(tmp_path: Path, content: str, line: int, reason: str) -> None:
    source = write(tmp_path / "t.txt", content)
    with pytest.raises(InputError, match=reason) as err:
        BankStore(tmp_path / "banks").add("t", "term", source)
    assert f"{source}:{line}" in str(err.value)
    assert not (tmp_path / "banks" / "t").exists()


def test_skip_invalid_counts_each_bad_line_once(tmp_path: Path) -> None:
    source = write(tmp_path / "t.txt", "zorblax\nquinfrob\tenglish!\theavy\n!!!\nflimzap\n")
    info = BankStore(tmp_path / "banks").add("t", "term", source, skip_invalid=True)
    assert (info.entries, info.skipped_invalid) == (2, 2)


def test_options_belong_to_their_kinds(tmp_path: Path) -> None:
    terms = write(tmp_path / "t.txt", "zorblax\n")
    store = BankStore(tmp_path / "banks")
    with pytest.raises(SafesetError, match="--match do"):
        store.add("m", "md5", terms, options={"match": "word"})
    with pytest.raises(SafesetError, match="--url-forms do"):
        store.add("t", "term", terms, options={"url_forms": ["te"]})
    with pytest.raises(SafesetError, match="needs both --near FILE and --within N"):
        store.add("t", "term", terms, options={"within": 3})
    with pytest.raises(SafesetError, match="--match must be one of"):
        store.add("t", "term", terms, options={"match": "fuzzy"})


def test_settings_are_recorded_and_part_of_the_bank_identity(tmp_path: Path) -> None:
    terms = write(tmp_path / "t.txt", "zorblax\n")
    near = write(tmp_path / "near.txt", "snargle\n")
    store = BankStore(tmp_path / "banks")
    plain = store.add("a", "term", terms)
    substring = store.add("b", "term", terms, options={"match": "substring", "normalize": ("casefold",)})
    rule = store.add("c", "term", terms, options={"near": near, "within": 4})
    assert substring.details["normalization"] == ["casefold"] and substring.details["match"] == "substring"
    assert rule.details["near"]["within_tokens"] == 4 and rule.details["near"]["entries"] == 1
    assert len({plain.digest(), substring.digest(), rule.digest()}) == 3


def test_invalid_line_in_near_list_names_that_file(tmp_path: Path) -> None:
    terms = write(tmp_path / "t.txt", "zorblax\n")
    near = write(tmp_path / "near.txt", "snargle\n???\n")
    with pytest.raises(InputError) as err:
        BankStore(tmp_path / "banks").add("r", "term", terms, options={"near": near, "within": 2})
    assert f"{near}:2" in str(err.value)
