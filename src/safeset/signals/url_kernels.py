"""Compiled (numba) URL normal forms and URL digests, straight over an Arrow string array's buffers.

A metadata scan puts every row's URL in two normal forms and hashes both; at a million rows a second that is
about 1 µs a row for everything, which numpy passes over the buffers (ten or more per form) and a hashlib call
per URL cannot reach. Here both forms come from one compiled pass over the offsets and data bytes (zero-copy
from `pa.Array.buffers()`) as spans of one buffer: most URLs of a web dataset (lower-case scheme and host,
nothing to escape) are both forms of themselves from the host on, so their forms are spans of the URL bytes
and are written nowhere, and whether the two forms agree (`UrlForms.same`, which halves the hashing) is known
without comparing them. The row kernels cover what web datasets hold almost entirely -- http(s) URLs with ASCII
hosts, any path (non-ASCII paths included), queries, escapes, ports, fragments; non-ASCII hosts through a
per-host check or mapping in Python -- and flag every row they do not handle exactly (userinfo, control
characters, dot segments, odd scheme shapes, ...); those rows take the scalar reference in `urls.py`, which
stays the oracle the kernels are tested against, and are counted in `STATS`.

MD5 (what hotline URL lists hold; xxhash is not an option) runs over the spans in one kernel call per form:
through OpenSSL's `MD5` where this Python's libcrypto has it (about a third faster than the compiled rounds,
which remain the fallback and are tested alike). For SHA-1 and SHA-256 the rows are fed to `hashlib` one call
per row with no Arrow or numpy work, which measured faster than anything a pure numba SHA would be worth
maintaining for such rare banks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import re
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
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
    if array.null_count:  # the validity bitmap unpacked (pyarrow's `is_valid` costs a compute-kernel dispatch)
        valid = np.unpackbits(np.frombuffer(buffers[0], dtype=np.uint8), count=n, bitorder="little").view(bool)
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
_INLINED: set[str] = set()


def _jit(function: Any) -> Any:
    _KERNELS.append(function.__name__)
    return function


def _jit_inline(function: Any) -> Any:
    """A per-row helper, inlined into its callers by numba: a call taking the arrays costs more than the row."""
    _INLINED.add(function.__name__)
    return _jit(function)


@cache
def _compile_kernels() -> None:
    import numba

    for name in _KERNELS:  # module globals, so that kernels calling kernels find the compiled ones
        inline = "always" if name in _INLINED else "never"
        globals()[name] = numba.njit(cache=True, nogil=True, inline=inline)(globals()[name])


@_jit_inline
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


@_jit_inline
def _k_te_row(
    data: np.ndarray, start: int, end: int, out: np.ndarray, at: int, lower: np.ndarray, plain: np.ndarray,
    ascii_lower: np.ndarray,
) -> tuple:
    """ThreatExchange form (see `ThreatExchangeUrl`) of data[start:end] written at out[at:]: Python's lower case,
    then `http://` / `https://` dropped. Returns (position after it, code): code 0, done; 2, done, but the host
    holds non-ASCII characters (urllib's NFKC check of the netloc decides, per host, in Python); 1, the row takes
    the scalar path (nothing written), because urllib's parse-and-rebuild would change more than that: a byte
    below 0x21, `[` or `]`; an empty query, fragment or `;params` (dropped: a trailing `?` or `;`, `;?`, `;#`,
    `?#`, a trailing `#`); a `:` without an http(s) scheme; an empty host; a character whose lower case is not
    one character or depends on context; bytes that are not UTF-8."""
    row_at = at
    odd = False
    unicode_host = False
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
        if in_host:
            unicode_host = True
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
        return row_at, 1
    return at, 2 if unicode_host else 0


@_jit_inline
def _k_is_hex(b: int) -> bool:
    return 48 <= b <= 57 or 65 <= b <= 70 or 97 <= b <= 102


@_jit_inline
def _k_hex_value(b: int) -> int:
    if b <= 57:
        return b - 48
    return (b | 0x20) - 87


@_jit_inline
def _k_put_escape(out: np.ndarray, at: int, value: int) -> int:
    high, low = value >> 4, value & 15
    out[at] = 37
    out[at + 1] = high + 48 if high < 10 else high + 55
    out[at + 2] = low + 48 if low < 10 else low + 55
    return at + 3


@_jit_inline
def _k_dot_segment(out: np.ndarray, segment: int, at: int) -> bool:
    """Whether out[segment:at], a path segment, is `.` or `..`."""
    size = at - segment
    return (size == 1 and out[segment] == 46) or (size == 2 and out[segment] == 46 and out[segment + 1] == 46)


@_jit_inline
def _k_host_run(data: np.ndarray, i: int, end: int) -> tuple:
    """From data[i]: the end of the host as the scalar path's `_HTTP_HOST` reads it (up to `/ ? # : @ % \\ [ ]`, a
    control or space), and whether it holds a non-ASCII byte."""
    non_ascii = False
    while i < end:
        c = data[i]
        if c < 0x21 or c == 0x7F or c == 47 or c == 63 or c == 35 or c == 58 or c == 64 or c == 37:
            break
        if c == 92 or c == 91 or c == 93:
            break
        if c >= 0x80:
            non_ascii = True
        i += 1
    return i, non_ascii


@_jit_inline
def _k_canonical_row(
    data: np.ndarray,
    start: int,
    end: int,
    out: np.ndarray,
    at: int,
    host_bytes: np.ndarray,
    plain: np.ndarray,
    unreserved: np.ndarray,
    mapped: np.ndarray,
    mapped_from: int,
    mapped_to: int,
    written_host_end: int,
) -> tuple:
    """Canonical form (see `CanonicalUrl`) of data[start:end], an http(s) URL with a plain ASCII host, written at
    out[at:]: host lower-cased, default port dropped, `/` for an empty path, path and query percent-encoding
    normalised (escapes of unreserved characters decoded, other escapes upper-cased, stray `%` and characters
    outside the safe sets -- non-ASCII bytes included -- encoded), an empty query and the fragment dropped.

    Returns (position after it, code, host start, host end): code 0, done; 1, the scalar path (nothing written):
    no http(s) scheme, a byte below 0x21 or 0x7F before the fragment, a host that is empty, ends with `.`, or
    holds anything but ASCII letters, digits, `-`, `.`, `_`; a port that is not 1-5 digits without a leading
    zero or is over 65535; a dot segment in the path; 2, nothing written, the host data[host start:host end]
    holds non-ASCII characters: Python maps it (IDNA, cached per host) and calls again with the mapped host in
    mapped[mapped_from:mapped_to] standing for the written one, which ends at `written_host_end`."""
    row_at = at
    prefix = _k_http_prefix(data, start, end)
    if prefix == 0:
        return row_at, 1, 0, 0
    i = start + prefix
    while i < end and data[i] == 47:  # any number of slashes after a special scheme
        i += 1
    host_start = at
    odd = False
    if mapped_to > mapped_from:
        for k in range(mapped_from, mapped_to):
            b = host_bytes[mapped[k]]
            if b == 0:
                return row_at, 1, 0, 0
            out[at] = b
            at += 1
        i = written_host_end
        c = data[i] if i < end else 47
        if not (c == 47 or c == 63 or c == 35 or c == 58):
            odd = True
    else:
        while i < end:
            b = host_bytes[data[i]]
            if b == 0:
                c = data[i]
                if not (c == 47 or c == 63 or c == 35 or c == 58):  # anything but the host's end
                    run_start = i - (at - host_start)
                    run_end, non_ascii = _k_host_run(data, run_start, end)
                    if non_ascii:
                        return row_at, 2, run_start, run_end
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
        return row_at, 1, 0, 0
    return at, 0, 0, 0


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
def _k_md5_spans(
    data: np.ndarray, starts: np.ndarray, ends: np.ndarray, hash_rows: np.ndarray, known: np.ndarray
) -> np.ndarray:
    """MD5 of data[starts[i]:ends[i]] for every row in `hash_rows`; other rows take known[i] (zero digests, or
    the digest of an identical form computed before): whole blocks straight from `data`, the padded tail (one
    or two blocks) from a scratch buffer."""
    n = len(hash_rows)
    digests = known.copy()
    tail = np.zeros(128, dtype=np.uint8)
    state = np.empty(4, dtype=np.uint32)
    words = np.empty(16, dtype=np.uint32)
    for row in range(n):
        if not hash_rows[row]:
            continue
        start, length = starts[row], ends[row] - starts[row]
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


@_jit
def _k_md5_spans_openssl(
    md5: Any, data: np.ndarray, starts: np.ndarray, ends: np.ndarray, hash_rows: np.ndarray, known: np.ndarray
) -> np.ndarray:
    """`_k_md5_spans` through OpenSSL's one-shot `MD5` (`md5`, a ctypes function passed in, so that the kernel
    stays cacheable): its hand-scheduled assembly is about a third faster than the compiled rounds above."""
    digests = known.copy()
    base, out = data.ctypes.data, digests.ctypes.data
    for row in range(len(hash_rows)):
        if hash_rows[row]:
            md5(base + starts[row], ends[row] - starts[row], out + 16 * row)
    return digests


@cache
def openssl_md5() -> Any:
    """OpenSSL's `MD5(data, size, digest)` from the libcrypto this Python's hashlib loaded (else the one the
    loader finds), checked against hashlib; None where there is none (the compiled rounds are used)."""
    import _hashlib  # noqa: F401  (loads libcrypto into the process where hashlib is built on it)

    candidates: list[str] = []
    try:
        for line in Path("/proc/self/maps").read_text().splitlines():
            path = line.split()[-1] if line.count("/") else ""
            if "/libcrypto" in path and path not in candidates:
                candidates.append(path)
    except OSError:  # not Linux
        pass
    found = ctypes.util.find_library("crypto")
    candidates += [found] if found else []
    for candidate in candidates:
        try:
            md5 = ctypes.CDLL(candidate).MD5
        except (OSError, AttributeError):
            continue
        md5.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        md5.restype = ctypes.c_void_p
        probe, digest = b"safeset", ctypes.create_string_buffer(16)
        md5(probe, len(probe), digest)
        if digest.raw == hashlib.md5(probe).digest():
            return md5
    return None


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


# For `_k_simple`, per byte after the host: 0, both forms keep it as it is (lower-case letters, digits, and what
# needs no escape in a path or query and means nothing special to urllib); 1, an upper-case letter (`te` lower-cases
# it, `canonical` keeps it); 2, anything else (`;`, `%`, `#`, `[`, `]`, spaces, controls, non-ASCII, ...).
_SIMPLE_CLASS = np.full(256, 2, dtype=np.uint8)
for _byte in b"abcdefghijklmnopqrstuvwxyz0123456789-._~/:@!$&'()*+,=?":
    _SIMPLE_CLASS[_byte] = 0
for _byte in b"ABCDEFGHIJKLMNOPQRSTUVWXYZ":
    _SIMPLE_CLASS[_byte] = 1
_CLEAN_HOST = np.zeros(256, dtype=np.bool_)
for _byte in b"abcdefghijklmnopqrstuvwxyz0123456789-._":
    _CLEAN_HOST[_byte] = True
_SIMPLE, _UPPER_PATH, _OTHER = 0, 1, 2


@_jit_inline
def _k_simple(data: np.ndarray, start: int, end: int, clean_host: np.ndarray, byte_class: np.ndarray) -> tuple:
    """(where the host starts, kind) of data[start:end]. Kind `_SIMPLE`: both forms are the URL itself from the
    host on -- a lower-case `http://` or `https://`, a host of lower-case letters, digits, `-`, `.`, `_` not
    ending in `.`, then a path of bytes neither form changes (`_SIMPLE_CLASS` 0), with no `/.` (a possible dot
    segment) and no trailing `?` (an empty query). Kind `_UPPER_PATH`: the same but for upper-case letters after
    the host, which `canonical` keeps and `te` lower-cases. `_OTHER`: the row kernels decide. Most URLs of a web
    dataset are of the first two kinds; their forms are spans of the URL bytes, or a lower-cased copy."""
    if end - start < 9 or data[start] != 104 or data[start + 1] != 116 or data[start + 2] != 116:
        return -1, _OTHER
    i = start + 3
    if data[i] != 112:
        return -1, _OTHER
    i += 1
    if data[i] == 115:
        i += 1
    if data[i] != 58 or data[i + 1] != 47 or data[i + 2] != 47:
        return -1, _OTHER
    i += 3
    host = i
    while i < end and clean_host[data[i]]:
        i += 1
    if i == host or i >= end or data[i] != 47 or data[i - 1] == 46:
        return -1, _OTHER
    kind = 0
    previous = 0
    while i < end:
        b = data[i]
        kind |= np.int64(byte_class[b])
        if b == 46 and previous == 47:
            kind |= 2
        previous = b
        i += 1
    if previous == 63:
        kind |= 2
    return host, (_SIMPLE if kind == 0 else _UPPER_PATH if kind == 1 else _OTHER)


@_jit
def _k_url_forms(
    data: np.ndarray,
    offsets: np.ndarray,
    valid: np.ndarray,
    clean_host: np.ndarray,
    byte_class: np.ndarray,
    lower: np.ndarray,
    te_plain: np.ndarray,
    ascii_lower: np.ndarray,
    host_bytes: np.ndarray,
    path_plain: np.ndarray,
    unreserved: np.ndarray,
) -> tuple:
    """Both normal forms of every row in one pass, as spans of one buffer that starts with a copy of the URLs'
    bytes: a simple row's forms (`_k_simple`) are the span of its URL from the host on (the `te` form lower-cased
    after it where the path has upper case); the others are written after it by the row kernels. Returns
    (buffer, bytes used, spans (te start, te end, canonical start, canonical end) × rows, codes (te, canonical)
    × rows, the canonical code-2 rows' host runs, whether the two forms are byte-identical per row)."""
    n = len(valid)
    size = len(data)
    buf = np.empty(6 * size + n + 64, dtype=np.uint8)  # room for the worst case: te 2×, canonical 3× + `/`
    buf[:size] = data
    spans = np.zeros((4, n), dtype=np.int64)
    codes = np.zeros((2, n), dtype=np.uint8)
    hosts = np.zeros((2, n), dtype=np.int64)
    same = np.zeros(n, dtype=np.bool_)
    no_host = np.zeros(0, dtype=np.uint8)
    at = size
    for row in range(n):
        if not valid[row]:
            continue
        start, end = offsets[row], offsets[row + 1]
        host, kind = _k_simple(data, start, end, clean_host, byte_class)
        if kind == _SIMPLE:
            spans[0, row] = host
            spans[1, row] = end
            spans[2, row] = host
            spans[3, row] = end
            same[row] = True
            continue
        if kind == _UPPER_PATH:
            spans[0, row] = at
            for k in range(host, end):
                buf[at] = ascii_lower[data[k]]
                at += 1
            spans[1, row] = at
            spans[2, row] = host
            spans[3, row] = end
            continue
        spans[0, row] = at
        at, code = _k_te_row(data, start, end, buf, at, lower, te_plain, ascii_lower)
        spans[1, row] = at
        codes[0, row] = code
        spans[2, row] = at
        at, code, run_start, run_end = _k_canonical_row(
            data, start, end, buf, at, host_bytes, path_plain, unreserved, no_host, 0, 0, 0
        )
        spans[3, row] = at
        codes[1, row] = code
        hosts[0, row] = run_start
        hosts[1, row] = run_end
        size_te, size_canonical = spans[1, row] - spans[0, row], at - spans[2, row]
        if size_te == size_canonical and codes[0, row] != 1 and code == 0:
            equal = True
            for k in range(size_te):
                if buf[spans[0, row] + k] != buf[spans[2, row] + k]:
                    equal = False
                    break
            same[row] = equal
    return buf, at, spans, codes, hosts, same


@_jit
def _k_canonical_mapped(
    data: np.ndarray,
    offsets: np.ndarray,
    rows: np.ndarray,
    run_ends: np.ndarray,
    mapped: np.ndarray,
    mapped_offsets: np.ndarray,
    buf: np.ndarray,
    at: int,
    host_bytes: np.ndarray,
    path_plain: np.ndarray,
    unreserved: np.ndarray,
) -> tuple:
    """The canonical form of each of `rows` (non-ASCII hosts) with its host mapped by Python standing for the
    written one, appended to buf at `at`. Returns (bytes used, spans (start, end) × rows, codes)."""
    m = len(rows)
    spans = np.zeros((2, m), dtype=np.int64)
    codes = np.zeros(m, dtype=np.uint8)
    for k in range(m):
        row = rows[k]
        spans[0, k] = at
        at, code, _, _ = _k_canonical_row(
            data, offsets[row], offsets[row + 1], buf, at, host_bytes, path_plain, unreserved,
            mapped, mapped_offsets[k], mapped_offsets[k + 1], run_ends[k],
        )
        spans[1, k] = at
        codes[k] = code
    return at, spans, codes


@_jit
def _k_spans_equal(
    a_data: np.ndarray,
    a_starts: np.ndarray,
    a_ends: np.ndarray,
    b_data: np.ndarray,
    b_starts: np.ndarray,
    b_ends: np.ndarray,
    valid: np.ndarray,
) -> np.ndarray:
    n = len(valid)
    same = np.zeros(n, dtype=np.bool_)
    for row in range(n):
        if not valid[row]:
            continue
        a, b = a_starts[row], b_starts[row]
        size = a_ends[row] - a
        if b_ends[row] - b != size:
            continue
        equal = True
        for k in range(size):
            if a_data[a + k] != b_data[b + k]:
                equal = False
                break
        same[row] = equal
    return same


@_jit
def _k_gather(data: np.ndarray, starts: np.ndarray, ends: np.ndarray, valid: np.ndarray) -> tuple:
    """The spans' bytes packed in row order, with int64 offsets (null rows empty)."""
    n = len(valid)
    offsets = np.zeros(n + 1, dtype=np.int64)
    for row in range(n):
        offsets[row + 1] = offsets[row] + (ends[row] - starts[row] if valid[row] else 0)
    out = np.empty(offsets[n], dtype=np.uint8)
    for row in range(n):
        if valid[row]:
            at = offsets[row]
            for k in range(ends[row] - starts[row]):
                out[at + k] = data[starts[row] + k]
    return out, offsets


@dataclass(frozen=True)
class FormBytes:
    """One normal form of a batch's URLs as spans of a byte buffer: row i is data[starts[i]:ends[i]] where
    valid[i]. The buffer is shared by both forms of the batch (and mostly by the URLs' own bytes: a clean URL's
    forms are the span after its scheme), and read directly by lookups and MD5, so no Arrow array is built
    unless a matcher asks for one (`to_arrow`)."""

    data: np.ndarray  # uint8
    starts: np.ndarray  # int64, one per row
    ends: np.ndarray  # int64, one per row
    valid: np.ndarray  # bool
    source: StringBuffers  # the URLs the form was computed from (nulls and string type for `to_arrow`)

    def row(self, i: int) -> bytes | None:
        return bytes(self.data[self.starts[i] : self.ends[i]]) if self.valid[i] else None

    def packed(self) -> tuple[np.ndarray, np.ndarray]:
        """(data, int64 offsets) with the rows packed in order."""
        _compile_kernels()
        return _k_gather(self.data, self.starts, self.ends, self.valid)

    def to_arrow(self) -> pa.Array:
        data, offsets = self.packed()
        return _to_arrow(self.source, offsets, data)


@dataclass
class UrlForms:
    """Both normal forms of a batch's URLs (one compiled pass, one buffer), and which rows they agree on."""

    te: FormBytes
    canonical: FormBytes
    #: Per row, whether both forms are byte-identical (both valid): most URLs; their digests and lookups need
    #: computing once.
    same: np.ndarray

    def form(self, name: str) -> FormBytes:
        return self.te if name == "te" else self.canonical


def spans_equal(first: FormBytes, second: FormBytes) -> np.ndarray:
    """Per row, whether two forms of the same URLs are byte-identical (both valid)."""
    _compile_kernels()
    return _k_spans_equal(
        first.data, first.starts, first.ends, second.data, second.starts, second.ends, first.valid & second.valid
    )


def url_forms(array: pa.Array, te_scalar: Any, canonical_scalar: Any, host_mapper: Any = None) -> UrlForms:
    """Both normal forms of every URL: one kernel pass, then the rows it flagged (`STATS`) through `te_scalar` /
    `canonical_scalar` (str -> str, the scalar references). Rows whose only oddity is a non-ASCII host stay
    on the compiled path: for `te` once urllib's NFKC check of the netloc passes (asked per netloc, cached), for
    `canonical` with `host_mapper` (the scalar path's host mapping, cached per host) writing the mapped host."""
    _compile_kernels()
    source = string_buffers(array)
    buf, used, spans, codes, hosts, same = _k_url_forms(
        source.data,
        source.offsets,
        source.valid,
        _CLEAN_HOST,
        _SIMPLE_CLASS,
        python_lower_table(),
        _TE_PLAIN,
        _ASCII_LOWER,
        _HOST_BYTES,
        _PATH_PLAIN,
        _UNRESERVED_BYTES,
    )
    checked = len(array) - array.null_count
    te_rows, canonical_rows = np.flatnonzero(codes[0]), np.flatnonzero(codes[1])
    STATS.add("te", checked, len(te_rows))
    STATS.add("canonical", checked, len(canonical_rows))
    if len(te_rows) or len(canonical_rows):
        fixer = _FlaggedRows(source, buf, used, spans)
        fixer.te(te_rows, codes[0], te_scalar)
        fixer.canonical(canonical_rows, codes[1], hosts, canonical_scalar, host_mapper)
        buf = fixer.finish()
        rows = np.union1d(te_rows, canonical_rows)  # the kernel left these rows' `same` False
        picked = spans[:, rows]
        same[rows] = _k_spans_equal(buf, picked[0], picked[1], buf, picked[2], picked[3], source.valid[rows])
    return UrlForms(
        FormBytes(buf, spans[0], spans[1], source.valid, source),
        FormBytes(buf, spans[2], spans[3], source.valid, source),
        same,
    )


class _FlaggedRows:
    """The forms of the rows the kernel flagged, written after the kernel's bytes (the buffer grows only when
    they do not fit in its spare room) and their spans set: no copy of the batch's bytes."""

    def __init__(self, source: StringBuffers, buf: np.ndarray, used: int, spans: np.ndarray) -> None:
        self.source, self.buf, self.used, self.spans = source, buf, used, spans
        self.pending: list[tuple[int, int, bytes]] = []  # (span row in `spans`, row, bytes)

    def url(self, row: int) -> str:
        offsets = self.source.offsets
        return bytes(self.source.data[offsets[row] : offsets[row + 1]]).decode("utf-8", "replace")

    def te(self, rows: np.ndarray, codes: np.ndarray, scalar: Any) -> None:
        for row in rows.tolist():
            if codes[row] == 2:  # the kernel's form stands if urllib accepts the netloc
                netloc = _TE_NETLOC.match(self.buf[self.spans[0, row] : self.spans[1, row]].tobytes())
                if _te_netloc_passes_urllib(netloc[0]):  # type: ignore[index]
                    continue
            self.pending.append((0, row, scalar(self.url(row)).encode("utf-8")))

    def canonical(
        self, rows: np.ndarray, codes: np.ndarray, hosts: np.ndarray, scalar: Any, host_mapper: Any
    ) -> None:
        mapped_rows: list[int] = []
        mapped_hosts: list[bytes] = []
        for row in rows.tolist():
            if codes[row] == 2 and host_mapper is not None:
                host = _mapped_host(self.source.data[hosts[0, row] : hosts[1, row]].tobytes(), host_mapper)
                if host is not None:
                    mapped_rows.append(row)
                    mapped_hosts.append(host)
                    continue
            self.pending.append((2, row, scalar(self.url(row)).encode("utf-8")))
        if not mapped_rows:
            return
        rows_array = np.array(mapped_rows, dtype=np.int64)
        mapped = np.frombuffer(b"".join(mapped_hosts), dtype=np.uint8)
        mapped_offsets = np.zeros(len(mapped_hosts) + 1, dtype=np.int64)
        mapped_offsets[1:] = np.cumsum([len(h) for h in mapped_hosts])
        lengths = self.source.offsets[rows_array + 1] - self.source.offsets[rows_array]
        self._room(int(3 * (lengths.sum() + mapped_offsets[-1]) + len(rows_array) + 8))
        self.used, spans, codes = _k_canonical_mapped(
            self.source.data,
            self.source.offsets,
            rows_array,
            hosts[1, rows_array],
            mapped,
            mapped_offsets,
            self.buf,
            self.used,
            _HOST_BYTES,
            _PATH_PLAIN,
            _UNRESERVED_BYTES,
        )
        self.spans[2, rows_array] = spans[0]
        self.spans[3, rows_array] = spans[1]
        for k in np.flatnonzero(codes).tolist():
            row = mapped_rows[k]
            self.pending.append((2, row, scalar(self.url(row)).encode("utf-8")))

    def _room(self, size: int) -> None:
        if self.used + size > len(self.buf):
            grown = np.empty(self.used + size + len(self.buf) // 2, dtype=np.uint8)
            grown[: self.used] = self.buf[: self.used]
            self.buf = grown

    def finish(self) -> np.ndarray:
        if self.pending:
            joined = b"".join(value for _, _, value in self.pending)
            self._room(len(joined))
            self.buf[self.used : self.used + len(joined)] = np.frombuffer(joined, dtype=np.uint8)
            at = self.used
            for which, row, value in self.pending:
                self.spans[which, row] = at
                self.spans[which + 1, row] = at + len(value)
                at += len(value)
            self.used = at
        return self.buf


@lru_cache(maxsize=65536)  # hosts repeat across rows
def _mapped_host(written: bytes, host_mapper: Any) -> bytes | None:
    """The host as the kernel can write it (`_KERNEL_HOST`), or None (the row takes the scalar path)."""
    try:
        host = written.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not _netloc_passes_urllib(host):
        return None
    mapped = host_mapper(host)
    return mapped.encode("ascii") if _KERNEL_HOST.fullmatch(mapped) else None


# The netloc of a `te` form (the URL lower-cased, `http(s)://` removed): up to the first `/`, `?` or `#`.
_TE_NETLOC = re.compile(rb"[^/?#]*")


@lru_cache(maxsize=65536)
def _te_netloc_passes_urllib(netloc: bytes) -> bool:
    return _netloc_passes_urllib(netloc.decode("utf-8"))


@lru_cache(maxsize=65536)
def _netloc_passes_urllib(netloc: str) -> bool:
    """Whether urllib's split accepts this netloc (its NFKC check of non-ASCII netlocs), asked of urllib itself."""
    try:
        urlsplit("//" + netloc)
    except ValueError:
        return False
    return True


# A host the canonical kernel writes as it is (the IDNA mapping's output, checked before the kernel sees it).
_KERNEL_HOST = re.compile(r"[a-z0-9_.-]+")


def digest_strings(array: pa.Array, algorithm: str) -> tuple[np.ndarray, np.ndarray]:
    """(digests (rows, size) uint8, valid) of each row's UTF-8 bytes; nulls give zero digests, not valid.

    MD5 runs as one compiled loop over the buffers; SHA-1 and SHA-256 go through hashlib, one call per row (no
    Arrow or numpy work per row)."""
    source = string_buffers(array)
    return digest_bytes(source.data, source.offsets, source.valid, algorithm)


def digest_bytes(
    data: np.ndarray, offsets: np.ndarray, valid: np.ndarray, algorithm: str
) -> tuple[np.ndarray, np.ndarray]:
    """`digest_strings` over rows given as bytes + int64 offsets, with no Arrow in between."""
    return digest_spans(data, offsets[:-1], offsets[1:], valid, algorithm)


def digest_spans(
    data: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    valid: np.ndarray,
    algorithm: str,
    known: tuple[np.ndarray, np.ndarray] | None = None,
    use_openssl: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(digests, valid) of rows given as spans data[starts[i]:ends[i]] (a `FormBytes`); zero digests where not
    valid. With `known` = (rows, digests) -- e.g. rows whose other form is identical, and that form's digests --
    those rows take the known digest unhashed. MD5 goes through OpenSSL where it is found (`openssl_md5`), else
    the compiled rounds (`use_openssl=False` asks for them, for tests)."""
    if known is None:
        hash_rows, start_from = valid, np.zeros((len(valid), _DIGEST_SIZES[algorithm]), dtype=np.uint8)
    else:
        rows, values = known
        hash_rows = valid & ~rows
        start_from = np.where((rows & valid)[:, None], values, np.uint8(0))
    if algorithm == "md5":
        _compile_kernels()
        md5 = openssl_md5() if use_openssl else None
        if md5 is not None:
            return _k_md5_spans_openssl(md5, data, starts, ends, hash_rows, start_from), valid
        return _k_md5_spans(data, starts, ends, hash_rows, start_from), valid
    digests = start_from.copy()
    make = getattr(hashlib, algorithm)
    view = memoryview(data)
    for i in np.flatnonzero(hash_rows).tolist():
        digests[i] = np.frombuffer(make(view[starts[i] : ends[i]]).digest(), dtype=np.uint8)
    return digests, valid


_DIGEST_SIZES = {"md5": 16, "sha1": 20, "sha256": 32}
