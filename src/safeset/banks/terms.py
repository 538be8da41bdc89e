"""Term banks: words and phrases screened in captions, with optional language and weight, and co-occurrence rules.

File formats (one term or phrase per line; blank lines and lines starting with `#` are skipped):
  plain     `term`, or tab-separated `term<TAB>lang<TAB>weight` (lang and weight optional, may be empty)
  CSV       with `--column NAME` for the terms; columns named `lang` (or `language`) and `weight`, when the
            header has them, give each term's language and weight

A bank stores its terms already normalised with the steps chosen at import (all by default), so captions
are normalised the same way at scan time. With `--near FILE --within N` the bank is a co-occurrence rule:
a caption is flagged only when one of its terms appears within N tokens of a term from FILE.
Term lists are sensitive: the bank keeps them private (0600) and findings name terms only by line number.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from safeset.banks.listfile import ListValues, read_list
from safeset.banks.store import BankKind, register_kind
from safeset.errors import InputError, SafesetError
from safeset.fsutil import sha256_file
from safeset.policy.actions import Action
from safeset.signals.text import STEPS, TextNormalizer

MATCH_MODES = ("word", "substring")
_LANG = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
TERMS_FILE = "terms.parquet"
MAIN_LIST, NEAR_LIST = 0, 1


@dataclass
class TermList:
    """Terms of one file with their 1-based source line numbers (`lang` empty and `weight` 1 by default)."""

    terms: pa.Array  # string
    langs: pa.Array  # string, "" where not given
    weights: pa.Array  # string as written, "" where not given
    lines: np.ndarray  # int64


def read_terms(path: Path, column: str | None) -> TermList:
    if column is None:
        values = read_list(path)
        parts = pc.split_pattern(values.values, "\t")
        count = np.asarray(pc.list_value_length(parts).to_numpy(zero_copy_only=False))
        if (count > 3).any():
            bad = count > 3
            lines = values.lines[bad]
            raise InputError(
                f"{int(bad.sum())} lines with more than three tab-separated fields (term, lang, weight),"
                f" first at line {int(lines[0])}",
                path,
                int(lines[0]),
            )
        padded = pc.list_slice(parts, 0, 3, return_fixed_size_list=False)

        def field(i: int) -> pa.Array:
            has = pa.array(count > i)
            return pc.utf8_trim_whitespace(pc.if_else(has, pc.list_element(pc.if_else(has, padded, None), i), ""))

        return TermList(field(0), field(1), field(2), values.lines)
    return _read_csv_terms(path, column)


def _read_csv_terms(path: Path, column: str) -> TermList:
    with path.open("r", encoding="utf-8", errors="replace", newline="") as handle:
        header = next(csv.reader(handle), [])
    if column not in header:
        raise InputError(f"column {column!r} not in CSV header ({', '.join(header)})", path, 1)
    lang_col = next((c for c in ("lang", "language") if c in header), None)
    weight_col = "weight" if "weight" in header else None
    wanted = [c for c in (column, lang_col, weight_col) if c]
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=1 << 24),
            parse_options=pacsv.ParseOptions(ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                include_columns=wanted, column_types=dict.fromkeys(wanted, pa.string())
            ),
        )
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot parse term list: {exc}", path) from exc

    def col(name: str | None) -> pa.Array:
        if name is None:
            return pa.array([""] * table.num_rows, type=pa.string())
        return pc.utf8_trim_whitespace(pc.fill_null(table[name].combine_chunks(), ""))

    terms = col(column)
    keep = pc.and_(pc.not_equal(terms, ""), pc.invert(pc.starts_with(terms, "#")))
    lines = np.flatnonzero(np.asarray(keep.to_numpy(zero_copy_only=False), dtype=bool)).astype(np.int64) + 2
    return TermList(terms.filter(keep), col(lang_col).filter(keep), col(weight_col).filter(keep), lines)


def settings_digest(settings: dict[str, Any]) -> str:
    """Digest of the import options that change what a bank matches (part of the bank's identity)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


class TermKind(BankKind):
    name = "term"
    default_action = Action.REVIEW  # a caption match alone is weak evidence: a candidate for review
    description = "words and phrases screened in captions (optional lang and weight columns)"
    accepted_options: ClassVar[frozenset[str]] = frozenset({"match", "normalize", "near", "within", "min_score"})

    def import_values(self, values: ListValues, folder: Path, source: Path, skip_invalid: bool) -> dict[str, Any]:
        return self.import_file(source, None, folder, skip_invalid, {})

    def import_file(
        self, source: Path, column: str | None, folder: Path, skip_invalid: bool, options: dict[str, Any]
    ) -> dict[str, Any]:
        mode = options.get("match") or "word"
        if mode not in MATCH_MODES:
            raise SafesetError(f"--match must be one of {', '.join(MATCH_MODES)}, not {mode!r}")
        steps = tuple(options["normalize"]) if options.get("normalize") is not None else STEPS
        normalizer = TextNormalizer(steps)
        near, within = options.get("near"), options.get("within")
        if (near is None) != (within is None):
            raise SafesetError("a co-occurrence rule needs both --near FILE and --within N")
        if within is not None and int(within) < 0:
            raise SafesetError("--within must be 0 or more tokens")
        min_score = options.get("min_score")
        if min_score is not None and near is not None:
            raise SafesetError("--min-score applies to plain term banks, not to --near rules")

        main, main_stats = self._load(source, column, normalizer, skip_invalid)
        tables = [main.append_column("list", pa.array([MAIN_LIST] * main.num_rows, type=pa.int8()))]
        details: dict[str, Any] = {
            "match": mode,
            "normalization": list(normalizer.steps),
            "languages": main_stats["languages"],
            "min_score": float(min_score) if min_score is not None else None,
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
            }
            settings.update(near_sha256=near_sha, within=int(within))  # type: ignore[arg-type]
            skipped += near_stats["skipped"]
            duplicates += near_stats["duplicates"]
        details["settings_sha256"] = settings_digest(settings)
        pq.write_table(pa.concat_tables(tables), folder / TERMS_FILE)
        return {"entries": main.num_rows, "skipped_invalid": skipped, "duplicates": duplicates, "details": details}

    def _load(
        self, source: Path, column: str | None, normalizer: TextNormalizer, skip_invalid: bool
    ) -> tuple[pa.Table, dict[str, Any]]:
        """Read, validate and normalise one term file; the table has line, pattern, lang, weight."""
        listing = read_terms(source, column)
        terms, langs, weights = listing.terms.to_pylist(), listing.langs.to_pylist(), listing.weights.to_pylist()
        shown = ListValues(listing.terms, listing.lines)
        skipped = 0

        invalid = np.zeros(len(terms), dtype=bool)

        def check(bad: list[bool], reason: str) -> None:
            """Refuse (or count) lines failing this check, once each: a line already refused is not recounted."""
            nonlocal skipped, invalid
            new = np.array(bad, dtype=bool) & ~invalid
            skipped += self.reject_or_skip(shown, new, source, reason, skip_invalid)
            invalid |= new

        check([bool(_CONTROL.search(t)) for t in terms], "control characters in a term")
        check([bool(lang) and not _LANG.match(lang) for lang in langs], "language is not a tag such as 'en' or 'pt-BR'")
        parsed: list[float] = []
        bad_weight: list[bool] = []
        for weight in weights:
            try:
                value = float(weight) if weight else 1.0
                ok = math.isfinite(value) and value >= 0
            except ValueError:
                value, ok = 1.0, False
            parsed.append(value)
            bad_weight.append(not ok)
        check(bad_weight, "weight is not a number >= 0")
        patterns = normalizer.normalize_strings(terms)
        check([not p for p in patterns], "nothing left of the term after normalisation")
        keep = ~invalid
        kept_patterns = [p for p, k in zip(patterns, keep, strict=True) if k]
        kept_langs = [lang.lower().replace("_", "-") for lang, k in zip(langs, keep, strict=True) if k]
        table = pa.table(
            {
                "line": pa.array(listing.lines[keep], type=pa.int64()),
                "pattern": pa.array(kept_patterns, type=pa.string()),
                "lang": pa.array(kept_langs, type=pa.string()),
                "weight": pa.array([w for w, k in zip(parsed, keep, strict=True) if k], type=pa.float64()),
            }
        )
        stats = {
            "skipped": skipped,
            "duplicates": len(kept_patterns) - len(set(kept_patterns)),
            "languages": dict(sorted(Counter(lang or "unspecified" for lang in kept_langs).items())),
        }
        return table, stats


register_kind(TermKind())
