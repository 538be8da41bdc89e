"""Caption and term text normalisation, applied identically to a bank's terms and to the captions it screens.

Term lists are evaded with case, accents, look-alike letters, leetspeak, spacing and punctuation, so both
sides are folded into one normal form before matching. Each step is optional; the steps a bank was built
with are recorded in its `bank.json` and so in every run's `summary.json`.

A batch of captions is joined into one string with a NUL after every row, so each step is a handful of
C-level calls over the whole batch (Python's NFKC, numpy gathers over UTF-32 code points, boolean masks
for context rules) instead of Python work per row; the same function normalises terms, so a term and a
caption containing it always agree.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: Every step, in the order they run. `separators` joins three or more single characters separated by one
#: and the same character (`w.o.r.d`, `w o r d`, `w-o-r-d` -> `word`; in `a w.o.r.d` the `a` stays apart);
#: `spacing` then turns each run of whitespace or punctuation into one space;
#: `repeats` collapses every run of one repeated letter to a single letter (on both sides, so `book`
#: still matches `book`, and `boook` matches it too).
STEPS: tuple[str, ...] = ("nfkc", "casefold", "accents", "confusables", "leetspeak", "separators", "spacing", "repeats")

#: Leetspeak digits and symbols, read as the letter only where they touch a letter (`h4x0r`, `$ign`), so
#: that numbers such as `2014` stay numbers. `1` is read as `i` (the commoner reading).
LEET: dict[str, str] = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}

ROW_END = 0  # NUL closes every row of a joined batch; no pattern can contain it, so no match spans two rows
_SPACE = 0x20
_N_CODES = 0x110000
_SURROGATES = slice(0xD800, 0xE000)


@dataclass(frozen=True)
class NormalizedText:
    """A batch of normalised rows as UTF-8: row i is `data[byte_starts[i] : byte_ends[i]]`.

    Matching runs on these bytes directly (no Python string per batch), so without normalisation `data` is
    the Arrow array's own buffer, rows back to back; after normalisation rows are separated by a NUL byte.
    Either way a matcher must drop matches that cross `byte_ends` of their row. `text` and `starts` are the
    older character view (every row followed by a NUL, `starts` in characters), built only when asked for."""

    data: bytes | memoryview  # UTF-8, format "B"
    byte_starts: np.ndarray  # int64, one per row, non-decreasing
    byte_ends: np.ndarray  # int64, one per row

    def row(self, i: int) -> str:
        # A NUL inside a raw caption reads as a space, as it does before normalisation.
        return str(self.data[int(self.byte_starts[i]) : int(self.byte_ends[i])], "utf-8").replace("\x00", " ")

    def rows(self) -> list[str]:
        return [self.row(i) for i in range(len(self.byte_starts))]

    @cached_property
    def text(self) -> str:
        return "".join(r + "\x00" for r in self.rows())

    @cached_property
    def starts(self) -> np.ndarray:
        """Character offset of each row in `text`, and the length of `text` last (int64, rows + 1)."""
        lengths = np.fromiter((len(r) + 1 for r in self.rows()), dtype=np.int64, count=len(self.byte_starts))
        starts = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=starts[1:])
        return starts

    @property
    def bytes_array(self) -> np.ndarray:
        return np.frombuffer(self.data, dtype=np.uint8)


@dataclass(frozen=True)
class CharTables:
    """Per-code-point facts, as numpy lookup tables indexed by code point."""

    word: np.ndarray  # bool: letter, digit or mark (part of a word)
    alpha: np.ndarray  # bool: letter
    unspaced: np.ndarray  # bool: script written without spaces between words (Han, kana, Thai, ...)


def _all_code_points() -> pa.Array:
    """Every code point as a one-character Arrow string (surrogates, which UTF-8 cannot hold, as a space)."""
    codes = np.arange(_N_CODES, dtype=np.uint32)
    codes[_SURROGATES] = _SPACE
    data = codes.tobytes().decode("utf-32-le").encode("utf-8")
    sizes = 1 + (codes >= 0x80).astype(np.int32) + (codes >= 0x800) + (codes >= 0x10000)
    offsets = np.zeros(_N_CODES + 1, dtype=np.int32)
    np.cumsum(sizes, out=offsets[1:])
    return pa.StringArray.from_buffers(_N_CODES, pa.py_buffer(offsets), pa.py_buffer(data))


def _mask(array: pa.Array, pattern: str) -> np.ndarray:
    return np.asarray(pc.match_substring_regex(array, pattern).to_numpy(zero_copy_only=False), dtype=bool)


@cache
def char_tables() -> CharTables:
    chars = _all_code_points()
    alpha = np.asarray(pc.utf8_is_alpha(chars).to_numpy(zero_copy_only=False), dtype=bool)
    word = np.asarray(pc.utf8_is_alnum(chars).to_numpy(zero_copy_only=False), dtype=bool) | _mask(chars, r"^\pM$")
    unspaced = _mask(chars, r"^[\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}]$")
    for table in (word, alpha, unspaced):
        table[ROW_END] = False
    return CharTables(word=word, alpha=alpha, unspaced=unspaced)


@cache
def confusable_prototypes() -> dict[str, str]:
    """TR39 prototypes of non-ASCII characters, from the table in `data/confusables.tsv` (see its header).

    ASCII sources (`0`->`O`, `1`->`l`, `m`->`rn`, ...) are left out: ASCII is the target script of the
    folding, and its digits belong to the leetspeak step."""
    table = resources.files("safeset.signals").joinpath("data/confusables.tsv").read_text(encoding="utf-8")
    prototypes: dict[str, str] = {}
    for line in table.splitlines():
        if not line or line.startswith("#"):
            continue
        source, target = line.split("\t")
        code = int(source, 16)
        if code >= 0x80:
            prototypes[chr(code)] = "".join(chr(int(t, 16)) for t in target.split())
    return prototypes


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text)
    if not any(unicodedata.category(c) == "Mn" for c in decomposed):
        return text  # keeps Hangul syllables and other marks-free decompositions composed
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if unicodedata.category(c) != "Mn"))


@dataclass(frozen=True)
class CharMap:
    """A per-character mapping (case folding, accent stripping, confusables) in array form: `single` maps
    code points whose image is one character; `length` says how long each image is (0 deletes a mark,
    2+ expands `ß` to `ss`); images of other lengths live in `flat` from `flat_start`."""

    single: np.ndarray  # uint32 per code point
    length: np.ndarray  # uint8 per code point
    flat_start: np.ndarray  # int64 per code point (only read where length != 1)
    flat: np.ndarray  # uint32

    def apply(self, codes: np.ndarray) -> np.ndarray:
        lengths = self.length[codes]
        odd = lengths != 1
        if not odd.any():
            return self.single[codes]
        # Expand each code point to its image: repeat each source position by its image length, then
        # walk along the image. Images of length 1 read `single`, the others `flat`.
        lengths = lengths.astype(np.int64)
        out_len = int(lengths.sum())
        source = np.repeat(np.arange(len(codes)), lengths)
        first_out = np.cumsum(lengths) - lengths
        within = np.arange(out_len) - first_out[source]
        src_codes = codes[source]
        out = self.single[src_codes]
        multi = odd[source]
        out[multi] = self.flat[self.flat_start[src_codes[multi]] + within[multi]]
        return out


@cache
def char_map(casefold: bool, accents: bool, confusables: bool) -> CharMap:
    chars = _all_code_points()
    candidates = np.zeros(_N_CODES, dtype=bool)
    if casefold:  # only characters with a case mapping can case-fold to something else
        candidates |= ~np.asarray(pc.equal(pc.utf8_lower(chars), chars).to_numpy(zero_copy_only=False), dtype=bool)
        candidates |= ~np.asarray(pc.equal(pc.utf8_upper(chars), chars).to_numpy(zero_copy_only=False), dtype=bool)
    if accents:
        candidates |= ~np.asarray(
            pc.equal(pc.utf8_normalize(chars, "NFD"), chars).to_numpy(zero_copy_only=False), dtype=bool
        )
        candidates |= _mask(chars, r"^\p{Mn}$")
    prototypes = confusable_prototypes() if confusables else {}
    for char in prototypes:
        candidates[ord(char)] = True
    candidates[_SURROGATES] = False

    def fold(text: str) -> str:
        if casefold:
            text = text.casefold()
        if accents:
            text = _strip_accents(text)
        return text

    single = np.arange(_N_CODES, dtype=np.uint32)
    length = np.ones(_N_CODES, dtype=np.uint8)
    flat_start = np.zeros(_N_CODES, dtype=np.int64)
    flat: list[int] = []
    for code in np.flatnonzero(candidates).tolist():
        image = fold(chr(code))
        if prototypes:
            # Prototypes may be capitals or carry marks: fold again, so every image is in the folded form.
            image = fold("".join(prototypes.get(c, c) for c in image))
        if image == chr(code):
            continue
        if len(image) == 1:
            single[code] = ord(image)
        else:
            length[code] = len(image)
            flat_start[code] = len(flat)
            flat.extend(ord(c) for c in image)
    return CharMap(single, length, flat_start, np.array(flat, dtype=np.uint32))


def _shift_right(mask: np.ndarray, by: int = 1) -> np.ndarray:
    """mask[i - by] at position i (False where that falls before the start)."""
    out = np.zeros_like(mask)
    out[by:] = mask[:-by]
    return out


def _shift_left(mask: np.ndarray, by: int = 1) -> np.ndarray:
    """mask[i + by] at position i (False where that falls past the end)."""
    out = np.zeros_like(mask)
    out[:-by] = mask[by:]
    return out


_LEET_TARGET = np.zeros(128, dtype=np.uint32)
for _digit, _letter in LEET.items():
    _LEET_TARGET[ord(_digit)] = ord(_letter)


def _leetspeak(codes: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    candidates = np.flatnonzero((codes < 128) & (_LEET_TARGET[np.minimum(codes, 127)] != 0))
    if not len(candidates):
        return codes
    codes = codes.copy()
    letter = alpha[codes]
    last = len(codes) - 1
    # Read a digit as a letter when it touches one; repeat so runs inside words (`h00t`) convert too.
    for _ in range(8):
        before = letter[np.maximum(candidates - 1, 0)] & (candidates > 0)
        after = letter[np.minimum(candidates + 1, last)] & (candidates < last)
        now = candidates[before | after]
        if not len(now):
            break
        codes[now] = _LEET_TARGET[codes[now]]
        letter[now] = True
        candidates = candidates[~(before | after)]
    return codes


def _spacing(codes: np.ndarray, word: np.ndarray) -> np.ndarray:
    codes = np.where(word[codes] | (codes == ROW_END), codes, _SPACE).astype(np.uint32)
    space = codes == _SPACE
    boundary = space | (codes == ROW_END)
    leading = np.ones(len(codes), dtype=bool)
    leading[1:] = boundary[:-1]  # a space after a space, a row end or the start of the batch
    codes = codes[~(space & leading)]
    space = codes == _SPACE
    return codes[~(space & _shift_left(codes == ROW_END))]  # the one space left before a row end


def _join_single_characters(codes: np.ndarray, word: np.ndarray) -> np.ndarray:
    token = word[codes]
    single = token & ~_shift_right(token) & ~_shift_left(token)
    separator = ~token & (codes != ROW_END)
    between = separator & _shift_right(single) & _shift_left(single)
    # Three single characters or more: the same separator again two places away (so the article in
    # `a Z.O.R.D` is not glued to the word that follows it).
    same_before, same_after = np.zeros_like(between), np.zeros_like(between)
    same_before[2:] = between[:-2] & (codes[2:] == codes[:-2])
    same_after[:-2] = between[2:] & (codes[:-2] == codes[2:])
    chained = between & (same_before | same_after)
    return codes[~chained] if chained.any() else codes


def _collapse_repeats(codes: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    repeat = alpha[codes]
    repeat[1:] &= codes[1:] == codes[:-1]
    repeat[0] = False
    return codes[~repeat] if repeat.any() else codes


def _joined(values: pa.Array) -> str:
    """All rows as one string, each followed by NUL (a NUL inside a caption becomes a space)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        values = pc.cast(values, pa.string())
    values = pc.fill_null(values, "")
    if pc.any(pc.match_substring(values, "\x00")).as_py():
        values = pc.replace_substring(values, "\x00", " ")
    joined = pc.binary_join_element_wise(values, "", "\x00")
    offset_type = np.int64 if pa.types.is_large_string(joined.type) else np.int32
    offsets = np.frombuffer(joined.buffers()[1], dtype=offset_type)[joined.offset : joined.offset + len(joined) + 1]
    data = joined.buffers()[2]
    if data is None:
        return ""
    return str(memoryview(data)[int(offsets[0]) : int(offsets[-1])], "utf-8")


def _raw_rows(values: pa.Array) -> NormalizedText:
    """Rows as they are: the Arrow array's UTF-8 buffer itself, no copy (null rows become empty ranges)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        values = pc.cast(values, pa.string())
    offset_type = np.int64 if pa.types.is_large_string(values.type) else np.int32
    offsets = np.frombuffer(values.buffers()[1], dtype=offset_type)[values.offset : values.offset + len(values) + 1]
    if not len(offsets):  # an empty array may come without offsets
        offsets = np.zeros(1, dtype=offset_type)
    first, last = int(offsets[0]), int(offsets[-1])
    offsets = offsets.astype(np.int64) - first
    buffer = values.buffers()[2]
    data = memoryview(buffer).cast("B")[first:last] if buffer is not None else b""
    starts, ends = offsets[:-1], offsets[1:]
    if values.null_count:
        # Arrow lets a null slot own bytes; such bytes must not be screened as a caption.
        valid = np.asarray(values.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        ends = np.where(valid, ends, starts)
    return NormalizedText(data, starts, ends)


class TextNormalizer:
    """The chosen steps, run in the fixed order of STEPS."""

    def __init__(self, steps: Iterable[str] = STEPS) -> None:
        chosen = set(steps)
        unknown = chosen - set(STEPS)
        if unknown:
            names = ", ".join(sorted(unknown))
            raise ValueError(f"unknown normalisation step(s) {names}; choose from {', '.join(STEPS)}")
        self.steps: tuple[str, ...] = tuple(s for s in STEPS if s in chosen)

    def __repr__(self) -> str:
        return f"TextNormalizer({list(self.steps)})"

    def normalize_array(self, values: pa.Array) -> NormalizedText:
        if not self.steps:
            return _raw_rows(values)
        text = _joined(values)
        steps = set(self.steps)
        if "nfkc" in steps:
            text = unicodedata.normalize("NFKC", text)
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        tables = char_tables()
        if steps & {"casefold", "accents", "confusables"}:
            codes = char_map("casefold" in steps, "accents" in steps, "confusables" in steps).apply(codes)
        if "leetspeak" in steps:  # before spacing, which would blank `@` and `$`
            codes = _leetspeak(codes, tables.alpha)
        if "separators" in steps:
            joined = _join_single_characters(codes, tables.word)
            if "leetspeak" in steps and len(joined) != len(codes):
                joined = _leetspeak(joined, tables.alpha)  # `w 0 r d` -> `w0rd` -> `word`
            codes = joined
        if "spacing" in steps:
            codes = _spacing(codes, tables.word)
        if "repeats" in steps:
            codes = _collapse_repeats(codes, tables.alpha)
        # Back to UTF-8 for the matcher; the row-closing NULs stay in the bytes and mark where rows end.
        data = np.ascontiguousarray(codes, dtype=np.uint32).tobytes().decode("utf-32-le").encode("utf-8")
        ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ROW_END)
        starts = np.zeros(len(ends), dtype=np.int64)
        starts[1:] = ends[:-1] + 1
        return NormalizedText(data, starts, ends.astype(np.int64))

    def normalize_strings(self, values: Sequence[str]) -> list[str]:
        """The same normalisation for a few strings (terms at import, tests)."""
        return self.normalize_array(pa.array(list(values), type=pa.string())).rows()


def parse_steps(spec: str) -> tuple[str, ...]:
    """`all`, `none`, or a comma-separated list of STEPS (as given to `bank add --normalize`)."""
    spec = spec.strip().lower()
    if spec == "all":
        return STEPS
    if spec in ("none", ""):
        return ()
    return TextNormalizer(s.strip() for s in spec.split(",") if s.strip()).steps
