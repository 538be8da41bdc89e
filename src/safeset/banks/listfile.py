"""Reading list files for bank import: one reader, one header rule and one error policy for every kind.

Lists arrive as plain text (one entry per line), CSV or TSV exports with or without a header, `hash,quality`
rows from hash-sharing programmes, and `safeset hash` output, written by many tools: with a byte-order mark,
Windows or old-Mac line ends, comments, and now and then a line in another encoding. Every kind reads its file
here, so that all kinds treat the same file the same way:

- the file is split into lines on LF, CRLF or CR (a leading BOM is dropped); blank lines and `#` comment lines
  are skipped; every value keeps its 1-based source line number;
- each line is decoded on its own: a line that is not UTF-8 is an invalid line like any other, named by its
  number (or skipped and counted under --skip-invalid), instead of failing the whole file without a line;
- one header rule: the first line is a header only when it is not a valid entry for the kind and it names a
  column (a known name such as `hash` or `url`, or the --column given). Otherwise it is data, and a malformed
  first line is reported like any other, never silently dropped as a "header";
- delimited files are read row by row with the `csv` module, and each row's cells are taken together, so a
  blank cell can never shift one column against another; a row without the entry cell is an invalid line;
- `safeset hash` output (`path, md5, pdq, quality[, 8 dihedral hashes]`, tab-separated, no header) is
  recognised by its shape, for the kinds that take one of its fields;
- every invalid line is collected with its reason, once, and the list is refused naming them (the error's line
  is the first line with the most basic problem), or, with --skip-invalid, they are counted and left out.

Line splitting, decoding and trimming are vectorised (numpy and Arrow over the whole file); only the lines of a
delimited file go through Python, as the `csv` module needs.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from safeset.errors import InputError

BOM = b"\xef\xbb\xbf"
#: Delimiters a header line is split on, in order of preference when counts tie.
DELIMITERS = ("\t", ",", ";", "|")
#: Never in a header: a one-column file is read with it, so commas inside values stay in the value.
ONE_COLUMN = "\x1f"
#: Column names lists are known to use; a first line that is not an entry is a header only if it names one.
KNOWN_COLUMNS = frozenset(
    {
        "url", "urls", "link", "uri", "hash", "hashes", "md5", "sha1", "sha256", "sha-1", "sha-256", "url_md5",
        "url_hash", "md5_hash", "pdq", "pdq_hash", "signal", "signal_type", "signal_value", "indicator",
        "indicator_type", "value", "domain", "domains", "host", "hostname", "prefix", "url_prefix", "term",
        "terms", "phrase", "keyword", "word", "quality", "pdq_quality", "signal_quality", "lang", "language",
        "weight", "id", "path", "file", "filename", "note", "notes", "comment", "source", "tags", "label",
    }
)  # fmt: skip
#: `safeset hash` output: path, md5, pdq, quality, then optionally the 8 dihedral PDQ hashes (see cli `hash`).
SAFESET_HASH_LINE = (
    r"^(?P<path>.+)\t(?P<md5>[0-9A-Fa-f]{32})\t(?P<pdq>[0-9A-Fa-f]{64})\t(?P<quality>\d{1,3})"
    r"(?:(?:\t[0-9A-Fa-f]{64}){8})?$"
)
SAFESET_HASH_SAMPLE = 50  # lines looked at to recognise the shape
SHOWN_INVALID = 5  # invalid lines named in an error message
SHOWN_CHARS = 80  # characters of an invalid value shown


@dataclass(frozen=True)
class SplitLines:
    """Headerless lines of a several-field layout, split: the entry of each line, its other fields by role (null
    where absent), and which lines have no usable entry at all (with the reason)."""

    entries: pa.Array
    fields: dict[str, pa.Array]
    unusable: np.ndarray | None = None
    reason: str = ""


@dataclass(frozen=True)
class ListFormat:
    """What a kind reads from a list file.

    entry_columns: header names of the column holding the entry, most specific first (without --column, the
        first header field with one of these names is the entry column);
    optional_columns: other columns a kind uses, by role (`quality`, `lang`, `weight`), each with its names;
    split_line: how a headerless line with several fields is split (PDQ `hash,quality`, term `term<TAB>lang`);
        None: the whole line is the entry;
    safeset_hash_field: the field of `safeset hash` output this kind imports (`md5` or `pdq`), if any.
    """

    entry_columns: tuple[str, ...] = ("value",)
    optional_columns: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    split_line: Callable[[pa.Array], SplitLines] | None = None
    safeset_hash_field: str | None = None


@dataclass(frozen=True)
class Header:
    line: int
    text: str
    fields: tuple[str, ...]
    delimiter: str

    def index(self, names: tuple[str, ...]) -> int | None:
        """Position of the first field named one of `names` (case-insensitive), preferring earlier names."""
        lowered = [f.lower() for f in self.fields]
        for name in names:
            if name.lower() in lowered:
                return lowered.index(name.lower())
        return None


@dataclass
class ListValues:
    """Entries read from a list file, each with its 1-based source line, and the lines that gave no entry."""

    values: pa.Array  # string: the entry of each row, trimmed
    lines: np.ndarray  # int64: 1-based source line of each row
    fields: dict[str, pa.Array] = field(default_factory=dict)  # other cells by role, null where absent
    unreadable: dict[int, str] = field(default_factory=dict)  # line -> reason, for lines without an entry
    path: Path | None = None
    header: Header | None = None
    shape: str = "lines"  # lines | fields | csv | safeset-hash

    def field_values(self, role: str) -> pa.Array | None:
        return self.fields.get(role)

    def details(self) -> dict[str, Any]:
        """What the import summary records about how the file was read."""
        header = None
        if self.header is not None:
            header = {"line": self.header.line, "text": _shorten(self.header.text, 200)}
        return {"list_shape": self.shape, "header": header}


class InvalidLines:
    """The invalid lines of one list: the reader's (undecodable lines, rows without the entry cell) and those a
    kind's checks mark, each counted once, with the first reason found. `settle` refuses the list naming the
    first invalid line, or, when the user chose to skip, returns how many lines are left out."""

    def __init__(self, listing: ListValues) -> None:
        self.listing = listing
        self.mask = np.zeros(len(listing.values), dtype=bool)
        self._reason_of = np.full(len(listing.values), -1, dtype=np.int32)
        self._reasons: list[str] = []
        #: What a kind's checks computed (digests, normalised forms), reused by its import.
        self.derived: dict[str, Any] = {}

    def add(self, bad: np.ndarray | pa.Array, reason: str) -> None:
        if isinstance(bad, pa.Array | pa.ChunkedArray):
            bad = pc.fill_null(bad, True).to_numpy(zero_copy_only=False)
        new = np.asarray(bad, dtype=bool) & ~self.mask
        if new.any():
            self._reasons.append(reason)
            self._reason_of[new] = len(self._reasons) - 1
            self.mask |= new

    @property
    def good(self) -> np.ndarray:
        return ~self.mask

    @property
    def count(self) -> int:
        return int(self.mask.sum()) + len(self.listing.unreadable)

    def settle(self, skip_invalid: bool) -> int:
        if self.count and not skip_invalid:
            raise self.error()
        return self.count

    def first_lines(self, limit: int = SHOWN_INVALID) -> list[tuple[int, str, str | None]]:
        """(line, reason, value or None) of the first invalid lines, in line order."""
        rows = np.flatnonzero(self.mask)[:limit]
        found: list[tuple[int, str, str | None]] = [
            (int(self.listing.lines[i]), self._reasons[self._reason_of[i]], self.listing.values[int(i)].as_py())
            for i in rows
        ]
        found += [(line, reason, None) for line, reason in sorted(self.listing.unreadable.items())[:limit]]
        return sorted(found, key=lambda item: item[0])[:limit]

    def _leading(self) -> tuple[int, str, str | None]:
        """The line the error names: the first unreadable line, else the first line failing the earliest check
        (checks run from the most basic, "not a hash", to policy, "quality over 100")."""
        if self.listing.unreadable:
            line = min(self.listing.unreadable)
            return line, self.listing.unreadable[line], None
        reason = int(self._reason_of[self.mask].min())
        row = int(np.flatnonzero(self._reason_of == reason)[0])
        return int(self.listing.lines[row]), self._reasons[reason], self.listing.values[row].as_py()

    def error(self) -> InputError:
        line, reason, value = self._leading()
        message = reason + (f": {_shorten(value, SHOWN_CHARS)!r}" if value is not None else "")
        if self.count > 1:
            shown = self.first_lines()
            listed = ", ".join(f"line {n}" + ("" if r == reason else f" ({r})") for n, r, _ in shown)
            more = ", ..." if self.count > len(shown) else ""
            message += f" ({self.count} invalid lines: {listed}{more})"
        message += "; fix the list or pass --skip-invalid"
        return InputError(message, self.listing.path, line)


# --------------------------------------------------------------------------------------------------------------
# Lines


@dataclass
class _Lines:
    """Kept (non-blank, non-comment, decodable) lines, trimmed, with their numbers, and the undecodable ones."""

    text: pa.Array
    lines: np.ndarray
    undecodable: list[int]


def _line_offsets(buf: np.ndarray) -> np.ndarray:
    """Start offsets of every line plus the end: breaks at LF, at CRLF (one break) and at a lone CR."""
    ends = np.flatnonzero(buf == 0x0A)
    cr = np.flatnonzero(buf == 0x0D)
    if len(cr):
        after = np.minimum(cr + 1, len(buf) - 1)
        lone = cr[(cr + 1 >= len(buf)) | (buf[after] != 0x0A)]
        ends = np.union1d(ends, lone)
    ends = ends.astype(np.int64) + 1
    if len(buf) and (not len(ends) or ends[-1] != len(buf)):
        ends = np.append(ends, len(buf))
    return np.concatenate([np.zeros(1, dtype=np.int64), ends])


def _undecodable_lines(data: memoryview, offsets: np.ndarray) -> list[int]:
    """Indices of the lines holding bytes that are not UTF-8. Each decode stops at the first bad byte and the
    next resumes at the following line, so the file is decoded once in all, however many lines are bad."""
    bad: list[int] = []
    pos = 0
    while pos < len(data):
        try:
            codecs.utf_8_decode(data[pos:], "strict", True)
            break
        except UnicodeDecodeError as exc:
            line = int(np.searchsorted(offsets, pos + exc.start, side="right")) - 1
            bad.append(line)
            pos = int(offsets[line + 1])
    return bad


def read_lines(path: Path) -> _Lines:
    """Split, decode and trim the lines of a list file; blank lines and `#` comments are left out."""
    if not path.is_file():
        raise InputError("list file not found", path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read list: {exc.strerror or exc}", path) from exc
    data = memoryview(raw)[len(BOM) :] if raw.startswith(BOM) else memoryview(raw)
    buf = np.frombuffer(data, dtype=np.uint8)
    offsets = _line_offsets(buf)
    n = len(offsets) - 1
    large = len(buf) >= 2**31 - 1
    binary = pa.Array.from_buffers(
        pa.large_binary() if large else pa.binary(),
        n,
        [None, pa.py_buffer(offsets if large else offsets.astype(np.int32)), pa.py_buffer(data)],
    )
    numbers = np.arange(1, n + 1, dtype=np.int64)
    undecodable: list[int] = []
    try:
        text = binary.cast(pa.large_string() if large else pa.string())
    except pa.ArrowInvalid:
        bad = _undecodable_lines(data, offsets)
        # A comment is skipped whatever its encoding (a Latin-1 remark must not refuse a list).
        undecodable = [i + 1 for i in bad if not bytes(data[offsets[i] : offsets[i + 1]]).lstrip().startswith(b"#")]
        readable = np.ones(n, dtype=bool)
        readable[bad] = False
        try:
            text = binary.filter(pa.array(readable)).cast(pa.large_string() if large else pa.string())
        except pa.ArrowInvalid as exc:  # Arrow stricter than Python's decoder: refuse the file, never crash
            raise InputError(f"not valid UTF-8: {exc}", path) from exc
        numbers = numbers[readable]
    text = pc.utf8_trim_whitespace(text)
    keep = pc.and_(pc.not_equal(text, ""), pc.invert(pc.starts_with(text, "#")))
    keep_np = np.asarray(keep.to_numpy(zero_copy_only=False), dtype=bool)
    text = text.filter(keep)
    if large:
        try:
            text = text.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowCapacityError) as exc:
            raise InputError("list entries exceed 2 GiB of text; split the list into several banks", path) from exc
    return _Lines(text, numbers[keep_np], undecodable)


# --------------------------------------------------------------------------------------------------------------
# Header and layouts


def header_fields(text: str) -> tuple[tuple[str, ...], str]:
    """Fields of a candidate header line and its delimiter: the candidate that occurs most (tab first on ties)."""
    counts = [text.count(d) for d in DELIMITERS]
    best = int(np.argmax(counts))
    delimiter = DELIMITERS[best] if counts[best] else ONE_COLUMN
    try:
        fields = next(csv.reader([text], delimiter=delimiter), [])
    except csv.Error:
        fields = text.split(delimiter)
    return tuple(f.strip() for f in fields), delimiter


def _names_a_column(fields: tuple[str, ...]) -> bool:
    return any(f.lower() in KNOWN_COLUMNS for f in fields)


def _headerless(text: pa.Array, lines: np.ndarray, fmt: ListFormat, path: Path) -> ListValues:
    if fmt.split_line is None:
        return ListValues(text, lines, path=path, shape="lines")
    split = fmt.split_line(text)
    unreadable: dict[int, str] = {}
    entries, fields = split.entries, split.fields
    if split.unusable is not None and split.unusable.any():
        unreadable = dict.fromkeys(lines[split.unusable].tolist(), split.reason)
        usable = pa.array(~split.unusable)
        entries = entries.filter(usable)
        fields = {role: values.filter(usable) for role, values in fields.items()}
        lines = lines[~split.unusable]
    return ListValues(entries, lines, fields, unreadable, path, shape="fields")


def _csv_line(text: str, delimiter: str) -> list[str] | None:
    try:
        return next(csv.reader((text,), delimiter=delimiter, strict=True), [])
    except csv.Error:
        return None


def _csv_rows(texts: list[str], delimiter: str) -> tuple[list[list[str]], list[int], list[int]]:
    """Rows parsed by the `csv` module, the index (into `texts`) of each row's line, and the indices of lines
    that are no CSV row. A list is line-oriented: a quote left open must not swallow the lines after it into
    one field (entries lost without a word), so a row the module reads across several lines is parsed again
    line by line, and the line with the open quote is refused."""
    reader = csv.reader(texts, delimiter=delimiter, strict=True)
    rows: list[list[str]] = []
    starts: list[int] = []
    failed: list[int] = []
    while True:
        start = reader.line_num  # lines pulled so far: the index of this row's first line
        try:
            row: list[str] | None = next(reader)
        except StopIteration:
            return rows, starts, failed
        except csv.Error:
            row = None
        if row is not None and reader.line_num == start + 1:
            rows.append(row)
            starts.append(start)
            continue
        for index in range(start, max(reader.line_num, start + 1)):
            alone = _csv_line(texts[index], delimiter)
            if alone is None:
                failed.append(index)
            else:
                rows.append(alone)
                starts.append(index)


def _cells(rows: list[list[str]], index: int) -> pa.Array:
    """Column `index` of every row, trimmed; null where the row is too short or the cell blank."""
    cells = pa.array([row[index] if index < len(row) else "" for row in rows], type=pa.string())
    cells = pc.utf8_trim_whitespace(cells)
    return pc.if_else(pc.equal(cells, ""), pa.scalar(None, pa.string()), cells)


def _delimited(
    text: pa.Array, lines: np.ndarray, header: Header, entry: int, fmt: ListFormat, path: Path
) -> ListValues:
    """Rows after the header, each row's cells taken together; a row without the entry cell is unreadable."""
    rows, starts, failed = _csv_rows(text.to_pylist(), header.delimiter)
    row_lines = lines[np.asarray(starts, dtype=np.int64)] if starts else np.zeros(0, dtype=np.int64)
    failed_lines = lines[np.asarray(failed, dtype=np.int64)].tolist()
    unreadable = dict.fromkeys(failed_lines, "not a CSV row (an unbalanced quote?)")
    entries = _cells(rows, entry)
    present = np.asarray(entries.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    unreadable.update(dict.fromkeys(row_lines[~present].tolist(), f"no value in column {header.fields[entry]!r}"))
    keep = pa.array(present)
    fields = {}
    for role, names in fmt.optional_columns.items():
        index = header.index(names)
        if index is not None and index != entry:
            fields[role] = _cells(rows, index).filter(keep)
    return ListValues(entries.filter(keep), row_lines[present], fields, unreadable, path, header, "csv")


def _safeset_hash(text: pa.Array, lines: np.ndarray, fmt: ListFormat, path: Path) -> ListValues:
    parts = pc.extract_regex(text, SAFESET_HASH_LINE)
    matched = np.asarray(parts.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    keep = pa.array(matched)
    reason = "not a `safeset hash` line (path, md5, pdq, quality)"
    fields = {"quality": pc.struct_field(parts, "quality").filter(keep)}
    return ListValues(
        pc.struct_field(parts, fmt.safeset_hash_field).filter(keep),  # type: ignore[arg-type]
        lines[matched],
        fields,
        dict.fromkeys(lines[~matched].tolist(), reason),
        path,
        shape="safeset-hash",
    )


def _looks_like_safeset_hash(text: pa.Array) -> bool:
    sample = text.slice(0, SAFESET_HASH_SAMPLE)
    if not len(sample):
        return False
    matched = pc.sum(pc.match_substring_regex(sample, SAFESET_HASH_LINE)).as_py() or 0
    return matched * 2 >= len(sample)


def read_list(
    path: Path,
    fmt: ListFormat | None = None,
    column: str | None = None,
    valid_rows: Callable[[ListValues], np.ndarray] | None = None,
) -> ListValues:
    """Read a list file for a kind described by `fmt`, whose checks `valid_rows` says which rows are entries.

    With `column`, the file is delimited and its first line is a header holding that column. Without, the
    file's shape decides: `safeset hash` output, a delimited file whose first line is a header (not an entry,
    and names a column), or headerless lines.
    """
    fmt = fmt or ListFormat()
    read = read_lines(path)
    undecodable = dict.fromkeys(read.undecodable, "not valid UTF-8")
    # Only the very first non-comment line may be a header: not one after an undecodable line.
    first_is_first = bool(len(read.lines)) and (not read.undecodable or int(read.lines[0]) < read.undecodable[0])
    listing: ListValues
    if column is not None:
        if not first_is_first:
            where = read.undecodable[0] if read.undecodable else None
            raise InputError(f"no header line naming column {column!r}", path, where)
        fields, delimiter = header_fields(read.text[0].as_py())
        header = Header(int(read.lines[0]), read.text[0].as_py(), fields, delimiter)
        entry = fields.index(column) if column in fields else header.index((column,))
        if entry is None:
            raise InputError(f"column {column!r} not in CSV header ({', '.join(fields)})", path, header.line)
        listing = _delimited(read.text[1:], read.lines[1:], header, entry, fmt, path)
    elif fmt.safeset_hash_field and _looks_like_safeset_hash(read.text):
        listing = _safeset_hash(read.text, read.lines, fmt, path)
    else:
        header = None
        if first_is_first:
            first = _headerless(read.text[:1], read.lines[:1], fmt, path)
            is_entry = bool(len(first.values)) and (valid_rows is None or bool(valid_rows(first)[0]))
            if not is_entry:
                fields, delimiter = header_fields(read.text[0].as_py())
                if _names_a_column(fields):
                    header = Header(int(read.lines[0]), read.text[0].as_py(), fields, delimiter)
        if header is None:
            listing = _headerless(read.text, read.lines, fmt, path)
        else:
            entry = header.index(fmt.entry_columns)
            if entry is None and len(header.fields) == 1:
                entry = 0
            if entry is None:
                raise InputError(
                    f"header ({', '.join(header.fields)}) names no column of entries for this kind"
                    f" ({', '.join(fmt.entry_columns)}); choose one with --column",
                    path,
                    header.line,
                )
            listing = _delimited(read.text[1:], read.lines[1:], header, entry, fmt, path)
    listing.unreadable.update(undecodable)
    return listing


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
