"""Term banks: words and phrases screened in captions, with optional language and weight, and co-occurrence rules.

File formats (one term or phrase per line; read by `listfile` like every kind: BOM, CRLF, blank lines and `#`
comments, line numbers, invalid UTF-8 named by line):
  plain     `term`, or tab-separated `term<TAB>lang<TAB>weight` (lang and weight optional, may be empty)
  CSV/TSV   with a header: the column chosen with `--column NAME` or, without it, named `term` (or `phrase`,
            `keyword`, ...); columns named `lang` (or `language`) and `weight`, when the header has them, give
            each term's language and weight. A first line is a header only if it is not a valid term line
            (`term<TAB>lang<TAB>weight` is one: `lang` is no language tag) and names a column.

A bank stores its terms already normalised with the steps chosen at import (all by default), so captions
are normalised the same way at scan time, and the other spellings of terms whose words may be written
apart or together (`t-shirt`: also `tshirt`). In `word` mode the word boundaries fit each character's
script (see `match/terms.py`), so one bank holds terms in every script. A term holding an invisible
character is refused, by line, unless the `invisible` step removes it. With `--near FILE --within N` the
bank is a co-occurrence rule: a caption is flagged only when one of its terms appears within N tokens of a
term from FILE.
Term lists are sensitive: the bank keeps them private (0600) and findings name terms only by line number.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from safeset.banks.listfile import InvalidLines, ListFormat, ListValues, SplitLines, read_list
from safeset.banks.store import BankKind, register_kind
from safeset.errors import SafesetError
from safeset.fsutil import sha256_file
from safeset.kinds.terms.options import TermImportOptions
from safeset.policy.actions import Action
from safeset.signals.text import STEPS, TextNormalizer, char_tables

MATCH_MODES = ("word", "substring")
_LANG = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
TERMS_FILE = "terms.parquet"
MAIN_LIST, NEAR_LIST = 0, 1
#: A term with up to this many separators gets every joined/separated spelling (2^n of them); a longer phrase
#: only its fully joined one.
_MAX_SEPARATORS_COMBINED = 3
#: A one-word term of this many characters or more (and at most `_MAX_SPLIT_LENGTH`) also gets its spelling with a
#: space after its first letter (`tshirt`: `t shirt`), so that a joined term matches `t-shirt` and `t shirt` in
#: captions as a hyphenated term matches `tshirt`. Shorter terms would match a letter and an unrelated word.
_MIN_SPLIT_LENGTH = 4
_MAX_SPLIT_LENGTH = 32


def split_spellings(pattern: str) -> list[str]:
    """A normalised one-word term written as a one-letter prefix and the rest (`t shirt`, `e mail`, `x ray`: the
    compounds written with a hyphen or without), where both sides of the gap are letters or digits of scripts
    written with spaces. Only that split: once normalised, a hyphen and a space are the same, and a split
    anywhere (`zorb lax` for `zorblax`) would match two separate words far too often."""
    if " " in pattern or not _MIN_SPLIT_LENGTH <= len(pattern) <= _MAX_SPLIT_LENGTH:
        return []
    unspaced = char_tables().unspaced
    if all(unicodedata.category(c)[0] in "LN" and not unspaced[ord(c)] for c in pattern[:2]):
        return [pattern[0] + " " + pattern[1:]]
    return []


def spelling_variants(patterns: list[str], normalizer: TextNormalizer) -> list[list[str]]:
    """Other spellings of each normalised term whose words may be written apart or together: `t-shirt` and
    `t shirt` (both `t shirt` once normalised) also match `tshirt`, `여성 사진` also `여성사진`; and the other way
    round, `tshirt` also matches `t shirt` and `t-shirt` (`split_spellings`). Only where the `spacing` step has
    turned every hyphen, joiner and run of spaces into one space; the variants are normalised again, in one
    batch (joining may bring letters together that `repeats` then folds)."""
    if "spacing" not in normalizer.steps:
        return [[] for _ in patterns]
    owner: list[int] = []
    spellings: list[str] = []
    for i, pattern in enumerate(patterns):
        words = pattern.split(" ")
        gaps = len(words) - 1
        if not gaps:
            for spelling in split_spellings(pattern):
                spellings.append(spelling)
                owner.append(i)
            continue
        # Each gap joined (bit set) or kept; a long phrase only fully joined.
        masks = range(1, 2**gaps) if gaps <= _MAX_SEPARATORS_COMBINED else range(2**gaps - 1, 2**gaps)
        for mask in masks:
            spelling = words[0]
            for gap, word in enumerate(words[1:]):
                spelling += ("" if mask >> gap & 1 else " ") + word
            spellings.append(spelling)
            owner.append(i)
    variants: list[list[str]] = [[] for _ in patterns]
    for i, spelling in zip(owner, normalizer.normalize_strings(spellings) if spellings else [], strict=True):
        if spelling and spelling != patterns[i] and spelling not in variants[i]:
            variants[i].append(spelling)
    return variants


def split_term_line(values: pa.Array) -> SplitLines:
    """`term<TAB>lang<TAB>weight` (lang and weight optional, may be empty); more than three fields is no term."""
    parts = pc.split_pattern(values, "\t")
    count = np.asarray(pc.list_value_length(parts).to_numpy(zero_copy_only=False))

    def field(i: int) -> pa.Array:
        has = pa.array(count > i)
        return pc.utf8_trim_whitespace(pc.list_element(pc.if_else(has, parts, None), i))

    return SplitLines(
        field(0),
        {"lang": field(1), "weight": field(2)},
        count > 3,
        "more than three tab-separated fields (term, lang, weight)",
    )


TERM_FORMAT = ListFormat(
    entry_columns=("term", "terms", "phrase", "keyword", "word", "value"),
    optional_columns={"lang": ("lang", "language"), "weight": ("weight",)},
    split_line=split_term_line,
)


def settings_digest(settings: dict[str, Any]) -> str:
    """Digest of the import options that change what a bank matches (part of the bank's identity)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


class TermKind(BankKind):
    name = "term"
    default_action = Action.REVIEW  # a caption match alone is weak evidence: a candidate for review
    description = "words and phrases screened in captions (optional lang and weight columns)"
    import_options = TermImportOptions
    list_format = TERM_FORMAT

    def import_values(self, values: ListValues, folder: Path, source: Path, skip_invalid: bool) -> dict[str, Any]:
        return self.import_file(source, None, folder, skip_invalid, TermImportOptions())

    def import_file(
        self, source: Path, column: str | None, folder: Path, skip_invalid: bool, options: TermImportOptions
    ) -> dict[str, Any]:
        mode = options.match
        if mode not in MATCH_MODES:
            raise SafesetError(f"--match must be one of {', '.join(MATCH_MODES)}, not {mode!r}")
        steps = tuple(options.normalize)
        normalizer = TextNormalizer(steps)
        near, within = options.near, options.within
        if (near is None) != (within is None):
            raise SafesetError("a co-occurrence rule needs both --near FILE and --within N")
        if within is not None and int(within) < 0:
            raise SafesetError("--within must be 0 or more tokens")
        min_score = options.min_score
        if min_score is not None and near is not None:
            raise SafesetError("--min-score applies to plain term banks, not to --near rules")

        main, main_stats = self._load(source, column, normalizer, skip_invalid)
        tables = [main.append_column("list", pa.array([MAIN_LIST] * main.num_rows, type=pa.int8()))]
        details: dict[str, Any] = {
            "match": mode,
            "normalization": list(normalizer.steps),
            "languages": main_stats["languages"],
            "min_score": float(min_score) if min_score is not None else None,
            **main_stats["list"],
        }
        settings: dict[str, Any] = {"match": mode, "normalization": list(normalizer.steps), "min_score": min_score}
        skipped, duplicates = main_stats["skipped"], main_stats["duplicates"]
        if near is not None:
            near_path = Path(near)
            near_table, near_stats = self._load(near_path, column, normalizer, skip_invalid)
            tables.append(near_table.append_column("list", pa.array([NEAR_LIST] * near_table.num_rows, type=pa.int8())))
            near_sha = sha256_file(near_path)
            details["near"] = {
                "source_file": str(near_path.resolve()),
                "source_sha256": near_sha,
                "entries": near_table.num_rows,
                "within_tokens": int(within),  # type: ignore[arg-type]
                "skipped_invalid": near_stats["skipped"],
                "languages": near_stats["languages"],
                **near_stats["list"],
            }
            settings.update(near_sha256=near_sha, within=int(within))  # type: ignore[arg-type]
            skipped += near_stats["skipped"]
            duplicates += near_stats["duplicates"]
        details["settings_sha256"] = settings_digest(settings)
        pq.write_table(pa.concat_tables(tables), folder / TERMS_FILE)
        return {"entries": main.num_rows, "skipped_invalid": skipped, "duplicates": duplicates, "details": details}

    def read(self, source: Path, column: str | None, normalizer: TextNormalizer | None = None) -> ListValues:
        return read_list(source, self.list_format, column, lambda listing: self.check(listing, normalizer).good)

    def check(self, listing: ListValues, normalizer: TextNormalizer | None = None) -> InvalidLines:
        normalizer = normalizer or TextNormalizer(STEPS)
        invalid = InvalidLines(listing)
        n = len(listing.values)

        def cells(role: str) -> list[str]:
            values = listing.field_values(role)
            return [v or "" for v in values.to_pylist()] if values is not None else [""] * n

        terms, langs, weights = [t or "" for t in listing.values.to_pylist()], cells("lang"), cells("weight")
        invalid.add(np.array([bool(_CONTROL.search(t)) for t in terms], dtype=bool), "control characters in a term")
        invalid.add(
            np.array([bool(lang) and not _LANG.match(lang) for lang in langs], dtype=bool),
            "language is not a tag such as 'en' or 'pt-BR'",
        )
        parsed: list[float] = []
        bad_weight = np.zeros(n, dtype=bool)
        for i, weight in enumerate(weights):
            try:
                value = float(weight) if weight else 1.0
                bad_weight[i] = not (math.isfinite(value) and value >= 0)
            except ValueError:
                value, bad_weight[i] = 1.0, True
            parsed.append(value)
        invalid.add(bad_weight, "weight is not a number >= 0")
        patterns = normalizer.normalize_strings(terms)
        invalid.add(np.array([not p for p in patterns], dtype=bool), "nothing left of the term after normalisation")
        # Captions hide these characters inside words. Without the `invisible` step that removes them, a term
        # holding one would be split or never match: refused, by line, rather than imported silently.
        if "invisible" not in normalizer.steps:
            invisible = char_tables().invisible
            invalid.add(
                np.array([any(invisible[ord(c)] for c in t) for t in terms], dtype=bool),
                "invisible format character in the term (zero-width, soft hyphen, variation selector, ...);"
                " remove it or normalise with the 'invisible' step",
            )
        invalid.derived.update(patterns=patterns, langs=langs, weights=parsed)
        return invalid

    def _load(
        self, source: Path, column: str | None, normalizer: TextNormalizer, skip_invalid: bool
    ) -> tuple[pa.Table, dict[str, Any]]:
        """Read, validate and normalise one term file; the table has line, pattern, lang, weight."""
        listing = self.read(source, column, normalizer)
        invalid = self.check(listing, normalizer)
        skipped = invalid.settle(skip_invalid)
        keep = invalid.good
        patterns, langs, weights = (invalid.derived[k] for k in ("patterns", "langs", "weights"))
        kept_patterns = [p for p, k in zip(patterns, keep, strict=True) if k]
        kept_langs = [lang.lower().replace("_", "-") for lang, k in zip(langs, keep, strict=True) if k]
        table = pa.table(
            {
                "line": pa.array(listing.lines[keep], type=pa.int64()),
                "pattern": pa.array(kept_patterns, type=pa.string()),
                "lang": pa.array(kept_langs, type=pa.string()),
                "weight": pa.array([w for w, k in zip(weights, keep, strict=True) if k], type=pa.float64()),
                "variants": pa.array(spelling_variants(kept_patterns, normalizer), pa.list_(pa.string())),
            }
        )
        stats = {
            "skipped": skipped,
            "duplicates": len(kept_patterns) - len(set(kept_patterns)),
            "languages": dict(sorted(Counter(lang or "unspecified" for lang in kept_langs).items())),
            "list": listing.details(),
        }
        return table, stats

    def stored_files(self, details: dict[str, Any]) -> list[str]:
        return [TERMS_FILE]


register_kind(TermKind())
