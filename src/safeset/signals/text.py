"""Caption and term text normalisation, applied identically to a bank's terms and to the captions it screens.

Term lists are evaded with case, accents, look-alike letters, leetspeak, spacing and punctuation, so both
sides are folded into one normal form before matching. Each step is optional; the steps a bank was built
with are recorded in its `bank.json` and so in every run's `summary.json`.

A batch of captions goes from the Arrow buffer to the UTF-8 the matcher scans in one compiled kernel
(numba), a row at a time, with no Python work per row: one byte per code point tells every step what it
needs to know about a character, and one table holds every per-character step (NFKC's context-free images,
invisible characters, case, accents, confusables). Most captions (97 % of the benchmark's) take a single
streaming pass (decode, map, leetspeak, spacing, repeats, encode); the rest, where the separators step may
join something, are worked on in two small row buffers. Only rows holding a character that NFKC may combine
with its neighbours go through Python's normaliser (all of a batch's in one call), then through the kernel
again. The numpy version of every step (`COMPILED = False`) is the reference the kernel is tested against.
The same function normalises terms, so a term and a caption containing it always agree; every step reads
only its own row, so a row's normal form does not depend on the batch it is in.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from safeset.signals.utf8 import k_put_utf8

#: Every step, in the order they run. `invisible` deletes invisible format characters (Unicode category Cf
#: such as zero-width spaces and joiners, the soft hyphen, bidi controls, tags; variation selectors and
#: the other default-ignorable code points such as Hangul fillers), which otherwise split a word in two;
#: `separators` joins three or more single characters separated by one and the same character (`w.o.r.d`,
#: `w o r d`, `w-o-r-d` -> `word`; in `a w.o.r.d` the `a` stays apart), and two or more in scripts whose
#: characters are syllables (Hangul, Han, kana: `사 진` -> `사진`); `spacing` then turns each run of
#: whitespace or punctuation into one space (whitespace between two characters of a script written without
#: spaces, such as Han or Thai, goes); `repeats` collapses every run of one repeated letter to a single
#: letter (on both sides, so `book` still matches `book`, and `boook` matches it too).
STEPS: tuple[str, ...] = (
    "nfkc",
    "invisible",
    "casefold",
    "accents",
    "confusables",
    "leetspeak",
    "separators",
    "spacing",
    "repeats",
)

#: Leetspeak digits and symbols, read as the letter only where they touch a letter (`h4x0r`, `$ign`), so
#: that numbers such as `2014` stay numbers. `1` is read as `i` (the commoner reading).
LEET: dict[str, str] = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}

#: Default_Ignorable_Code_Point ranges (Unicode DerivedCoreProperties) beyond category Cf: combining grapheme
#: joiner, Hangul fillers, Khmer inherent vowels, Mongolian variation selectors, variation selectors,
#: halfwidth Hangul filler, unassigned U+FFF0-FFF8, and the whole tag / variation selector supplement plane.
DEFAULT_IGNORABLE: tuple[tuple[int, int], ...] = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)

ROW_END = 0  # NUL closes every row of a joined batch; no pattern can contain it, so no match spans two rows
_SPACE = 0x20
_FIRST_INVISIBLE = 0xAD  # the soft hyphen: a batch with no code point this high holds no invisible character
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
    hangul: np.ndarray  # bool: Hangul (words are spaced, particles are written onto the word)
    syllabic: np.ndarray  # bool: one character is a syllable (Hangul, Han, kana, Yi): two spaced ones join
    invisible: np.ndarray  # bool: invisible format character or other default-ignorable code point
    space: np.ndarray  # bool: whitespace


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
    hangul = _mask(chars, r"^\p{Hangul}$")
    syllabic = _mask(chars, r"^[\p{Hangul}\p{Han}\p{Hiragana}\p{Katakana}\p{Yi}]$") & alpha
    invisible = _mask(chars, r"^\p{Cf}$")
    for first, last in DEFAULT_IGNORABLE:
        invisible[first : last + 1] = True
    invisible[_SURROGATES] = False
    space = _mask(chars, r"^[\p{Z}\t\n\v\f\r\x{85}]$")
    for table in (word, alpha, unspaced, hangul, syllabic, invisible, space):
        table[ROW_END] = False
    return CharTables(word, alpha, unspaced, hangul, syllabic, invisible, space)


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

    @classmethod
    def from_images(cls, images: list[tuple[int, str]]) -> CharMap:
        """The map sending each listed code point to its image (one character inline, longer or empty ones in
        `flat`) and every other code point to itself."""
        single = np.arange(_N_CODES, dtype=np.uint32)
        length = np.ones(_N_CODES, dtype=np.uint8)
        flat_start = np.zeros(_N_CODES, dtype=np.int64)
        flat: list[int] = []
        for code, image in images:
            if len(image) == 1:
                single[code] = ord(image)
            else:
                length[code] = len(image)
                flat_start[code] = len(flat)
                flat.extend(ord(c) for c in image)
        return cls(single, length, flat_start, np.array(flat, dtype=np.uint32))

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

    images: list[tuple[int, str]] = []
    for code in np.flatnonzero(candidates).tolist():
        image = fold(chr(code))
        if prototypes:
            # Prototypes may be capitals or carry marks: fold again, so every image is in the folded form.
            image = fold("".join(prototypes.get(c, c) for c in image))
        if image != chr(code):
            images.append((code, image))
    return CharMap.from_images(images)


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


@dataclass(frozen=True)
class NfkcTables:
    """NFKC in table form. `unstable`: a text holding the character may change under NFKC (the quick check,
    made exact for single characters), so a row without any is already in NFKC. `hard`: the character may
    interact with its neighbours (non-zero combining class: reordered; the second half of a canonical pair,
    Hangul vowel and trailing jamo: composed with the one before; or a compatibility character whose image
    starts with such a one), so its row goes through Python's normaliser. The other unstable characters
    (full-width forms, ligatures, circled digits, ...) are `simple`: their image, in `mapping`, does not
    depend on what is around them."""

    unstable: np.ndarray  # bool per code point
    hard: np.ndarray  # bool per code point
    mapping: CharMap


@cache
def nfkc_tables() -> NfkcTables:
    chars = _all_code_points()
    changes = ~np.asarray(pc.equal(pc.utf8_normalize(chars, "NFKC"), chars).to_numpy(zero_copy_only=False), dtype=bool)
    interacts = np.zeros(_N_CODES, dtype=bool)
    for code in np.flatnonzero(_mask(chars, r"^\p{M}$")).tolist():
        interacts[code] = unicodedata.combining(chr(code)) != 0
    nfd = pc.utf8_normalize(chars, "NFD")
    decomposes = ~np.asarray(pc.equal(nfd, chars).to_numpy(zero_copy_only=False), dtype=bool)
    for code in np.flatnonzero(decomposes).tolist():
        parts = unicodedata.decomposition(chr(code)).split()
        if len(parts) == 2 and not parts[0].startswith("<"):
            interacts[int(parts[1], 16)] = True
    interacts[0x1161:0x1176] = True  # Hangul V jamo (L+V compose arithmetically, not by decomposition tables)
    interacts[0x11A8:0x11C3] = True  # Hangul T jamo
    changes[_SURROGATES] = interacts[_SURROGATES] = False
    changes[ROW_END] = interacts[ROW_END] = False
    hard = interacts.copy()
    images: list[tuple[int, str]] = []
    for code in np.flatnonzero(changes & ~interacts).tolist():
        image = unicodedata.normalize("NFKC", chr(code))
        if not image or interacts[ord(image[0])] or len(image) > 255:
            hard[code] = True
        else:
            images.append((code, image))
    mapping = CharMap.from_images(images)
    return NfkcTables(unstable=changes | interacts, hard=hard, mapping=mapping)


def nfkc_unstable() -> np.ndarray:
    return nfkc_tables().unstable


def _nfkc_rows_that_need_it(text: str, codes: np.ndarray) -> np.ndarray:
    """NFKC, run by Python only on the rows that are not in NFKC already: over a whole batch, one stray
    full-width comma would send every row through the slow path (3-4x the cost on multilingual captions)."""
    unstable = nfkc_unstable()[codes]
    if not unstable.any():
        return codes
    row_ends = np.flatnonzero(codes == ROW_END)
    rows = np.unique(np.searchsorted(row_ends, np.flatnonzero(unstable)))
    row_starts = np.zeros(len(row_ends), dtype=np.int64)
    row_starts[1:] = row_ends[:-1] + 1
    pieces, done = [], 0
    for start, end in zip(row_starts[rows].tolist(), row_ends[rows].tolist(), strict=True):
        pieces.append(text[done:start])
        pieces.append(unicodedata.normalize("NFKC", text[start:end]))
        done = end
    pieces.append(text[done:])
    return np.frombuffer("".join(pieces).encode("utf-32-le"), dtype=np.uint32)


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


def _leetspeak_where_joined(before: np.ndarray, after: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Leetspeak again, on the rows the separators step shortened and only on those: a second pass reaches
    further into a long run of leet symbols, so running it on every row of a batch that has one such row would
    make a row's normal form depend on its batch."""
    before_ends, after_ends = np.flatnonzero(before == ROW_END), np.flatnonzero(after == ROW_END)
    joined_rows = np.diff(before_ends, prepend=-1) != np.diff(after_ends, prepend=-1)
    row_of = np.searchsorted(after_ends, np.arange(len(after)))  # a row's NUL counts as part of it
    return np.where(joined_rows[row_of], _leetspeak(after, alpha), after)


def _drop_spaces_between_unspaced(codes: np.ndarray, tables: CharTables) -> np.ndarray:
    """Whitespace between two characters of scripts written without spaces (`猫 咖啡`, Thai phrases) separates
    no words: it goes, so that a term matches however the caption was spaced."""
    unspaced = tables.unspaced[codes]
    if not unspaced.any():
        return codes
    space = tables.space[codes]
    first = np.flatnonzero(space[1:] & unspaced[:-1]) + 1  # a run of whitespace after an unspaced character
    if not len(first):
        return codes
    # Walk each run to its end (runs are short: one space, most of the time).
    last = len(codes) - 1
    after = np.minimum(first + 1, last)
    for _ in range(64):
        more = space[after] & (after < last)
        if not more.any():
            break
        after = after + more
    keep = unspaced[after] & ~space[after]
    first, after = first[keep], after[keep]
    if not len(first):
        return codes
    drop = np.zeros(len(codes) + 1, dtype=np.int32)  # +1 at a run's start, -1 after its end
    np.add.at(drop, first, 1)
    np.add.at(drop, after, -1)
    return codes[np.cumsum(drop[:-1]) == 0]


def _spacing(codes: np.ndarray, tables: CharTables) -> np.ndarray:
    codes = _drop_spaces_between_unspaced(codes, tables)
    word = tables.word
    codes = np.where(word[codes] | (codes == ROW_END), codes, _SPACE).astype(np.uint32)
    space = codes == _SPACE
    boundary = space | (codes == ROW_END)
    leading = np.ones(len(codes), dtype=bool)
    leading[1:] = boundary[:-1]  # a space after a space, a row end or the start of the batch
    codes = codes[~(space & leading)]
    space = codes == _SPACE
    return codes[~(space & _shift_left(codes == ROW_END))]  # the one space left before a row end


def _join_single_characters(codes: np.ndarray, tables: CharTables) -> np.ndarray:
    token = tables.word[codes]
    single = token & ~_shift_right(token) & ~_shift_left(token)
    separator = ~token & (codes != ROW_END)
    between = separator & _shift_right(single) & _shift_left(single)
    if not between.any():
        return codes
    # Three single characters or more: the same separator again two places away (so the article in
    # `a Z.O.R.D` is not glued to the word that follows it).
    same_before, same_after = np.zeros_like(between), np.zeros_like(between)
    same_before[2:] = between[:-2] & (codes[2:] == codes[:-2])
    same_after[:-2] = between[2:] & (codes[:-2] == codes[2:])
    chained = between & (same_before | same_after)
    # A Hangul or Han character is a syllable, not a letter: two of them spaced apart (`사 진`) are as much a
    # spelled-out word as five Latin letters are.
    syllable = single & tables.syllabic[codes]
    chained |= between & _shift_right(syllable) & _shift_left(syllable)
    return codes[~chained] if chained.any() else codes


def _collapse_repeats(codes: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    if not len(codes):
        return codes
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


#: Run the steps in the compiled kernel (numba); False runs the numpy version, kept as the reference the
#: compiled one is tested against (same output for every input).
COMPILED = True
_KERNELS: list[str] = []


def _jit(function: Any) -> Any:
    """Marks a compiled kernel. numba is imported and the kernels compiled (or loaded from numba's cache) on
    the first normalisation, not on import: importing numba costs a second or two that a CLI call which never
    normalises should not pay."""
    _KERNELS.append(function.__name__)
    return function


@cache
def _compile_kernels() -> None:
    import numba

    compile_kernel = numba.njit(cache=True, nogil=True)
    for name in _KERNELS:  # module globals, so that kernels calling kernels find the compiled ones
        globals()[name] = compile_kernel(globals()[name])


@cache
def front_map(nfkc: bool, invisible: bool, casefold: bool, accents: bool, confusables: bool) -> CharMap | None:
    """The per-character steps as one table, applied in one pass: NFKC's context-free images, then invisible
    characters deleted, then case, accents and confusables folded (each image is mapped through the next
    step, so the result is the steps run one after the other). None when no step is chosen."""
    fold = char_map(casefold, accents, confusables) if (casefold or accents or confusables) else None
    nfkc_map = nfkc_tables().mapping if nfkc else None
    hidden = char_tables().invisible if invisible else None
    if fold is None and nfkc_map is None and hidden is None:
        return None
    identity = np.arange(_N_CODES, dtype=np.uint32)
    candidates = np.zeros(_N_CODES, dtype=bool)
    for step in (fold, nfkc_map):
        if step is not None:
            candidates |= (step.length != 1) | (step.single != identity)
    if hidden is not None:
        candidates |= hidden

    def image_of(step: CharMap | None, code: int) -> list[int]:
        if step is None:
            return [code]
        if step.length[code] == 1:
            return [int(step.single[code])]
        start = int(step.flat_start[code])
        return step.flat[start : start + int(step.length[code])].tolist()

    single, length = identity.copy(), np.ones(_N_CODES, dtype=np.uint8)
    flat_start = np.zeros(_N_CODES, dtype=np.int64)
    flat: list[int] = []
    for code in np.flatnonzero(candidates).tolist():
        image = image_of(nfkc_map, code)
        if hidden is not None:
            image = [c for c in image if not hidden[c]]
        image = [folded for c in image for folded in image_of(fold, c)]
        if len(image) == 1:
            single[code] = image[0]
        else:
            length[code] = len(image)
            flat_start[code] = len(flat)
            flat.extend(image)
    return CharMap(single, length, flat_start, np.array(flat, dtype=np.uint32))


# Bits of the per-code-point property byte the fused kernel reads: one table lookup gives every fact a step
# needs about a character (separate boolean tables cost one cache line each).
_P_WORD = 1
_P_ALPHA = 2
_P_UNSPACED = 4
_P_SPACE = 8
_P_SYLLABIC = 16
_P_HARD = 32  # NFKC may combine it with its neighbours: the row goes through Python's normaliser
_P_MAPPED = 64  # a per-character step changes it, or it is HARD (the kernel reads the map only then)
_P_LEET = 128  # a leetspeak symbol (ASCII)


@dataclass(frozen=True)
class KernelTables:
    """What the fused kernel reads for one choice of steps: the property byte of every code point, and the
    per-character steps' map (identity where `_P_MAPPED` is not set)."""

    props: np.ndarray  # uint8 per code point
    mapping: CharMap
    longest_image: int


@cache
def kernel_tables(steps: frozenset[str]) -> KernelTables:
    tables = char_tables()
    props = np.zeros(_N_CODES, dtype=np.uint8)
    for table, bit in (
        (tables.word, _P_WORD),
        (tables.alpha, _P_ALPHA),
        (tables.unspaced, _P_UNSPACED),
        (tables.space, _P_SPACE),
        (tables.syllabic, _P_SYLLABIC),
    ):
        props[table] |= bit
    if "nfkc" in steps:
        props[nfkc_tables().hard] |= _P_HARD | _P_MAPPED  # MAPPED: looked at on the kernel's slower branch
    mapping = front_map(*(step in steps for step in ("nfkc", "invisible", "casefold", "accents", "confusables")))
    if mapping is None:
        identity = np.arange(_N_CODES, dtype=np.uint32)
        mapping = CharMap(identity, np.ones(_N_CODES, dtype=np.uint8), np.zeros(_N_CODES, dtype=np.int64), identity[:0])
    else:
        props[(mapping.length != 1) | (mapping.single != np.arange(_N_CODES, dtype=np.uint32))] |= _P_MAPPED
    if "leetspeak" in steps:
        props[np.flatnonzero(_LEET_TARGET)] |= _P_LEET
    props[ROW_END] = 0
    return KernelTables(props, mapping, max(int(mapping.length.max()), 1))


@_jit
def _k_decode_at(data: np.ndarray, i: int, end: int) -> tuple[int, int]:
    """The code point of the UTF-8 sequence at `data[i]` (before `end`) and the offset after it: a byte that
    does not start a valid sequence reads as U+FFFD on its own, a NUL as a space."""
    b = np.int64(data[i])
    if b < 0x80:
        return (_SPACE if b == ROW_END else b), i + 1
    n = 1 if 0xC2 <= b < 0xE0 else 2 if 0xE0 <= b < 0xF0 else 3 if 0xF0 <= b < 0xF5 else 0
    c = b & (0x1F if n == 1 else 0x0F if n == 2 else 0x07)
    if n == 0:
        return 0xFFFD, i + 1
    for k in range(1, n + 1):
        if i + k >= end or (data[i + k] & 0xC0) != 0x80:
            return 0xFFFD, i + 1
        c = (c << 6) | (np.int64(data[i + k]) & 0x3F)
    minimum = 0x80 if n == 1 else 0x800 if n == 2 else 0x10000
    if minimum <= c <= 0x10FFFF and not 0xD800 <= c < 0xE000:
        return c, i + n + 1
    return 0xFFFD, i + 1


@_jit
def _k_leet_row(a: np.ndarray, n: int, props: np.ndarray, target: np.ndarray) -> None:
    """As `_leetspeak`, on one row in place: in a run of leet symbols, those within 8 places of a letter
    touching the run convert. The letters a run looks at are never leet symbols, so no conversion affects
    another."""
    i = 0
    while i < n:
        if props[a[i]] & _P_LEET:
            j = i
            while j < n and props[a[j]] & _P_LEET:
                j += 1
            left = i > 0 and (props[a[i - 1]] & _P_ALPHA) != 0
            right = j < n and (props[a[j]] & _P_ALPHA) != 0
            for k in range(i, j):
                if (left and k - i < 8) or (right and j - 1 - k < 8):
                    a[k] = target[a[k]]
            i = j + 1  # a[j] is no leet symbol
        else:
            i += 1


@_jit
def _k_single(a: np.ndarray, n: int, props: np.ndarray, i: int) -> bool:
    """A word character with no word character on either side (False outside the row)."""
    return (
        0 <= i < n
        and (props[a[i]] & _P_WORD) != 0
        and not (i > 0 and (props[a[i - 1]] & _P_WORD) != 0)
        and not (i + 1 < n and (props[a[i + 1]] & _P_WORD) != 0)
    )


@_jit
def _k_between(a: np.ndarray, n: int, props: np.ndarray, i: int) -> bool:
    """A separator (not a word character) between two single characters."""
    if i < 1 or i + 1 >= n or (props[a[i]] & _P_WORD) != 0:
        return False
    return _k_single(a, n, props, i - 1) and _k_single(a, n, props, i + 1)


@_jit
def _k_join_row(a: np.ndarray, n: int, props: np.ndarray, out: np.ndarray) -> int:
    """As `_join_single_characters`, on one row: the row without the separators it drops, in `out`; its length."""
    m = 0
    for i in range(n):
        c = a[i]
        if (
            (props[c] & _P_WORD) == 0
            and _k_between(a, n, props, i)
            and (
                (_k_between(a, n, props, i - 2) and a[i - 2] == c)
                or (_k_between(a, n, props, i + 2) and a[i + 2] == c)
                or ((props[a[i - 1]] & _P_SYLLABIC) != 0 and (props[a[i + 1]] & _P_SYLLABIC) != 0)
            )
        ):
            continue
        out[m] = c
        m += 1
    return m


_jit(k_put_utf8)  # shared with the other kernel module; compiled with this module's kernels


@_jit
def _k_finish_row(
    a: np.ndarray, n: int, props: np.ndarray, spacing: bool, repeats: bool, out: np.ndarray, at: int
) -> int:
    """`spacing` (as `_drop_spaces_between_unspaced`, then `_spacing`), `repeats` (as `_collapse_repeats`) and
    the UTF-8 encoding of one row, written at `out[at:]`; the offset after it (the row-closing NUL is not
    written). With spacing, the row is read as alternating runs of word and other characters, so the loop
    over a word's letters does not ask at every letter what came before it."""
    last = -1  # the last character written (repeats compare against it)
    i = 0
    if not spacing:
        while i < n:
            c = np.int64(a[i])
            i += 1
            if repeats and c == last and (props[c] & _P_ALPHA) != 0:
                continue
            at = k_put_utf8(out, at, c)
            last = c
        return at
    while i < n:
        if (props[a[i]] & _P_WORD) == 0:
            # A run of other characters: nothing at the row's start or end, else one space; no space when the
            # run is up to 65 whitespace characters between two characters of scripts written without spaces.
            first = i
            only_whitespace = True
            while i < n and (props[a[i]] & _P_WORD) == 0:
                only_whitespace = only_whitespace and (props[a[i]] & _P_SPACE) != 0
                i += 1
            if first == 0 or i == n:
                continue
            if (
                only_whitespace
                and i - first <= 65
                and (props[a[first - 1]] & _P_UNSPACED) != 0
                and (props[a[i]] & _P_UNSPACED) != 0
            ):
                continue
            out[at] = _SPACE  # a space is no letter: never a repeat
            at += 1
            last = _SPACE
        while i < n:
            c = np.int64(a[i])
            p = props[c]
            if (p & _P_WORD) == 0:
                break
            i += 1
            if repeats and c == last and (p & _P_ALPHA) != 0:
                continue
            at = k_put_utf8(out, at, c)
            last = c
    return at


@_jit
def _k_decode_map_row(
    data: np.ndarray,
    start: int,
    end: int,
    props: np.ndarray,
    single: np.ndarray,
    length: np.ndarray,
    flat_start: np.ndarray,
    flat: np.ndarray,
    hard_to_python: bool,
    out: np.ndarray,
) -> tuple[int, bool, bool]:
    """One row decoded and passed through the per-character map into `out` (room for every image): its length
    (-1 when `hard_to_python` and the row holds a character NFKC may combine with its neighbours), whether it
    holds a leet symbol, and whether the separators step may have something to join in it (a non-word
    character between two single word characters, or a leet symbol that is no word character: `$` and `@`
    turn into letters)."""
    n = 0
    seen = 0  # every property bit of the characters written
    symbol = False  # a leet symbol that is no word character (`$`, `@`)
    words = 0  # one bit per character written, 1 for a word character, the newest lowest
    join = False
    i = start
    while i < end:
        c = np.int64(data[i])
        if c < 0x80 and c != ROW_END:
            i += 1
        else:
            c, i = _k_decode_at(data, i, end)
        p = props[c]
        if (p & _P_MAPPED) == 0:
            out[n] = c
            n += 1
            seen |= p
            symbol |= (p & (_P_LEET | _P_WORD)) == _P_LEET
            words = (words << 1) | (p & _P_WORD)
            join |= (words & 31) == 0b01010
        elif hard_to_python and (p & _P_HARD) != 0:
            return -1, False, False
        else:
            first = flat_start[c]
            size = length[c]
            for k in range(size):
                d = single[c] if size == 1 else flat[first + k]
                out[n] = d
                n += 1
                q = props[d]
                seen |= q
                symbol |= (q & (_P_LEET | _P_WORD)) == _P_LEET
                words = (words << 1) | (q & _P_WORD)
                join |= (words & 31) == 0b01010
    # The end of the row counts as a non-word character; `$` and `@` may become letters.
    join = join or ((words << 1) & 31) == 0b01010 or symbol
    return n, (seen & _P_LEET) != 0, join


@_jit
def _k_stream_row(
    data: np.ndarray,
    start: int,
    end: int,
    props: np.ndarray,
    single: np.ndarray,
    length: np.ndarray,
    flat_start: np.ndarray,
    flat: np.ndarray,
    leet_target: np.ndarray,
    hard_to_python: bool,
    separators: bool,
    spacing: bool,
    repeats: bool,
    images: np.ndarray,
    out: np.ndarray,
    at: int,
) -> int:
    """Most rows in one pass with no row buffer between the steps: decoded, mapped, leetspeak, spaced,
    collapsed and encoded straight into `out[at:]` (room for 4 bytes per byte of the row), exactly as the
    buffered path (`_k_decode_map_row`, `_k_leet_row`, `_k_finish_row`) would. Gives up (-1) on a row that
    needs more: a character NFKC may combine with its neighbours (when `hard_to_python`), a place where the
    separators step may join
    something, or rarer cases (an image holding a leet symbol, a run of more than `len(images)` leet
    symbols, an invisible character right after one, a row growing past its room); such rows take the
    buffered path.

    Each character read becomes a few characters in `images` (its image under the per-character map, or a
    whole run of leet symbols, converted), which then go through spacing, repeats and the encoding."""
    last = -1  # the last character written (repeats compare against it)
    words = 0  # one bit per character, 1 for a word character, the newest lowest (the separators' pattern)
    seen_word = False  # spacing: a run of other characters before any word character is dropped
    in_run = False  # spacing: inside a run of other characters after a word character
    run_whitespace = False  # ... which has held only whitespace so far
    run_length = 0
    before_run = 0  # the property bits of the word character before the run
    previous = 0  # the property bits of the last word character
    mapped = 0  # the property bits of the last character after the map (leetspeak reads the letter before a run)
    i = start
    count = taken = 0  # characters waiting in `images`, and how many of them were taken
    while True:
        if taken < count:
            c = np.int64(images[taken])
            taken += 1
            q = props[c]
        else:
            if i >= end:
                break
            c = np.int64(data[i])
            if c < 0x80 and c != ROW_END:
                i += 1
            elif 0xC2 <= c < 0xF0 and i + 2 < end:
                # Two- and three-byte characters (most scripts) decoded here; the rest as `_k_decode_at` does.
                b1 = np.int64(data[i + 1])
                b2 = np.int64(data[i + 2])
                if c < 0xE0 and (b1 & 0xC0) == 0x80:
                    c = ((c & 0x1F) << 6) | (b1 & 0x3F)
                    i += 2
                else:
                    three = ((c & 0x0F) << 12) | ((b1 & 0x3F) << 6) | (b2 & 0x3F)
                    if (
                        c >= 0xE0
                        and (b1 & 0xC0) == 0x80
                        and (b2 & 0xC0) == 0x80
                        and three >= 0x800
                        and not 0xD800 <= three < 0xE000
                    ):
                        c = three
                        i += 3
                    else:
                        c, i = _k_decode_at(data, i, end)
            else:
                c, i = _k_decode_at(data, i, end)
            q = props[c]
            if (q & (_P_MAPPED | _P_LEET)) != 0:
                if hard_to_python and (q & _P_HARD) != 0:
                    return -1
                if (q & _P_LEET) != 0:
                    # A run of leet symbols (ASCII, never mapped): those within 8 places of a letter touching it
                    # read as letters; the letter after it is the first character of the next one's image.
                    j = i
                    while j < end and data[j] < 0x80 and (props[data[j]] & _P_LEET) != 0:
                        j += 1
                    count = j - (i - 1)
                    if count > len(images) or (q & _P_MAPPED) != 0:
                        return -1
                    left = (mapped & _P_ALPHA) != 0
                    right = False
                    if j < end:
                        after, _ = _k_decode_at(data, j, end)
                        r = props[after]
                        if (r & _P_MAPPED) != 0:
                            if (r & _P_HARD) != 0 or length[after] == 0:
                                return -1
                            r = props[single[after] if length[after] == 1 else flat[flat_start[after]]]
                            if (r & _P_LEET) != 0:
                                return -1  # the run goes on into that image
                        right = (r & _P_ALPHA) != 0
                    for k in range(count):
                        symbol = data[i - 1 + k]
                        if (props[symbol] & _P_MAPPED) != 0:
                            return -1
                        convert = (left and k < 8) or (right and count - 1 - k < 8)
                        images[k] = leet_target[symbol] if convert else symbol
                    i = j
                else:
                    count = length[c]
                    if count == 1:
                        images[0] = single[c]
                    else:
                        if count > len(images) or at + 4 * (count + end - i) + 8 > len(out):
                            return -1  # no room promised for a row that grows this much
                        first = flat_start[c]
                        for k in range(count):
                            images[k] = flat[first + k]
                    for k in range(count):
                        if (props[images[k]] & _P_LEET) != 0:
                            return -1
                taken = 0
                continue  # the image's characters, if any, come next
        mapped = q
        words = (words << 1) | (q & _P_WORD)
        if separators and (words & 31) == 0b01010:
            return -1
        if not spacing:
            if repeats and c == last and (q & _P_ALPHA) != 0:
                continue
            at = k_put_utf8(out, at, c)
            last = c
            continue
        if (q & _P_WORD) == 0:
            if seen_word:
                if not in_run:
                    in_run = True
                    run_whitespace = True
                    run_length = 0
                    before_run = previous
                run_whitespace = run_whitespace and (q & _P_SPACE) != 0
                run_length += 1
            continue
        if in_run:
            # One space for the run, none for up to 65 whitespace characters between two characters of
            # scripts written without spaces.
            in_run = False
            if not (run_whitespace and run_length <= 65 and (before_run & _P_UNSPACED) != 0 and (q & _P_UNSPACED) != 0):
                out[at] = _SPACE  # a space is no letter: never a repeat
                at += 1
                last = _SPACE
        seen_word = True
        previous = q
        if repeats and c == last and (q & _P_ALPHA) != 0:
            continue
        at = k_put_utf8(out, at, c)
        last = c
    if separators and ((words << 1) & 31) == 0b01010:  # the end of the row counts as a non-word character
        return -1
    return at


@_jit
def _k_mapped_length(data: np.ndarray, start: int, end: int, length: np.ndarray) -> int:
    """How many code points a row has after the per-character map (for a row too long for the usual bound)."""
    n = 0
    i = start
    while i < end:
        c, i = _k_decode_at(data, i, end)
        n += length[c]
    return n


@_jit
def _k_decode_row(data: np.ndarray, start: int, end: int, out: np.ndarray, at: int) -> int:
    """One row's code points at `out[at:]` (room for one per byte); the offset after them."""
    i = start
    while i < end:
        c, i = _k_decode_at(data, i, end)
        out[at] = c
        at += 1
    return at


@_jit
def _grown(buffer: np.ndarray, used: int, needed: int) -> np.ndarray:
    """`buffer`, or a larger copy of its first `used` items when it has room for fewer than `needed`. Called
    between rows, never inside a per-character loop: a buffer that may be replaced there keeps numba from
    holding its address in a register, which made the loop four times slower."""
    if needed <= len(buffer):
        return buffer
    larger = np.empty(max(needed, 2 * len(buffer)), dtype=buffer.dtype)
    for k in range(used):  # a loop: numba's slice assignment is far slower (see `_k_copy`)
        larger[k] = buffer[k]
    return larger


@_jit
def _k_normalize_rows(
    data: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    props: np.ndarray,
    single: np.ndarray,
    length: np.ndarray,
    flat_start: np.ndarray,
    flat: np.ndarray,
    longest_image: int,
    leet_target: np.ndarray,
    hard_to_python: bool,
    leetspeak: bool,
    separators: bool,
    spacing: bool,
    repeats: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every step after NFKC, fused, one row at a time from the Arrow UTF-8 buffer to the UTF-8 the matcher
    scans: decode and the per-character map, leetspeak, separators (and leetspeak again where they joined
    something: `w 0 r d` -> `w0rd` -> `word`), then spacing, repeats and the encoding. A row lives in two small
    buffers that stay in the cache, and leetspeak is skipped for a row without a leet symbol.

    Returns the UTF-8 (each row closed by a NUL), the offset of each row's NUL, and, when `hard_to_python`,
    the rows holding a character NFKC may combine with its neighbours with their code points (each closed by
    a NUL): those rows are left empty here, for Python's NFKC and a second call."""
    n_rows = len(starts)
    out = np.empty(len(data) + n_rows + 64, dtype=np.uint8)
    row_ends = np.empty(n_rows, dtype=np.int64)
    hard_rows = np.empty(n_rows if hard_to_python else 0, dtype=np.int64)
    hard_codes = np.empty(64, dtype=np.uint32)
    n_hard = n_hard_codes = 0
    a = np.empty(4096, dtype=np.uint32)
    b = np.empty(4096, dtype=np.uint32)
    images = np.empty(64, dtype=np.uint32)
    at = 0
    for row in range(n_rows):
        start, end = starts[row], ends[row]
        out = _grown(out, at, at + 4 * (end - start) + 64)
        streamed = _k_stream_row(
            data,
            start,
            end,
            props,
            single,
            length,
            flat_start,
            flat,
            leet_target,
            hard_to_python,
            separators,
            spacing,
            repeats,
            images,
            out,
            at,
        )
        if streamed >= 0:
            at = streamed
            out[at] = ROW_END
            row_ends[row] = at
            at += 1
            continue
        if (end - start) * longest_image > len(a):
            a = _grown(a, 0, _k_mapped_length(data, start, end, length))
        n, has_leet, may_join = _k_decode_map_row(
            data, start, end, props, single, length, flat_start, flat, hard_to_python, a
        )
        if n < 0:
            hard_codes = _grown(hard_codes, n_hard_codes, n_hard_codes + (end - start) + 1)
            n_hard_codes = _k_decode_row(data, start, end, hard_codes, n_hard_codes)
            hard_codes[n_hard_codes] = ROW_END
            n_hard_codes += 1
            hard_rows[n_hard] = row
            n_hard += 1
            n = 0  # an empty row here, filled in from the second call
        else:
            if leetspeak and has_leet:
                _k_leet_row(a, n, props, leet_target)
            if separators and may_join:
                b = _grown(b, 0, n)
                joined = _k_join_row(a, n, props, b)
                if joined != n:
                    a, b = b, a
                    n = joined
                    if leetspeak and has_leet:
                        _k_leet_row(a, n, props, leet_target)
        out = _grown(out, at, at + 4 * n + 1)
        at = _k_finish_row(a, n, props, spacing, repeats, out, at)
        out[at] = ROW_END
        row_ends[row] = at
        at += 1
    return out[:at], row_ends, hard_rows[:n_hard], hard_codes[:n_hard_codes]


@_jit
def _k_copy(source: np.ndarray, first: int, size: int, target: np.ndarray, at: int) -> int:
    """`source[first : first + size]` copied to `target[at:]`; the offset after it. A plain loop: numba's slice
    assignment copied ten times slower than this loop, which LLVM vectorises."""
    into, come_from = target[at : at + size], source[first : first + size]
    for k in range(size):  # indices LLVM can prove in bounds and not negative: no check per byte
        into[k] = come_from[k]
    return at + size


@_jit
def _k_splice_rows(
    data: np.ndarray, row_ends: np.ndarray, hard_data: np.ndarray, hard_ends: np.ndarray, hard_rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The batch's output with the rows of `hard_rows` (empty in `data`) taken from the second call's output."""
    out = np.empty(len(data) + len(hard_data) - len(hard_rows), dtype=np.uint8)
    ends = row_ends.copy()
    at = 0
    done = 0  # bytes of `data` copied
    for h in range(len(hard_rows)):
        row = hard_rows[h]
        # The rows before this one, as they are; then the row's own bytes (its NUL included).
        at = _k_copy(data, done, row_ends[row] - done, out, at)
        first = 0 if h == 0 else hard_ends[h - 1] + 1
        at = _k_copy(hard_data, first, hard_ends[h] + 1 - first, out, at)
        done = row_ends[row] + 1
        ends[row] = at - 1
        shift = at - done  # for the rows up to the next one taken from the second call
        for r in range(row + 1, hard_rows[h + 1] if h + 1 < len(hard_rows) else len(ends)):
            ends[r] += shift
    _k_copy(data, done, len(data) - done, out, at)
    return out, ends


def _normalize_compiled(values: pa.Array, steps: set[str]) -> NormalizedText:
    """The compiled path: one fused kernel over the Arrow buffer; rows holding a character that NFKC may combine
    with its neighbours (about 5 % of multilingual captions: Thai tone marks, combining accents) go through
    Python's normaliser, all of a batch's in one call, and then through the kernel again."""
    _compile_kernels()
    raw = _raw_rows(values)
    tables = kernel_tables(frozenset(steps))
    mapping = tables.mapping
    shared = (tables.props, mapping.single, mapping.length, mapping.flat_start, mapping.flat, tables.longest_image)
    flags = ("leetspeak" in steps, "separators" in steps, "spacing" in steps, "repeats" in steps)
    data, ends, hard_rows, hard_codes = _k_normalize_rows(
        raw.bytes_array, raw.byte_starts, raw.byte_ends, *shared, _LEET_TARGET, "nfkc" in steps, *flags
    )
    if len(hard_rows):
        # NUL never combines with a neighbour, so NFKC of the rows joined by NULs is each row's NFKC.
        text = unicodedata.normalize("NFKC", hard_codes.tobytes().decode("utf-32-le"))
        encoded = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        nul = np.flatnonzero(encoded == ROW_END)
        first = np.zeros(len(nul), dtype=np.int64)
        first[1:] = nul[:-1] + 1
        hard_data, hard_ends, _, _ = _k_normalize_rows(encoded, first, nul, *shared, _LEET_TARGET, False, *flags)
        data, ends = _k_splice_rows(data, ends, hard_data, hard_ends, hard_rows)
    starts = np.zeros(len(ends), dtype=np.int64)
    starts[1:] = ends[:-1] + 1
    return NormalizedText(memoryview(data), starts, ends)  # the matcher scans the kernel's buffer, no copy


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
        steps = set(self.steps)
        tables = char_tables()
        if COMPILED:
            return _normalize_compiled(values, steps)  # straight from the Arrow buffer, no Python string
        text = _joined(values)
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        if "nfkc" in steps:
            codes = _nfkc_rows_that_need_it(text, codes)
        if "invisible" in steps and len(codes) and int(codes.max()) >= _FIRST_INVISIBLE:
            codes = codes[~tables.invisible[codes]]
        if steps & {"casefold", "accents", "confusables"}:
            codes = char_map("casefold" in steps, "accents" in steps, "confusables" in steps).apply(codes)
        if "leetspeak" in steps:  # before spacing, which would blank `@` and `$`
            codes = _leetspeak(codes, tables.alpha)
        if "separators" in steps:
            joined = _join_single_characters(codes, tables)
            if "leetspeak" in steps and len(joined) != len(codes):
                joined = _leetspeak_where_joined(codes, joined, tables.alpha)  # `w 0 r d` -> `w0rd` -> `word`
            codes = joined
        if "spacing" in steps:
            codes = _spacing(codes, tables)
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
