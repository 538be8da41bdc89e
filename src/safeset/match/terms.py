"""Term matching: one Aho–Corasick automaton per bank, run once over each batch of normalised captions.

The batch is one string (rows closed by NUL, which no pattern contains), so the automaton is called once per
batch, not once per caption. Raw hits are then checked for word boundaries and mapped to rows with numpy;
only rows that really match reach Python. Evidence names the bank's terms by source line (`L12`), never
the caption text, so neither findings nor logs repeat what a caption says.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import ahocorasick
import numpy as np
import pyarrow.parquet as pq

from safeset.banks.store import BankInfo
from safeset.banks.terms import MAIN_LIST, NEAR_LIST, TERMS_FILE
from safeset.match.base import DatasetOffer, Hits, Matcher, register_matcher
from safeset.signals.compute import Signals
from safeset.signals.text import STEPS, NormalizedText, TextNormalizer, char_tables

_MAX_IDS_SHOWN = 10


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
        for row, pattern in enumerate(table["pattern"]):
            if pattern not in index:
                index[pattern] = len(index)
                self.terms_of.append([])
            self.terms_of[index[pattern]].append(row)
        self.list_of: list[int] = table["list"]
        self.lengths = np.array([len(p) for p in index], dtype=np.int64)
        self.in_main = np.array([any(self.list_of[r] == MAIN_LIST for r in rows) for rows in self.terms_of], dtype=bool)
        self.in_near = np.array([any(self.list_of[r] == NEAR_LIST for r in rows) for rows in self.terms_of], dtype=bool)
        self.automaton = ahocorasick.Automaton()
        for pattern, i in index.items():
            self.automaton.add_word(pattern, i)
        if index:
            self.automaton.make_automaton()

    def unusable_reason(self, offer: DatasetOffer, read_images: bool) -> str | None:
        if offer.has_captions:
            return None
        return f"bank {self.info.name!r} holds caption terms, but the dataset has no caption column"

    def match(self, signals: Signals) -> list[Hits]:
        text = signals.captions(self.normalizer)
        if text is None or not len(self.lengths):
            return []
        found = np.array(list(self.automaton.iter(text.text)), dtype=np.int64).reshape(-1, 2)
        if not len(found):
            return []
        ends, patterns = found[:, 0], found[:, 1]
        starts = ends - self.lengths[patterns] + 1
        if self.whole_word:
            keep = _on_word_boundaries(text, starts, ends)
            starts, ends, patterns = starts[keep], ends[keep], patterns[keep]
        rows = np.searchsorted(text.starts, starts, side="right") - 1
        if self.within is None:
            return self._plain(rows, patterns)
        return self._rules(text, rows, starts, ends, patterns)

    def _describe(self, term_rows: list[int], prefix: str = "") -> str:
        shown = [f"{prefix}L{self.lines[r]}" + (f"/{self.langs[r]}" if self.langs[r] else "") for r in term_rows]
        more = f" +{len(shown) - _MAX_IDS_SHOWN} more" if len(shown) > _MAX_IDS_SHOWN else ""
        return ",".join(shown[:_MAX_IDS_SHOWN]) + more

    def _plain(self, rows: np.ndarray, patterns: np.ndarray) -> list[Hits]:
        per_row: dict[int, set[int]] = defaultdict(set)
        for row, pattern in zip(rows.tolist(), patterns.tolist(), strict=True):
            per_row[row].update(self.terms_of[pattern])
        positions, evidence = [], []
        for row in sorted(per_row):
            terms = sorted(per_row[row], key=lambda r: self.lines[r])
            score = sum(self.weights[r] for r in terms)
            if self.min_score is not None and score < self.min_score:
                continue
            positions.append(row)
            label = "term" if len(terms) == 1 else "terms"
            evidence.append(f"{label} {self._describe(terms)}; score {score:g}")
        if not positions:
            return []
        return [Hits(np.array(positions, dtype=np.int64), evidence, "term")]

    def _rules(
        self, text: NormalizedText, rows: np.ndarray, starts: np.ndarray, ends: np.ndarray, patterns: np.ndarray
    ) -> list[Hits]:
        """Co-occurrence: a row matches when a main-list term and a near-list term, not overlapping, have at most
        `within` tokens between them."""
        main, near = self.in_main[patterns], self.in_near[patterns]
        both = np.intersect1d(rows[main], rows[near])
        if not len(both):
            return []
        token = _token_index(text)
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


def _on_word_boundaries(text: NormalizedText, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """A hit is a whole word when the characters around it are not word characters; scripts written without
    spaces (Han, kana, Thai, ...) need no boundary, on either side of the edge."""
    tables = char_tables()
    first, last = _code_points_at(text, starts), _code_points_at(text, ends)
    before = np.where(starts > 0, _code_points_at(text, np.maximum(starts - 1, 0)), 0)
    after = _code_points_at(text, ends + 1)  # every row ends with NUL, so this never runs past the text
    ok_before = ~tables.word[before] | tables.unspaced[before] | tables.unspaced[first]
    ok_after = ~tables.word[after] | tables.unspaced[after] | tables.unspaced[last]
    return ok_before & ok_after


def _code_points_at(text: NormalizedText, positions: np.ndarray) -> np.ndarray:
    """Code points at a few positions; the whole batch as UTF-32 only when hits are many (it costs a copy)."""
    if len(positions) > 2048 or text._codes:
        return text.codes[positions]
    return np.fromiter((ord(text.text[i]) for i in positions.tolist()), dtype=np.uint32, count=len(positions))


def _token_index(text: NormalizedText) -> np.ndarray:
    """For each character, the index of the token it is in (or follows): a token starts at a word character
    after a non-word one, and at every character of a script written without spaces and the one after it."""
    tables = char_tables()
    word = tables.word[text.codes]
    start = word.copy()
    unspaced = tables.unspaced[text.codes]
    start[1:] &= ~word[:-1] | unspaced[1:] | unspaced[:-1]
    return np.cumsum(start) - 1
