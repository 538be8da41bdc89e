"""Term matching: one multi-pattern automaton per bank, run once over each batch of normalised captions.

The automaton scans the batch's UTF-8 bytes in one call (rows back to back, or NUL-separated after
normalisation), not once per caption, and reports every occurrence of every term, overlapping ones
included. Matches are mapped to rows with numpy; those that cross a row's end or miss a word boundary are
dropped, so only rows that really match reach Python. Evidence names the bank's terms by source line
(`L12`), never the caption text, so neither findings nor logs repeat what a caption says.
"""

from __future__ import annotations

from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import Any

import ahocorasick
import numpy as np
import pyarrow.parquet as pq

from safeset.banks.store import BankInfo
from safeset.kinds.base import DatasetOffer, Hits, Matcher, register_matcher
from safeset.kinds.terms.bank import MAIN_LIST, NEAR_LIST, TERMS_FILE
from safeset.signals.compute import Signals
from safeset.signals.text import STEPS, NormalizedText, TextNormalizer, char_tables

_MAX_IDS_SHOWN = 10
#: "hyperscan", "pyahocorasick", or None for the fastest one installed; tests and benchmarks set it to
#: compare the two, which find the same matches.
ENGINE: str | None = None


@register_matcher
class TermMatcher(Matcher):
    kinds = ("term",)
    uses_captions = True

    def __init__(self, info: BankInfo, folder: Path) -> None:
        super().__init__(info, folder)
        self.normalizer = TextNormalizer(info.details.get("normalization", STEPS))
        self.whole_word = info.details.get("match", "word") == "word"
        near = info.details.get("near")
        self.within: int | None = int(near["within_tokens"]) if near else None
        min_score = info.details.get("min_score")
        self.min_score: float | None = float(min_score) if min_score is not None else None
        table = pq.read_table(folder / TERMS_FILE).to_pydict()
        self.lines: list[int] = table["line"]
        self.langs: list[str] = table["lang"]
        self.weights: list[float] = table["weight"]
        # One automaton key per distinct pattern; a pattern may stand for several lines of either list.
        index: dict[str, int] = {}
        self.terms_of: list[list[int]] = []  # pattern -> rows of the terms table
        # Other spellings of a term (`tshirt` for `t shirt`) are keys of their own that stand for the same lines;
        # banks imported before variants existed have no such column.
        variants = table.get("variants") or [[] for _ in table["pattern"]]
        for row, (pattern, others) in enumerate(zip(table["pattern"], variants, strict=True)):
            for spelling in dict.fromkeys([pattern, *(others or [])]):
                if spelling not in index:
                    index[spelling] = len(index)
                    self.terms_of.append([])
                self.terms_of[index[spelling]].append(row)
        self.list_of: list[int] = table["list"]
        encoded = [p.encode("utf-8") for p in index]
        self.lengths = np.array([len(p) for p in encoded], dtype=np.int64)  # in UTF-8 bytes
        self.in_main = np.array([any(self.list_of[r] == MAIN_LIST for r in rows) for rows in self.terms_of], dtype=bool)
        self.in_near = np.array([any(self.list_of[r] == NEAR_LIST for r in rows) for rows in self.terms_of], dtype=bool)
        self.automaton = _Automaton(encoded, ENGINE) if encoded else None
        if self.whole_word or self.within is not None:
            char_tables()  # built once per process (~0.1-0.5 s): here, not in the first batch scanned
        self._single: dict[int, tuple[float, str]] = {}  # pattern -> (score, evidence) of a row with only it

    def unusable_reason(self, offer: DatasetOffer, read_images: bool) -> str | None:
        if offer.has_captions:
            return None
        return f"bank {self.info.name!r} holds caption terms, but the dataset has no caption column"

    def match(self, signals: Signals) -> list[Hits]:
        text = signals.captions(self.normalizer)
        if text is None or self.automaton is None:
            return []
        patterns, ends = self.automaton.find(text.data)
        if not len(patterns):
            return []
        starts = ends - self.lengths[patterns]
        rows = np.searchsorted(text.byte_starts, starts, side="right") - 1
        keep = ends <= text.byte_ends[rows]  # a match running into the next row is no match
        if self.whole_word:
            keep &= _on_word_boundaries(text, rows, starts, ends)
        if not keep.all():
            rows, starts, ends, patterns = rows[keep], starts[keep], ends[keep], patterns[keep]
        if self.within is None:
            return self._plain(rows, patterns)
        return self._rules(text, rows, starts, ends, patterns)

    def _describe(self, term_rows: list[int], prefix: str = "") -> str:
        shown = [f"{prefix}L{self.lines[r]}" + (f"/{self.langs[r]}" if self.langs[r] else "") for r in term_rows]
        more = f" +{len(shown) - _MAX_IDS_SHOWN} more" if len(shown) > _MAX_IDS_SHOWN else ""
        return ",".join(shown[:_MAX_IDS_SHOWN]) + more

    def _plain(self, rows: np.ndarray, patterns: np.ndarray) -> list[Hits]:
        if not len(rows):
            return []
        # Distinct (row, pattern) pairs, sorted by row; most flagged rows hold one pattern, whose score and
        # evidence are computed once per bank, not once per row.
        pairs = np.unique(rows * len(self.lengths) + patterns)
        pair_rows, pair_patterns = np.divmod(pairs, len(self.lengths))
        first = np.ones(len(pairs), dtype=bool)
        first[1:] = pair_rows[1:] != pair_rows[:-1]
        bounds = np.append(np.flatnonzero(first), len(pairs)).tolist()
        positions, evidence = [], []
        for i, row in enumerate(pair_rows[first].tolist()):
            lo, hi = bounds[i], bounds[i + 1]
            if hi - lo == 1:
                score, text = self._single_pattern(int(pair_patterns[lo]))
            else:
                terms = sorted({t for p in pair_patterns[lo:hi].tolist() for t in self.terms_of[p]})
                score, text = self._evidence(terms)
            if self.min_score is not None and score < self.min_score:
                continue
            positions.append(row)
            evidence.append(text)
        if not positions:
            return []
        return [Hits(np.array(positions, dtype=np.int64), evidence, "term")]

    def _single_pattern(self, pattern: int) -> tuple[float, str]:
        if pattern not in self._single:
            self._single[pattern] = self._evidence(self.terms_of[pattern])
        return self._single[pattern]

    def _evidence(self, term_rows: list[int]) -> tuple[float, str]:
        """Score and evidence for a row matching these distinct rows of the terms table."""
        terms = sorted(term_rows, key=lambda r: self.lines[r])
        score = sum(self.weights[r] for r in terms)
        label = "term" if len(terms) == 1 else "terms"
        return score, f"{label} {self._describe(terms)}; score {score:g}"

    def _rules(
        self, text: NormalizedText, rows: np.ndarray, starts: np.ndarray, ends: np.ndarray, patterns: np.ndarray
    ) -> list[Hits]:
        """Co-occurrence: a row matches when a main-list term and a near-list term, not overlapping, have at most
        `within` tokens between them."""
        main, near = self.in_main[patterns], self.in_near[patterns]
        both = np.intersect1d(rows[main], rows[near])
        if not len(both):
            return []
        char_of, codes = _characters(text)
        token = _token_index(codes)
        starts, ends = char_of[starts], char_of[ends - 1]  # first and last character of each match
        by_row: dict[int, list[int]] = defaultdict(list)
        for i in np.flatnonzero(np.isin(rows, both)).tolist():
            by_row[int(rows[i])].append(i)
        positions, evidence = [], []
        for row, hits in sorted(by_row.items()):
            best: tuple[int, int, int] | None = None  # (gap, main hit, near hit)
            for a in (h for h in hits if main[h]):
                for b in (h for h in hits if near[h]):
                    if ends[a] < starts[b]:
                        gap = int(token[starts[b]] - token[ends[a]] - 1)
                    elif ends[b] < starts[a]:
                        gap = int(token[starts[a]] - token[ends[b]] - 1)
                    else:
                        continue  # one stretch of text cannot be both halves of a rule
                    if gap <= self.within and (best is None or gap < best[0]):  # type: ignore[operator]
                        best = (gap, a, b)
            if best is None:
                continue
            gap, a, b = best
            main_terms = [r for r in self.terms_of[patterns[a]] if self.list_of[r] == MAIN_LIST]
            near_terms = [r for r in self.terms_of[patterns[b]] if self.list_of[r] == NEAR_LIST]
            positions.append(row)
            evidence.append(
                f"term {self._describe(main_terms)} within {gap} tokens of near-term {self._describe(near_terms)}"
                f" (rule: within {self.within})"
            )
        if not positions:
            return []
        return [Hits(np.array(positions, dtype=np.int64), evidence, "term")]


try:  # no wheel for every platform (none for Linux on ARM): pyahocorasick stands in where it is missing
    import hyperscan
except ImportError:  # pragma: no cover - depends on the platform
    hyperscan = None


class _Automaton:
    """Every occurrence of every pattern in UTF-8 bytes, overlapping ones included: a word-boundary check
    needs them all, since the longest or leftmost match at a place may fail it while another passes.

    Hyperscan's literal matcher (SIMD, hashed buckets of many literals) scans 2-5x faster than an
    Aho–Corasick trie or DFA over a 10 k-term bank (see BENCHMARKS.md); pyahocorasick is the fallback where
    hyperscan cannot be installed or the CPU lacks the instructions it needs. Both give the same matches."""

    def __init__(self, patterns: list[bytes], engine: str | None = None) -> None:
        self.database: Any = None  # hyperscan.Database, when hyperscan is there
        self.automaton: ahocorasick.Automaton | None = None
        if engine in (None, "hyperscan") and hyperscan is not None:
            try:
                database = hyperscan.Database()
                database.compile(
                    expressions=patterns,
                    ids=list(range(len(patterns))),
                    elements=len(patterns),
                    flags=[0] * len(patterns),
                    literal=True,
                )
                self.database = database
            except hyperscan.ArchitectureError:  # pragma: no cover - a CPU without SSSE3
                if engine == "hyperscan":
                    raise
        if self.database is None:
            if engine == "hyperscan":
                raise RuntimeError("hyperscan is not installed")
            self.automaton = ahocorasick.Automaton()
            for i, pattern in enumerate(patterns):
                self.automaton.add_word(pattern.decode("utf-8"), i)
            self.automaton.make_automaton()
        self.engine = "hyperscan" if self.database is not None else "pyahocorasick"

    def find(self, data: bytes | memoryview) -> tuple[np.ndarray, np.ndarray]:
        """Pattern indices and end offsets (exclusive, in bytes) of all matches."""
        found: list[tuple[int, int]] = []
        if self.database is not None:
            self.database.scan(data, match_event_handler=lambda i, _start, end, _flags, _ctx: found.append((i, end)))
        else:
            found = self._find_in_text(data)
        if not found:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        table = np.array(found, dtype=np.int64)
        return table[:, 0], table[:, 1]

    def _find_in_text(self, data: bytes | memoryview) -> list[tuple[int, int]]:
        """pyahocorasick matches Python strings: decode, then turn character offsets back into bytes. Bytes
        that are not UTF-8 become one character each (surrogateescape), so offsets still line up."""
        assert self.automaton is not None
        text = str(data, "utf-8", "surrogateescape")
        found = list(self.automaton.iter(text))
        if not found:
            return []
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        escaped = (codes >= 0xDC80) & (codes <= 0xDCFF)
        sizes = np.where(escaped, 1, 1 + (codes >= 0x80) + (codes >= 0x800) + (codes >= 0x10000))
        after = np.cumsum(sizes)  # byte offset just after each character
        return [(i, int(after[end])) for end, i in found]


def _on_word_boundaries(text: NormalizedText, rows: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Word boundaries that fit the script, read from the characters on each side of each edge (so one bank holds
    terms in every script):

    - spaced scripts (Latin, Cyrillic, Arabic, ...): whole words, the characters around the hit are not word
      characters (the ends of its row count as such);
    - Hangul: a term starts a Hangul word, and anything may follow it (particles are written onto the word:
      `여성의`, `고양이가`); a Latin word followed by a particle (`zorblax가`) is whole too;
    - scripts written without spaces (Han, kana, Thai, ...): no boundary, on either side of the edge;
    - a change between Hangul and another script is a boundary (`LG전자`)."""
    data = text.bytes_array
    at_start, at_end = starts <= text.byte_starts[rows], ends >= text.byte_ends[rows]
    # One gather for the four characters around every match, and one for their facts (a batch has few matches:
    # numpy's cost per call, not per match, is what counts).
    n = len(starts)
    leads = _lead_byte_before(data, np.concatenate((ends, starts)))
    codes = _code_point_at(data, np.concatenate((starts, leads, np.minimum(ends, len(data) - 1))))
    facts = _boundary_facts()[codes]
    first, last, before, after = facts[:n], facts[n : 2 * n], facts[2 * n : 3 * n], facts[3 * n :]
    before = np.where(at_start, 0, before)  # the ends of a row read as no character at all
    after = np.where(at_end, 0, after)
    ok_before = ((before & _WORD) == 0) | (((before | first) & _UNSPACED) != 0) | (((before ^ first) & _HANGUL) != 0)
    ok_after = ((after & _WORD) == 0) | (((after | last) & (_UNSPACED | _HANGUL)) != 0)
    return ok_before & ok_after


_WORD, _UNSPACED, _HANGUL = 1, 2, 4


@cache
def _boundary_facts() -> np.ndarray:
    """What a word boundary asks of a code point, as bits of one byte: word character, script written without
    spaces, Hangul."""
    tables = char_tables()
    return (tables.word * _WORD | tables.unspaced * _UNSPACED | tables.hangul * _HANGUL).astype(np.uint8)


def _lead_byte_before(data: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Offset of the first byte of the character that ends just before each position (positions > 0)."""
    lead = np.maximum(positions - 1, 0)
    for _ in range(3):  # a UTF-8 character has at most three continuation bytes (0b10xxxxxx)
        inside = (lead > 0) & ((data[lead] & 0xC0) == 0x80)
        lead = lead - inside
    return lead


def _code_point_at(data: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Code points of the UTF-8 characters starting at these byte offsets (bad bytes give some code point
    below 0x110000, never an error: Arrow does not promise valid UTF-8 in every file)."""
    last = len(data) - 1
    b = [data[np.minimum(positions + k, last)].astype(np.uint32) for k in range(4)]
    two = ((b[0] & 0x1F) << 6) | (b[1] & 0x3F)
    three = ((b[0] & 0x0F) << 12) | ((b[1] & 0x3F) << 6) | (b[2] & 0x3F)
    four = ((b[0] & 0x07) << 18) | ((b[1] & 0x3F) << 12) | ((b[2] & 0x3F) << 6) | (b[3] & 0x3F)
    codes = np.where(b[0] < 0x80, b[0], np.where(b[0] < 0xE0, two, np.where(b[0] < 0xF0, three, four)))
    return np.minimum(codes, 0x10FFFF)


def _characters(text: NormalizedText) -> tuple[np.ndarray, np.ndarray]:
    """For each byte, the index of the character it belongs to; and every character's code point."""
    data = text.bytes_array
    lead = (data & 0xC0) != 0x80
    return np.cumsum(lead) - 1, _code_point_at(data, np.flatnonzero(lead))


def _token_index(codes: np.ndarray) -> np.ndarray:
    """For each character, the index of the token it is in (or follows): a token starts at a word character
    after a non-word one, and at every character of a script written without spaces and the one after it.
    Only differences within a row are read, so rows may sit back to back or be separated by NULs."""
    tables = char_tables()
    word = tables.word[codes]
    start = word.copy()
    unspaced = tables.unspaced[codes]
    start[1:] &= ~word[:-1] | unspaced[1:] | unspaced[:-1]
    return np.cumsum(start) - 1
