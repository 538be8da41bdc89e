"""Compiled (numba) URL normal forms and URL digests, straight over an Arrow string array's buffers.

A metadata scan puts every row's URL in two normal forms and hashes both; at a million rows a second that is
about 1 µs a row for everything, which numpy passes over the buffers (ten or more per form) and a hashlib call
per URL cannot reach. Here each form is one compiled pass over the offsets and data bytes (zero-copy from
`pa.Array.buffers()`), writing the new offsets and bytes directly. The kernels cover what web datasets hold
almost entirely -- http(s) URLs with ASCII hosts, any path (non-ASCII paths included), queries, escapes,
ports, fragments -- and flag every row they do not handle exactly (IDNA hosts, userinfo, control characters,
dot segments, odd scheme shapes, ...); those rows take the scalar reference in `urls.py`, which stays the
oracle the kernels are tested against, and are counted in `STATS`.

MD5 is computed here too, one compiled loop over all rows (MD5 is what hotline URL lists hold; xxhash is not an
option). For SHA-1 and SHA-256 the rows are fed to `hashlib` from one `bytes` object with no per-row Arrow or
numpy work, which measured faster than anything a pure numba SHA would be worth maintaining for such rare banks.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa

from safeset.signals.utf8 import k_put_utf8

_FALLBACK = np.uint32(0xFFFFFFFF)  # in the lower-case table: a character whose lower case needs the scalar path
_LOWER_TABLE_SIZE = 0x1F000  # no cased character lies above U+1E943 (Adlam)


@dataclass
class FallbackStats:
    """Rows each compiled form handled, and rows its first pass flagged: sent to the scalar reference, or (te's
    non-ASCII hosts) to a second kernel pass after a per-host check (for benchmarks and logs)."""

    rows: dict[str, int] = field(default_factory=dict)
    fallback: dict[str, int] = field(default_factory=dict)

    def add(self, form: str, rows: int, fallback: int) -> None:
        self.rows[form] = self.rows.get(form, 0) + rows
        self.fallback[form] = self.fallback.get(form, 0) + fallback

    def reset(self) -> None:
        self.rows.clear()
        self.fallback.clear()

    def __str__(self) -> str:
        parts = [
            f"{form}: {self.fallback.get(form, 0):,} of {rows:,} rows ({100 * self.fallback.get(form, 0) / rows:.2f} %)"
            for form, rows in self.rows.items()
            if rows
        ]
        return "; ".join(parts) or "no rows"


STATS = FallbackStats()


@dataclass(frozen=True)
class StringBuffers:
    """An Arrow string array as numpy views: row i is data[offsets[i]:offsets[i + 1]] where valid[i]."""

    array: pa.Array  # offset 0 (sliced arrays are copied once)
    offsets: np.ndarray  # int64, rows + 1, starting at 0
    data: np.ndarray  # uint8
    valid: np.ndarray  # bool


def string_buffers(array: pa.Array) -> StringBuffers:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        array = array.cast(pa.string())
    if array.offset:
        array = pa.concat_arrays([array])
    n = len(array)
    buffers = array.buffers()
    width = np.int64 if pa.types.is_large_string(array.type) else np.int32
    if n == 0 or buffers[1] is None:
        offsets = np.zeros(n + 1, dtype=np.int64)
    else:
        offsets = np.frombuffer(buffers[1], dtype=width)[: n + 1].astype(np.int64)
    base, end = int(offsets[0]), int(offsets[-1])
    data = np.frombuffer(buffers[2], dtype=np.uint8)[base:end] if buffers[2] is not None and end > base else None
    offsets -= base
    if array.null_count:
        valid = np.asarray(array.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    else:
        valid = np.ones(n, dtype=bool)
    return StringBuffers(array, offsets, data if data is not None else np.zeros(0, dtype=np.uint8), valid)


def _to_arrow(source: StringBuffers, offsets: np.ndarray, data: np.ndarray) -> pa.Array:
    """A string array with `source`'s nulls and type, holding these contents."""
    large = pa.types.is_large_string(source.array.type)
    return pa.Array.from_buffers(
        pa.large_string() if large else pa.string(),
        len(source.array),
        [
            source.array.buffers()[0] if source.array.null_count else None,
            pa.py_buffer(offsets.astype(np.int64 if large else np.int32)),
            pa.py_buffer(data),
        ],
        null_count=source.array.null_count,
    )


@cache
def python_lower_table() -> np.ndarray:
    """Per code point, what Python's `str.lower` makes of it when it is one character; `_FALLBACK` where it is
    not (U+0130 `İ` becomes `i` + U+0307) or depends on context (U+03A3 `Σ`: final sigma)."""
    codes = np.arange(_LOWER_TABLE_SIZE, dtype=np.uint32)
    codes[0xD800:0xE000] = 0x20  # surrogates: not in UTF-8 text
    text = codes.tobytes().decode("utf-32-le")
    table = codes.copy()
    for i, char in enumerate(text):
        lowered = char.lower()
        if lowered != char:
            table[i] = ord(lowered) if len(lowered) == 1 else _FALLBACK
    table[0x3A3] = _FALLBACK
    return table


# --------------------------------------------------------------------------------------------------------------
# kernels (plain Python here; compiled with numba on first use, as in `text.py`)

_KERNELS: list[str] = []


def _jit(function: Any) -> Any:
    _KERNELS.append(function.__name__)
    return function


@cache
def _compile_kernels() -> None:
    import numba

    compile_kernel = numba.njit(cache=True, nogil=True)
    for name in _KERNELS:  # module globals, so that kernels calling kernels find the compiled ones
        globals()[name] = compile_kernel(globals()[name])


@_jit
def _k_http_prefix(data: np.ndarray, start: int, end: int) -> int:
    """Length of a leading `http:` or `https:` (any case), else 0."""
    n = end - start
    if n < 5:
        return 0
    if (data[start] | 0x20) != 104 or (data[start + 1] | 0x20) != 116 or (data[start + 2] | 0x20) != 116:
        return 0
    if (data[start + 3] | 0x20) != 112:
        return 0
    if data[start + 4] == 58:  # ':'
        return 5
    if n >= 6 and (data[start + 4] | 0x20) == 115 and data[start + 5] == 58:
        return 6
    return 0


_jit(k_put_utf8)  # shared with the other kernel module; compiled with this module's kernels


@_jit
def _k_te(
    data: np.ndarray,
    offsets: np.ndarray,
    valid: np.ndarray,
    lower: np.ndarray,
    plain: np.ndarray,
    ascii_lower: np.ndarray,
    unicode_host: bool,
) -> tuple:
    """ThreatExchange form (see `ThreatExchangeUrl`): Python's lower case, then `http://` / `https://` dropped.
    Rows where urllib's parse-and-rebuild would change more than that are flagged for the scalar path: a byte
    below 0x21, `[` or `]`; an empty query, fragment or `;params` (dropped: a trailing `?` or `;`, `;?`, `;#`,
    `?#`, a trailing `#`); a `:` without an http(s) scheme; an empty host; a non-ASCII host (urllib's NFKC
    check); a character whose lower case is not one character or depends on context; bytes that are not UTF-8."""
    n = len(valid)
    out = np.empty(2 * len(data) + 8, dtype=np.uint8)
    out_offsets = np.zeros(n + 1, dtype=np.int64)
    fallback = np.zeros(n, dtype=np.bool_)
    at = 0
    for row in range(n):
        start, end = offsets[row], offsets[row + 1]
        if not valid[row]:
            out_offsets[row + 1] = at
            continue
        row_at = at
        odd = False
        prefix = _k_http_prefix(data, start, end)
        i = start
        if prefix and end - start >= prefix + 2 and data[start + prefix] == 47 and data[start + prefix + 1] == 47:
            i = start + prefix + 2
            if i < end and data[i] == 47:
                odd = True  # empty host: urllib reads the slashes as the path
            in_host = True
        else:
            prefix = 0
            in_host = False
            if start < end and data[start] == 47:
                odd = True  # urllib would read a leading "//" as an empty host and rewrite it
        in_fragment = False
        while i < end and not odd:
            b = data[i]
            if plain[b]:  # most bytes: copied lower-cased, one predictable branch
                out[at] = ascii_lower[b]
                at += 1
                i += 1
                continue
            if b < 0x80:
                if b < 0x21 or b == 91 or b == 93:  # control/space, '[', ']'
                    odd = True
                    break
                if b == 58:
                    if prefix == 0:  # ':' without an http(s) scheme
                        odd = True
                        break
                elif b == 63 or b == 35:
                    if i > start and data[i - 1] == 59:  # ';?', ';#': an empty `;params`, dropped
                        odd = True
                        break
                    if b == 35 and not in_fragment:
                        if (i > start and data[i - 1] == 63) or i + 1 == end:  # an empty query or fragment
                            odd = True
                            break
                        in_fragment = True
                    in_host = False
                elif b == 47:
                    in_host = False
                out[at] = b
                at += 1
                i += 1
                continue
            if in_host and not unicode_host:  # (`te_bytes` checks such hosts the way urllib does, then reruns)
                odd = True
                break
            # A multi-byte character: decode, lower-case by Python's table, encode again.
            k = 1 if 0xC2 <= b < 0xE0 else 2 if 0xE0 <= b < 0xF0 else 3 if 0xF0 <= b < 0xF5 else 0
            if k == 0 or i + k >= end:
                odd = True
                break
            c = np.int64(b & (0x1F if k == 1 else 0x0F if k == 2 else 0x07))
            for j in range(1, k + 1):
                if (data[i + j] & 0xC0) != 0x80:
                    odd = True
                    break
                c = (c << 6) | (data[i + j] & 0x3F)
            if odd:
                break
            minimum = 0x80 if k == 1 else 0x800 if k == 2 else 0x10000
            if c < minimum or c > 0x10FFFF or 0xD800 <= c < 0xE000:
                odd = True
                break
            if c < len(lower):
                mapped = lower[c]
                if mapped == 0xFFFFFFFF:
                    odd = True
                    break
                c = np.int64(mapped)
            at = k_put_utf8(out, at, c)
            i += k + 1
        if not odd and not in_fragment and at > row_at and (out[at - 1] == 63 or out[at - 1] == 59):
            odd = True  # a trailing '?' or ';' (an empty query or `;params`, dropped)
        if odd:
            fallback[row] = True
            at = row_at
        out_offsets[row + 1] = at
    return out[:at], out_offsets, fallback


@_jit
def _k_is_hex(b: int) -> bool:
    return 48 <= b <= 57 or 65 <= b <= 70 or 97 <= b <= 102


@_jit
def _k_hex_value(b: int) -> int:
    if b <= 57:
        return b - 48
    return (b | 0x20) - 87


@_jit
def _k_put_escape(out: np.ndarray, at: int, value: int) -> int:
    high, low = value >> 4, value & 15
    out[at] = 37
    out[at + 1] = high + 48 if high < 10 else high + 55
    out[at + 2] = low + 48 if low < 10 else low + 55
    return at + 3


@_jit
def _k_dot_segment(out: np.ndarray, segment: int, at: int) -> bool:
    """Whether out[segment:at], a path segment, is `.` or `..`."""
    size = at - segment
    return (size == 1 and out[segment] == 46) or (size == 2 and out[segment] == 46 and out[segment + 1] == 46)


@_jit
def _k_canonical(
    data: np.ndarray,
    offsets: np.ndarray,
    valid: np.ndarray,
    host_bytes: np.ndarray,
    plain: np.ndarray,
    unreserved: np.ndarray,
) -> tuple:
    """Canonical form (see `CanonicalUrl`) of http(s) URLs with a plain ASCII host: host lower-cased, default port
    dropped, `/` for an empty path, path and query percent-encoding normalised (escapes of unreserved characters
    decoded, other escapes upper-cased, stray `%` and characters outside the safe sets -- non-ASCII bytes
    included -- encoded), an empty query and the fragment dropped. Flagged for the scalar path: no http(s)
    scheme, a byte below 0x21 or 0x7F before the fragment, a host that is empty, ends with `.`, or holds
    anything but ASCII letters, digits, `-`, `.`, `_`; a port that is not 1-5 digits without a leading zero
    or is over 65535; a dot segment in the path."""
    n = len(valid)
    out = np.empty(3 * len(data) + n + 8, dtype=np.uint8)
    out_offsets = np.zeros(n + 1, dtype=np.int64)
    fallback = np.zeros(n, dtype=np.bool_)
    at = 0
    for row in range(n):
        start, end = offsets[row], offsets[row + 1]
        if not valid[row]:
            out_offsets[row + 1] = at
            continue
        row_at = at
        prefix = _k_http_prefix(data, start, end)
        odd = prefix == 0
        i = start + prefix
        while i < end and data[i] == 47:  # any number of slashes after a special scheme
            i += 1
        host_start = at
        while not odd and i < end:
            b = host_bytes[data[i]]
            if b == 0:
                c = data[i]
                if not (c == 47 or c == 63 or c == 35 or c == 58):  # anything but the host's end: scalar path
                    odd = True
                break
            out[at] = b
            at += 1
            i += 1
        if not odd and (at == host_start or out[at - 1] == 46):
            odd = True  # empty host, or a trailing dot
        if not odd and i < end and data[i] == 58:  # port
            i += 1
            digits_start = i
            port = 0
            while i < end and 48 <= data[i] <= 57 and i - digits_start < 6:
                port = port * 10 + data[i] - 48
                i += 1
            count = i - digits_start
            ends_port = i == end or data[i] == 47 or data[i] == 63 or data[i] == 35
            if count == 0 or count > 5 or port > 65535 or (data[digits_start] == 48 and count > 1) or not ends_port:
                odd = True
            else:
                https = prefix == 6
                if not ((https and port == 443) or (not https and port == 80)):
                    out[at] = 58
                    at += 1
                    for j in range(digits_start, i):
                        out[at] = data[j]
                        at += 1
        if not odd:
            if i >= end or data[i] != 47:
                out[at] = 47  # an empty path is "/"
                at += 1
            in_query = False
            query_mark = -1
            segment = at  # where the current path segment starts in `out` (dot segments take the scalar path)
            while i < end:
                b = data[i]
                if plain[b]:
                    out[at] = b
                    at += 1
                    i += 1
                    continue
                if b == 35:  # the fragment is dropped, whatever it holds
                    break
                if b < 0x21 or b == 0x7F:
                    odd = True
                    break
                if b == 47 or b == 63:
                    if not in_query and _k_dot_segment(out, segment, at):
                        odd = True
                        break
                    if b == 47:
                        segment = at + 1
                    elif not in_query:
                        in_query = True
                        query_mark = at
                    out[at] = b
                    at += 1
                    i += 1
                    continue
                if b == 37:  # '%'
                    if i + 2 < end and _k_is_hex(data[i + 1]) and _k_is_hex(data[i + 2]):
                        value = _k_hex_value(data[i + 1]) * 16 + _k_hex_value(data[i + 2])
                        if unreserved[value]:
                            out[at] = value
                            at += 1
                        else:
                            at = _k_put_escape(out, at, value)
                        i += 3
                        continue
                    at = _k_put_escape(out, at, 37)
                    i += 1
                    continue
                at = _k_put_escape(out, at, b)  # outside the safe set (non-ASCII bytes included)
                i += 1
            if not odd and not in_query and _k_dot_segment(out, segment, at):
                odd = True
            if not odd and query_mark >= 0 and query_mark == at - 1:
                at -= 1  # an empty query is dropped
        if odd:
            fallback[row] = True
            at = row_at
        out_offsets[row + 1] = at
    return out[:at], out_offsets, fallback


# MD5 (RFC 1321) constants: per step, the shift, the sine-derived constant and the message word it reads. The
# kernels read them as module globals, which numba freezes into the compiled code as constants.
_MD5_SHIFTS = np.array(
    [7, 12, 17, 22] * 4 + [5, 9, 14, 20] * 4 + [4, 11, 16, 23] * 4 + [6, 10, 15, 21] * 4, dtype=np.uint32
)
_MD5_K = np.array([int(abs(np.sin(i + 1)) * 2**32) & 0xFFFFFFFF for i in range(64)], dtype=np.uint32)
_MD5_WORD = np.array(
    list(range(16))
    + [(5 * j + 1) % 16 for j in range(16, 32)]
    + [(3 * j + 5) % 16 for j in range(32, 48)]
    + [(7 * j) % 16 for j in range(48, 64)],
    dtype=np.int64,
)


@_jit
def _k_md5_block(source: np.ndarray, at: int, words: np.ndarray, state: np.ndarray) -> None:
    """One 64-byte block, source[at:at + 64], into the state. 32-bit words throughout (each sum cast back to
    uint32 wraps as MD5 wants), so no masking."""
    for j in range(16):
        p = at + 4 * j
        words[j] = (
            np.uint32(source[p])
            | (np.uint32(source[p + 1]) << np.uint32(8))
            | (np.uint32(source[p + 2]) << np.uint32(16))
            | (np.uint32(source[p + 3]) << np.uint32(24))
        )
    thirty_two = np.uint32(32)
    a, b, c, d = state[0], state[1], state[2], state[3]
    # The four rounds as four branch-free loops.
    for j in range(16):
        f = np.uint32(np.uint32(d ^ (b & (c ^ d))) + a + _MD5_K[j] + words[_MD5_WORD[j]])
        s = _MD5_SHIFTS[j]
        a, d, c = d, c, b
        b = np.uint32(b + np.uint32((f << s) | (f >> (thirty_two - s))))
    for j in range(16, 32):
        f = np.uint32(np.uint32(c ^ (d & (b ^ c))) + a + _MD5_K[j] + words[_MD5_WORD[j]])
        s = _MD5_SHIFTS[j]
        a, d, c = d, c, b
        b = np.uint32(b + np.uint32((f << s) | (f >> (thirty_two - s))))
    for j in range(32, 48):
        f = np.uint32(np.uint32(b ^ c ^ d) + a + _MD5_K[j] + words[_MD5_WORD[j]])
        s = _MD5_SHIFTS[j]
        a, d, c = d, c, b
        b = np.uint32(b + np.uint32((f << s) | (f >> (thirty_two - s))))
    for j in range(48, 64):
        f = np.uint32(np.uint32(c ^ (b | np.uint32(~d))) + a + _MD5_K[j] + words[_MD5_WORD[j]])
        s = _MD5_SHIFTS[j]
        a, d, c = d, c, b
        b = np.uint32(b + np.uint32((f << s) | (f >> (thirty_two - s))))
    state[0] = np.uint32(state[0] + a)
    state[1] = np.uint32(state[1] + b)
    state[2] = np.uint32(state[2] + c)
    state[3] = np.uint32(state[3] + d)


@_jit
def _k_md5_rows(data: np.ndarray, offsets: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """MD5 of every valid row (zero digests for nulls): whole blocks straight from `data`, the padded tail
    (one or two blocks) from a scratch buffer."""
    n = len(valid)
    digests = np.zeros((n, 16), dtype=np.uint8)
    tail = np.zeros(128, dtype=np.uint8)
    state = np.empty(4, dtype=np.uint32)
    words = np.empty(16, dtype=np.uint32)
    for row in range(n):
        if not valid[row]:
            continue
        start, length = offsets[row], offsets[row + 1] - offsets[row]
        state[0], state[1], state[2], state[3] = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476
        whole = length // 64
        for k in range(whole):
            _k_md5_block(data, start + 64 * k, words, state)
        rest = length - 64 * whole
        tail_size = 64 if rest < 56 else 128
        for j in range(rest):
            tail[j] = data[start + 64 * whole + j]
        tail[rest] = 0x80
        for j in range(rest + 1, tail_size - 8):
            tail[j] = 0
        bits = np.uint64(length) * np.uint64(8)
        for j in range(8):
            tail[tail_size - 8 + j] = (bits >> np.uint64(8 * j)) & np.uint64(0xFF)
        _k_md5_block(tail, 0, words, state)
        if tail_size == 128:
            _k_md5_block(tail, 64, words, state)
        for w in range(4):
            for j in range(4):
                digests[row, 4 * w + j] = (state[w] >> np.uint32(8 * j)) & np.uint32(0xFF)
    return digests


# --------------------------------------------------------------------------------------------------------------
# entry points


def _safe_table(chars: bytes) -> np.ndarray:
    table = np.zeros(128, dtype=np.bool_)
    for c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~" + chars:
        table[c] = True
    return table


_PATH_SAFE = _safe_table(b"/:@!$&'()*+,;=")
_PATH_PLAIN = np.zeros(256, dtype=np.bool_)
_PATH_PLAIN[:128] = _PATH_SAFE
_PATH_PLAIN[ord("%")] = _PATH_PLAIN[ord("?")] = _PATH_PLAIN[ord("/")] = False
# te: bytes copied as they are (lower-cased); the others are looked at one by one.
_TE_PLAIN = np.zeros(256, dtype=np.bool_)
_TE_PLAIN[0x21:0x80] = True
for _special in b"[]:?#/":
    _TE_PLAIN[_special] = False
_ASCII_LOWER = np.arange(256, dtype=np.uint8)
_ASCII_LOWER[ord("A") : ord("Z") + 1] += 0x20
# canonical host: the lower-cased byte, or 0 for a byte that ends the host ('/', '?', '#', ':') or sends the row
# to the scalar path.
_HOST_BYTES = np.zeros(256, dtype=np.uint8)
for _byte in b"abcdefghijklmnopqrstuvwxyz0123456789-._":
    _HOST_BYTES[_byte] = _byte
for _byte in b"ABCDEFGHIJKLMNOPQRSTUVWXYZ":
    _HOST_BYTES[_byte] = _byte | 0x20
_UNRESERVED_BYTES = np.zeros(256, dtype=np.bool_)
_UNRESERVED_BYTES[:128] = _safe_table(b"")


@dataclass(frozen=True)
class FormBytes:
    """One normal form of a batch's URLs as one byte buffer + offsets: row i is data[offsets[i]:offsets[i + 1]]
    where valid[i]. Computed once per batch and shared by every user (StringSet lookups, MD5), so that no Arrow
    array is built unless a matcher asks for one."""

    offsets: np.ndarray  # int64, rows + 1
    data: np.ndarray  # uint8
    valid: np.ndarray  # bool
    source: StringBuffers  # the URLs the form was computed from (nulls and string type for `to_arrow`)

    def to_arrow(self) -> pa.Array:
        return _to_arrow(self.source, self.offsets, self.data)


@_jit
def _k_rows_equal(
    a_data: np.ndarray, a_offsets: np.ndarray, b_data: np.ndarray, b_offsets: np.ndarray, valid: np.ndarray
) -> np.ndarray:
    n = len(valid)
    same = np.zeros(n, dtype=np.bool_)
    for row in range(n):
        if not valid[row]:
            continue
        a, b = a_offsets[row], b_offsets[row]
        size = a_offsets[row + 1] - a
        if b_offsets[row + 1] - b != size:
            continue
        equal = True
        for k in range(size):
            if a_data[a + k] != b_data[b + k]:
                equal = False
                break
        same[row] = equal
    return same


def rows_equal(first: FormBytes, second: FormBytes) -> np.ndarray:
    """Per row, whether two forms of the same URLs are byte-identical (both valid): for most URLs the `te` and
    `canonical` forms are, and their digests and lookups need computing once."""
    _compile_kernels()
    return _k_rows_equal(first.data, first.offsets, second.data, second.offsets, first.valid & second.valid)


def te_bytes(array: pa.Array, scalar: Any) -> FormBytes:
    """The `te` form of every row; `scalar` (a str -> str function) for the rows the kernel flags."""
    _compile_kernels()
    source = string_buffers(array)
    data, offsets, fallback = _k_te(
        source.data, source.offsets, source.valid, python_lower_table(), _TE_PLAIN, _ASCII_LOWER, False
    )
    return _finish("te", source, data, offsets, fallback, _te_unicode_hosts(scalar))


def _te_unicode_hosts(scalar: Any) -> Any:
    """The scalar path for rows the `te` kernel flagged, trying the kernel again first with non-ASCII hosts
    allowed: urllib changes nothing about such a host unless its NFKC check fails, which is decided once per
    host (cached), so IDN rows cost one small kernel call rather than urllib's parse of each URL."""

    def fixed(urls: list[str]) -> list[bytes]:
        source = string_buffers(pa.array(urls, type=pa.string()))
        data, offsets, fallback = _k_te(
            source.data, source.offsets, source.valid, python_lower_table(), _TE_PLAIN, _ASCII_LOWER, True
        )
        out = []
        for i, url in enumerate(urls):
            value = bytes(data[offsets[i] : offsets[i + 1]])
            if fallback[i] or (not value.isascii() and not _netloc_passes_urllib(_te_netloc(value))):
                out.append(scalar(url).encode("utf-8"))
            else:
                out.append(value)
        return out

    return fixed


def _te_netloc(form: bytes) -> str:
    """The netloc of a `te` form (the URL lower-cased, `http(s)://` removed): up to the first `/`, `?` or `#`."""
    end = len(form)
    for mark in b"/?#":
        at = form.find(mark)
        if 0 <= at < end:
            end = at
    return form[:end].decode("utf-8")


@lru_cache(maxsize=65536)
def _netloc_passes_urllib(netloc: str) -> bool:
    """Whether urllib's split accepts this netloc (its NFKC check of non-ASCII netlocs), asked of urllib itself."""
    try:
        urlsplit("//" + netloc)
    except ValueError:
        return False
    return True


def canonical_bytes(array: pa.Array, scalar: Any, host_mapper: Any = None) -> FormBytes:
    """The `canonical` form of every row; `scalar` for the rows the kernel flags. With `host_mapper` (the scalar
    path's str -> str host mapping, cached per host), flagged rows with a non-ASCII host are tried again in the
    kernel with the mapped (punycode) host written in, and only what the kernel still flags takes `scalar`."""
    _compile_kernels()
    source = string_buffers(array)
    data, offsets, fallback = _k_canonical(
        source.data, source.offsets, source.valid, _HOST_BYTES, _PATH_PLAIN, _UNRESERVED_BYTES
    )

    def fixed(urls: list[str]) -> list[bytes]:
        retry: dict[int, str] = {}
        if host_mapper is not None:
            for i, url in enumerate(urls):
                parts = _HTTP_HOST.match(url)
                if parts is not None and not parts[2].isascii() and _netloc_passes_urllib(parts[2]):
                    host = host_mapper(parts[2])
                    if _KERNEL_HOST.fullmatch(host):  # else (empty, `/`, ...) the kernel would read it otherwise
                        retry[i] = parts[1] + host + parts[3]
        again: dict[int, bytes] = {}
        if retry:
            rows = list(retry)
            source = string_buffers(pa.array([retry[i] for i in rows], type=pa.string()))
            data, offsets, flagged = _k_canonical(
                source.data, source.offsets, source.valid, _HOST_BYTES, _PATH_PLAIN, _UNRESERVED_BYTES
            )
            again = {row: bytes(data[offsets[k] : offsets[k + 1]]) for k, row in enumerate(rows) if not flagged[k]}
        return [again[i] if i in again else scalar(url).encode("utf-8") for i, url in enumerate(urls)]

    return _finish("canonical", source, data, offsets, fallback, fixed)


# An http(s) URL split at its host, as the canonical kernel reads it (scheme, any slashes; the host up to `/`, `?`,
# `#` or a port; a host holding `@`, `%`, `\`, brackets or controls does not match and takes the scalar path).
_KERNEL_HOST = re.compile(r"[a-z0-9_.-]+")
_HTTP_HOST = re.compile(r"(?i)(https?:/*)([^/?#:@%\\\[\]\x00-\x20\x7f]+)(.*)\Z", re.DOTALL)


def te_form(array: pa.Array, scalar: Any) -> pa.Array:
    return te_bytes(array, scalar).to_arrow()


def canonical_form(array: pa.Array, scalar: Any) -> pa.Array:
    return canonical_bytes(array, scalar).to_arrow()


def _splice(
    data: np.ndarray, offsets: np.ndarray, rows: np.ndarray, fixed: list[bytes]
) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's output with the scalar path's bytes put into the rows it left empty (`rows`, ascending):
    the kernel's bytes between two such rows move as one block (numpy's memcpy; the rows are few)."""
    sizes = np.fromiter((len(f) for f in fixed), dtype=np.int64, count=len(fixed))
    out = np.empty(len(data) + int(sizes.sum()), dtype=np.uint8)
    copied = added = 0
    for row, value in zip(rows.tolist(), fixed, strict=True):
        until = int(offsets[row])  # the row is empty in `data`: its bytes go here
        out[copied + added : until + added] = data[copied:until]
        out[until + added : until + added + len(value)] = np.frombuffer(value, dtype=np.uint8)
        copied = until
        added += len(value)
    out[copied + added :] = data[copied:]
    shift = np.zeros(len(offsets), dtype=np.int64)
    shift[rows + 1] = sizes
    return out, offsets + np.cumsum(shift)


def _finish(
    form: str, source: StringBuffers, data: np.ndarray, offsets: np.ndarray, fallback: np.ndarray, rows_fixer: Any
) -> FormBytes:
    """The kernel's output with the rows it flagged filled in by `rows_fixer` (list of URLs -> their bytes)."""
    rows = np.flatnonzero(fallback)
    STATS.add(form, int(source.valid.sum()), len(rows))
    if len(rows):
        originals = source.array.take(pa.array(rows)).to_pylist()
        data, offsets = _splice(data, offsets, rows, rows_fixer(originals))
    return FormBytes(offsets, data, source.valid, source)


def digest_strings(array: pa.Array, algorithm: str) -> tuple[np.ndarray, np.ndarray]:
    """(digests (rows, size) uint8, valid) of each row's UTF-8 bytes; nulls give zero digests, not valid.

    MD5 runs as one compiled loop over the buffers; SHA-1 and SHA-256 go through hashlib, one call per row from a
    single `bytes` copy of the data (no Arrow or numpy work per row)."""
    source = string_buffers(array)
    return digest_bytes(source.data, source.offsets, source.valid, algorithm)


def digest_bytes(
    data: np.ndarray, offsets: np.ndarray, valid: np.ndarray, algorithm: str
) -> tuple[np.ndarray, np.ndarray]:
    """`digest_strings` over rows given as bytes + int64 offsets (a `FormBytes`), with no Arrow in between."""
    if algorithm == "md5":
        _compile_kernels()
        return _k_md5_rows(data, offsets, valid), valid
    make = getattr(hashlib, algorithm)
    size = make().digest_size
    joined_data = data.tobytes()
    bounds = offsets.tolist()
    absent = bytes(size)
    joined = b"".join(
        [
            make(joined_data[bounds[i] : bounds[i + 1]]).digest() if ok else absent
            for i, ok in enumerate(valid.tolist())
        ]
    )
    return np.frombuffer(joined, dtype=np.uint8).reshape(len(bounds) - 1, size).copy(), valid
