"""Which columns of a metadata table carry the URL, caption, key and image hashes, and whether their types fit.

LAION ships three families of metadata with different casing (`URL`/`TEXT`, `url`/`caption`, ...);
we map them instead of assuming one. An explicitly requested column that is missing is refused
before any work, naming the columns that do exist.

Metadata found in the wild is not always typed the way its column names promise (a list of URLs, a struct
caption, a float key), and one such file must not end a run in a traceback. Every column the scan reads is
checked against the types its role accepts before anything is read from it; text is decoded as UTF-8 with a
fast check over the whole array, and only a batch that fails it is searched for the rows at fault.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from safeset.errors import ColumnError, SafesetError
from safeset.io.batch import HASH_ALGORITHMS

URL_CANDIDATES = ("url", "URL", "Url", "image_url")
CAPTION_CANDIDATES = ("caption", "TEXT", "text", "txt", "Caption")
#: A dataset's own row key, in order of preference: img2dataset's `key`, LAION's `SAMPLE_ID`, then common ids.
#: Keys that travel with the data make the removal list usable outside the exact file (`file:row` does not).
KEY_CANDIDATES = ("key", "SAMPLE_ID", "sample_id", "SampleID", "id", "ID", "uid", "image_id")
#: Metadata columns holding hex digests of the image bytes, by algorithm (matched case-insensitively):
#: img2dataset writes `md5`, `sha256` or `sha512` per its compute_hash option; other tools add a `hash` suffix.
HASH_COLUMN_CANDIDATES: dict[str, tuple[str, ...]] = {
    "md5": ("md5", "md5hash", "md5_hash", "image_md5", "md5sum"),
    "sha1": ("sha1", "sha1hash", "sha1_hash", "sha-1", "image_sha1", "sha1sum"),
    "sha256": ("sha256", "sha256hash", "sha256_hash", "sha-256", "image_sha256", "sha256sum"),
}
IMAGE_COLUMN_CANDIDATES = ("jpg", "jpeg", "png", "webp", "image")

#: Rows validated together when a batch holds invalid UTF-8: whole slices that pass are skipped in C, and only
#: the slices at fault are searched value by value.
UTF8_SEARCH_SLICE = 512


@dataclass(frozen=True)
class ColumnOptions:
    """Column names the user chose on the command line; None means detect."""

    url_col: str | None = None
    caption_col: str | None = None
    key_col: str | None = None
    # Further columns detectors read (score columns such as `punsafe`); each must exist.
    extra_cols: tuple[str, ...] = ()
    # (column, algorithm) pairs from `--hash-col NAME:KIND`: metadata hash columns named by the user; each must
    # exist, and takes the place of any detected column for its algorithm.
    hash_cols: tuple[tuple[str, str], ...] = ()


def parse_hash_col(spec: str) -> tuple[str, str]:
    """`NAME:KIND` (`sha256hash:sha256`) as (column, algorithm); a SafesetError says what is wrong."""
    column, sep, kind = spec.rpartition(":")
    kind = kind.strip().lower()
    if not sep or not column:
        raise SafesetError(f"--hash-col {spec!r}: expected NAME:KIND, e.g. sha256hash:sha256")
    if kind not in HASH_ALGORITHMS:
        raise SafesetError(f"--hash-col {spec!r}: unknown hash kind {kind!r}; choose from {', '.join(HASH_ALGORITHMS)}")
    return column, kind


@dataclass(frozen=True)
class ColumnMap:
    url: str | None
    caption: str | None
    key: str | None
    hashes: dict[str, str]  # algorithm -> column name
    image: str | None
    extra: tuple[str, ...] = ()
    #: How the key column was chosen: "option" (--key-col), "detected", or "none" (rows are keyed `file:row`).
    key_origin: str = "none"

    def key_description(self) -> str:
        """What the run summary says about row keys, e.g. `column 'SAMPLE_ID' (detected)` or `file:row`."""
        if self.key is None:
            return "file:row (no key column found)"
        return f"column {self.key!r} ({'--key-col' if self.key_origin == 'option' else 'detected'})"

    def needed(self) -> list[str]:
        cols = [c for c in (self.url, self.caption, self.key, self.image) if c]
        cols.extend(self.hashes.values())
        cols.extend(self.extra)
        return list(dict.fromkeys(cols))

    def roles(self) -> list[tuple[str, str]]:
        """(column, role) for every column whose type the scan relies on; extra columns are the detectors'."""
        pairs = [(self.url, "url"), (self.caption, "caption"), (self.key, "key"), (self.image, "image")]
        pairs += [(column, f"{algorithm} hash") for algorithm, column in self.hashes.items()]
        return [(column, role) for column, role in pairs if column]


class ColumnTypeError(ColumnError):
    """A column the scan reads has a type its role cannot use (a list of URLs, a struct caption, a float key).

    Refused before any work when found in the first readable shard; a later shard with the problem fails alone.
    """

    def __init__(self, path: str | Path, column: str, column_type: pa.DataType, role: str) -> None:
        self.path, self.column, self.column_type, self.role = str(path), column, column_type, role
        self.detail = f"column {column!r} has type {column_type}; {ROLE_EXPECTS[_role_family(role)]}"
        SafesetError.__init__(self, f"{path}: {self.detail}")


class DuplicateColumnError(ColumnError):
    """Two columns share the name the scan would read, so which one holds the values is ambiguous."""

    def __init__(self, path: str | Path, column: str, count: int) -> None:
        self.detail = f"column {column!r} appears {count} times; cannot tell which to read"
        SafesetError.__init__(self, f"{path}: {self.detail}")


def _pick(names: list[str], requested: str | None, candidates: tuple[str, ...], path: str) -> str | None:
    if requested is not None:
        if requested not in names:
            raise ColumnError(path, requested, names)
        return requested
    for candidate in candidates:
        if candidate in names:
            return candidate
    return None


def resolve_columns(names: list[str], options: ColumnOptions, path: str, binary_columns: set[str]) -> ColumnMap:
    """Map a table's column names to roles, refusing explicitly requested columns that are absent."""
    image = next((c for c in IMAGE_COLUMN_CANDIDATES if c in names and c in binary_columns), None)
    for column in (*options.extra_cols, *(column for column, _ in options.hash_cols)):
        if column not in names:
            raise ColumnError(path, column, names)
    key = _pick(names, options.key_col, KEY_CANDIDATES, path)
    key_origin = "none" if key is None else "option" if options.key_col is not None else "detected"
    return ColumnMap(
        url=_pick(names, options.url_col, URL_CANDIDATES, path),
        caption=_pick(names, options.caption_col, CAPTION_CANDIDATES, path),
        key=key,
        hashes=detect_hash_columns(names, options.hash_cols, exclude={image} if image else set()),
        image=image,
        extra=tuple(options.extra_cols),
        key_origin=key_origin,
    )


def detect_hash_columns(
    names: list[str], chosen: tuple[tuple[str, str], ...] = (), exclude: set[str] | None = None
) -> dict[str, str]:
    """algorithm -> metadata column holding its hex digests: the user's `--hash-col` choices, and for the other
    algorithms the first column whose name (any case) is a known name for it (`md5`, `sha256hash`, ...)."""
    hashes = {algorithm: column for column, algorithm in chosen}
    taken = set(hashes.values()) | (exclude or set())
    lower: dict[str, str] = {}
    for name in names:
        lower.setdefault(name.lower(), name)  # the first of names equal but for case
    for algorithm in HASH_ALGORITHMS:
        if algorithm in hashes:
            continue
        found = next((lower[c] for c in HASH_COLUMN_CANDIDATES.get(algorithm, (algorithm,)) if c in lower), None)
        if found is not None and found not in taken:
            hashes[algorithm] = found
            taken.add(found)
    return {algorithm: hashes[algorithm] for algorithm in HASH_ALGORITHMS if algorithm in hashes}


# --------------------------------------------------------------------------------------------------------------
# column types


def _is_text_type(t: pa.DataType) -> bool:
    return (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_string_view(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_null(t)  # a column of nulls holds no values: nothing to match, nothing wrong
    )


def _is_bytes_type(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_null(t)


ROLE_ACCEPTS: dict[str, Callable[[pa.DataType], bool]] = {
    "text": _is_text_type,
    "key": lambda t: _is_text_type(t) or pa.types.is_integer(t),  # integer keys (LAION's `hash`) become strings
    "image": _is_bytes_type,
}
ROLE_EXPECTS = {
    "text": "expected string or binary (UTF-8 text)",
    "key": "expected string, binary or integer",
    "image": "expected binary (image bytes)",
}


def _role_family(role: str) -> str:
    return role if role in ("key", "image") else "text"


def _value_type(t: pa.DataType) -> pa.DataType:
    """Dictionary-encoded columns (pandas categoricals written to parquet) are judged by their values."""
    return t.value_type if pa.types.is_dictionary(t) else t


def check_column_types(
    schema: pa.Schema, cmap: ColumnMap, path: str | Path, unread_roles: tuple[str, ...] = ()
) -> None:
    """Raise ColumnTypeError (or DuplicateColumnError) for the first column the scan reads that it cannot use.

    Roles in `unread_roles` (the caption, when no matcher reads captions) are not read, so not judged.
    """
    for column, role in cmap.roles():
        if role in unread_roles:
            continue
        count = schema.get_all_field_indices(column)
        if len(count) > 1:
            raise DuplicateColumnError(path, column, len(count))
        column_type = schema.field(column).type
        if not ROLE_ACCEPTS[_role_family(role)](_value_type(column_type)):
            raise ColumnTypeError(path, column, column_type, role)


# --------------------------------------------------------------------------------------------------------------
# text columns


def _raw_bytes(array: pa.Array) -> pa.Array:
    """The values as binary or large_binary, without validating them (a zero-copy view where possible)."""
    t = array.type
    if pa.types.is_string(t):
        return array.view(pa.binary())
    if pa.types.is_large_string(t):
        return array.view(pa.large_binary())
    if pa.types.is_string_view(t):
        return array.view(pa.binary_view()).cast(pa.large_binary())
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return array
    raise TypeError(f"not a text type: {t}")


def _is_utf8(value: bytes | None) -> bool:
    if value is None:
        return True
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _invalid_utf8_rows(raw: pa.Array, target: pa.DataType) -> np.ndarray:
    """Mask of the values that are not UTF-8: slices validated in C, values looked at only in failing slices."""
    bad = np.zeros(len(raw), dtype=bool)
    for lo in range(0, len(raw), UTF8_SEARCH_SLICE):
        part = raw.slice(lo, UTF8_SEARCH_SLICE)
        try:
            pc.cast(part, target)
            continue
        except pa.ArrowInvalid:
            pass
        values = part.to_pylist()  # bytes: no decoding yet
        bad[lo : lo + len(values)] = [not _is_utf8(v) for v in values]
    return bad


def text_column(
    array: pa.Array | pa.ChunkedArray, *, escape_invalid: bool = False
) -> tuple[pa.Array, np.ndarray | None]:
    """A key, URL, caption or hash column as a `string` array, and the mask of rows whose value was not UTF-8.

    Accepts string, large_string, string_view, binary, large_binary, null, integers (cast to decimal strings) and
    dictionaries of these. The mask is None when every value is valid: the common case costs one validating cast
    in C. Invalid values become null, so no matcher sees them, or with `escape_invalid` (keys, which must still
    name their row) their bytes with the invalid sequences written as `\\xNN`. Raises pa.ArrowInvalid (capacity)
    only if one batch's values exceed the 2 GiB a `string` array can hold.
    """
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    t = array.type
    if pa.types.is_null(t):
        return pa.nulls(len(array), pa.string()), None
    if pa.types.is_integer(t):
        return pc.cast(array, pa.string()), None
    raw = _raw_bytes(array)
    target = pa.string()
    try:
        return pc.cast(raw, target), None
    except pa.ArrowInvalid:
        pass
    bad = _invalid_utf8_rows(raw, target)
    if not bad.any():  # the cast failed for another reason than UTF-8: let it say so
        pc.cast(raw, target)
    if escape_invalid:
        values = raw.to_pylist()
        escaped = [v.decode("utf-8", "backslashreplace") if v is not None else None for v in values]
        return pa.array(escaped, type=target), bad
    cleaned = pc.if_else(pa.array(bad), pa.scalar(None, raw.type), raw)
    return pc.cast(cleaned, target), bad
