"""URL normal forms, as pluggable normalisers, each with a scalar reference and a compiled Arrow path.

Hash lists from hotlines and partners are built under different conventions, so a row's URL is put in
every normal form a bank asks for. The compiled path (`url_kernels.py`, one numba pass over the Arrow
buffers for both forms, `url_forms`) covers the http(s) URLs with ASCII hosts that make up almost all of a web dataset;
anything unusual goes through the scalar reference here, which is the oracle: tests fuzz both paths
against it, and it against python-threatexchange (`te`) and a WHATWG parser (`canonical`).
"""

from __future__ import annotations

import ipaddress
import re
from abc import ABC, abstractmethod
from functools import lru_cache
from typing import ClassVar
from urllib.parse import quote, unquote, urlparse, urlsplit

import idna
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from safeset.signals import url_kernels

_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):")
_UNSAFE_URL_CHARS = str.maketrans("", "", "\t\r\n")
_LEADING_JUNK = "".join(chr(c) for c in range(0x21))  # C0 controls and space, as urlsplit strips them
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_SPECIAL_SCHEMES = frozenset({"http", "https", "ftp", "ws", "wss"})
# Characters that need no percent-encoding in a canonical path or query (RFC 3986 unreserved + sub-delims
# + ':' '@' '/' '?'); '%' is absent so that existing escapes are re-encoded consistently.
_SAFE_PATH = "/:@!$&'()*+,;=-._~"
_SAFE_QUERY = _SAFE_PATH + "?"


class UrlNormalizer(ABC):
    """Turns URLs into the normal form a list was built with."""

    name: ClassVar[str]

    @abstractmethod
    def normalize(self, url: str) -> str:
        """Scalar reference implementation."""

    def normalize_array(self, urls: pa.Array) -> pa.Array:
        """Vectorised equivalent over an Arrow string array (nulls stay null)."""
        return self.normalize_bytes(urls).to_arrow()

    @abstractmethod
    def normalize_bytes(self, urls: pa.Array) -> url_kernels.FormBytes:
        """`normalize_array` as spans of one byte buffer, for users that need no Arrow array (lookups, MD5)."""


class _Bytes:
    """An Arrow string array's bytes in numpy: row i is data[offsets[i]:offsets[i + 1]].

    Byte-level tests are exact for the ASCII characters they look for: in UTF-8 a byte below 0x80 is always
    a whole character, never part of a multi-byte one.
    """

    def __init__(self, array: pa.Array) -> None:
        if array.offset:
            array = pa.concat_arrays([array])  # a copy that starts at offset 0
        self.array = array
        n = len(array)
        buffers = array.buffers()
        width = np.int64 if pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type) else np.int32
        if n == 0 or buffers[1] is None:
            self.offsets = np.zeros(n + 1, dtype=np.int64)
        else:
            self.offsets = np.frombuffer(buffers[1], dtype=width)[: n + 1].astype(np.int64)
        base, end = int(self.offsets[0]), int(self.offsets[-1])
        if buffers[2] is None or end == base:
            self.data = np.zeros(0, dtype=np.uint8)
        else:
            self.data = np.frombuffer(buffers[2], dtype=np.uint8)[base:end]
        self.offsets -= base
        self.starts, self.ends = self.offsets[:-1], self.offsets[1:]
        self.valid = np.asarray(array.is_valid().to_numpy(zero_copy_only=False), dtype=bool)

    def with_data(self, offsets: np.ndarray, data: np.ndarray) -> pa.Array:
        """A new array of the same type and nulls with these contents."""
        width = np.int64 if pa.types.is_large_string(self.array.type) else np.int32
        return pa.Array.from_buffers(
            self.array.type,
            len(self.array),
            [self.array.buffers()[0], pa.py_buffer(offsets.astype(width)), pa.py_buffer(data)],
            null_count=self.array.null_count,
        )


def _has_prefix(text: _Bytes, prefix: bytes) -> np.ndarray:
    rows = np.flatnonzero(text.valid & (text.ends - text.starts >= len(prefix)))
    for k, byte in enumerate(prefix):
        rows = rows[text.data[text.starts[rows] + k] == byte]
    mask = np.zeros(len(text.valid), dtype=bool)
    mask[rows] = True
    return mask


def _strip_http_bytes(text: _Bytes) -> tuple[_Bytes, np.ndarray]:
    """Strip a leading `http://` or `https://` (case-sensitive); returns (stripped, mask of rows that had one)."""
    strip = np.where(_has_prefix(text, b"https://"), 8, np.where(_has_prefix(text, b"http://"), 7, 0))
    had_scheme = strip > 0
    if not had_scheme.any():
        return text, had_scheme
    keep = np.ones(len(text.data), dtype=bool)
    for k in range(8):
        keep[text.starts[strip > k] + k] = False
    offsets = text.offsets - np.concatenate([[0], np.cumsum(strip)])
    return _Bytes(text.with_data(offsets, text.data[keep])), had_scheme


def _strip_http_scheme(lowered: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Strip a leading `http://` or `https://`; returns (stripped, mask of rows that had one)."""
    stripped, had_scheme = _strip_http_bytes(_Bytes(lowered))
    return stripped.array, had_scheme


class ThreatExchangeUrl(UrlNormalizer):
    """ThreatExchange `HASH_URL_MD5` convention: lower-case the whole URL, drop the leading `scheme://`.

    The scalar form is python-threatexchange's `normalize_url` step for step (Python's `str.lower`, `urlparse`,
    `geturl`, remove the first `scheme://`), quirks included: `urlparse` drops an empty `;params` and an empty
    query or fragment, and without a scheme the first `://` anywhere is removed. A test fuzzes both paths against
    the package itself. Where urllib refuses a URL (an unbalanced `[`), that tool raises and no list can hold its
    hash; we return the lower-cased URL so that the row is still screened by the other forms.
    """

    name: ClassVar[str] = "te"

    def normalize(self, url: str) -> str:
        lowered = url.lower()
        try:
            parts = urlparse(lowered)
        except ValueError:
            return lowered
        return parts.geturl().replace(f"{parts.scheme}://", "", 1)

    def normalize_bytes(self, urls: pa.Array) -> url_kernels.FormBytes:
        return url_forms(urls).te


def _flag(arr: pa.Array, pattern: str) -> np.ndarray:
    return np.asarray(pc.fill_null(pc.match_substring_regex(arr, pattern), False).to_numpy(zero_copy_only=False))


def _rows(mask: np.ndarray, urls: pa.Array) -> np.ndarray:
    present = ~np.asarray(pc.is_null(urls).to_numpy(zero_copy_only=False), dtype=bool)
    return np.flatnonzero(mask & present)


def _netloc_host(netloc: str) -> str:
    """The host of a netloc as written (urllib's `hostname` lower-cases it with `str.lower`, whose final-sigma
    rule is not the UTS #46 mapping WHATWG applies)."""
    host = netloc.rpartition("@")[2]
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host[1:]
    return host.partition(":")[0]


@lru_cache(maxsize=65536)  # hosts repeat across rows; IDNA mapping is the dear part of an unusual row
def _canonical_host(host: str) -> str:
    """Host as WHATWG URL parsing writes it: escapes decoded, UTS #46 mapping (non-transitional, so `ß` stays
    `ß`), each non-ASCII label in punycode, lower-case, no trailing dot. Like WHATWG (CheckHyphens off) a label
    such as `hrx-` is kept; a host IDNA cannot map is kept lower-cased rather than failing the row."""
    if "%" in host:
        host = unquote(host)
    host = host.rstrip(".")
    if not host.isascii():
        try:
            host = idna.uts46_remap(host, std3_rules=False, transitional=False).rstrip(".")
            host = ".".join(
                label if label.isascii() else "xn--" + label.encode("punycode").decode("ascii")
                for label in host.split(".")
            )
        except (idna.IDNAError, UnicodeError, ValueError):
            return host.lower()
    return host.lower()


_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _canonical_part(part: str, safe: str) -> str:
    """Percent-encoding normalised (RFC 3986 6.2.2): escapes of unreserved characters decoded, other
    escapes upper-cased, characters that need it (non-ASCII as UTF-8, a stray '%') encoded."""
    out: list[str] = []
    pos = 0
    for match in _ESCAPE.finditer(part):
        out.append(quote(part[pos : match.start()], safe=safe))
        char = chr(int(match.group()[1:], 16))
        out.append(char if char in _UNRESERVED else match.group().upper())
        pos = match.end()
    out.append(quote(part[pos:], safe=safe))
    return "".join(out)


def canonical_percent_encoding(text: str, *, query: bool) -> str:
    """A path (or, with `query`, a query) in the canonical form's percent-encoding (RFC 3986 6.2.2)."""
    return _canonical_part(text, _SAFE_QUERY if query else _SAFE_PATH)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4, for an absolute path."""
    out: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if len(out) > 1:
                out.pop()
        elif segment != ".":
            out.append(segment)
    result = "/".join(out)
    if path.endswith(("/.", "/..")):
        result += "/"
    return result if result.startswith("/") else "/" + result


class CanonicalUrl(UrlNormalizer):
    """Canonical form `host[:port]/path[?query]`: IDNA lower-case host without trailing dot, no default
    port, no userinfo or fragment, RFC 3986 dot segments removed, percent-encoding normalised. The scheme is
    dropped, since lists and datasets mix http and https for the same resource."""

    name: ClassVar[str] = "canonical"

    def normalize(self, url: str) -> str:
        url = url.strip(_LEADING_JUNK).translate(_UNSAFE_URL_CHARS)
        scheme = _SCHEME.match(url.lower())
        if scheme is not None and scheme.group(1) in _SPECIAL_SCHEMES:
            # WHATWG: after a special scheme any number of slashes (even none) leads to the host.
            url = scheme.group(1) + "://" + url[scheme.end() :].lstrip("/")
        elif scheme is None or "//" not in url[:16]:
            url = "http://" + url.lstrip("/")
        try:
            parts = urlsplit(url)
            host = _canonical_host(_netloc_host(parts.netloc))
            port = parts.port
        except (ValueError, UnicodeError):
            return url.lower()
        netloc = f"[{host}]" if ":" in host else host  # an IPv6 literal keeps its brackets, as WHATWG writes it
        if port is not None and str(port) != _DEFAULT_PORTS.get(parts.scheme):
            netloc += f":{port}"
        # Escapes first, then dot segments (RFC 3986 6.2.2 order; WHATWG agrees): `%2e%2e` is a `..` segment.
        path = _canonical_part(parts.path or "/", _SAFE_PATH)
        out = netloc + (_remove_dot_segments(path) if "." in path else path)
        if parts.query:
            out += "?" + _canonical_part(parts.query, _SAFE_QUERY)
        return out

    def normalize_bytes(self, urls: pa.Array) -> url_kernels.FormBytes:
        return url_forms(urls).canonical


NORMALIZERS: dict[str, UrlNormalizer] = {n.name: n for n in (ThreatExchangeUrl(), CanonicalUrl())}


def url_forms(urls: pa.Array) -> url_kernels.UrlForms:
    """Both normal forms of a batch's URLs in one compiled pass (a scan needs both: url banks look each up, and
    URL-hash banks hash each), with the scalar references for the rows the kernel hands back."""
    return url_kernels.url_forms(urls, NORMALIZERS["te"].normalize, NORMALIZERS["canonical"].normalize, _canonical_host)


def host_of(url: str) -> str:
    """Host of a URL (IDNA, lower-case, no port); empty when there is none."""
    url = url.strip(_LEADING_JUNK)
    if "://" not in url[:16]:
        url = "http://" + url
    try:
        return _canonical_host(_netloc_host(urlsplit(url).netloc))
    except ValueError:
        return ""


def hosts_array(urls: pa.Array) -> pa.Array:
    """Vectorised host extraction; unusual rows (userinfo, non-ASCII, no scheme) use `host_of`."""
    stripped, had_scheme = _strip_http_scheme(pc.utf8_lower(urls))
    host = pc.list_element(pc.split_pattern(stripped, "/", max_splits=1), 0)
    host = pc.list_element(pc.split_pattern(host, "?", max_splits=1), 0)
    host = pc.list_element(pc.split_pattern(host, "#", max_splits=1), 0)
    host = pc.list_element(pc.split_pattern(host, ":", max_splits=1), 0)
    rows = _rows(~had_scheme | _flag(urls, r"[^\x21-\x7e]|[@\\\[]"), urls)
    host = pc.utf8_rtrim(host, ".")
    if len(rows):
        fixed = [None if u is None else host_of(u) for u in urls.take(pa.array(rows)).to_pylist()]
        replacement = np.empty(len(urls), dtype=object)
        replacement[rows] = fixed
        flag = np.zeros(len(urls), dtype=bool)
        flag[rows] = True
        host = pc.if_else(pa.array(flag), pa.array(replacement, type=pa.string()), host)
    return host


def normalize_domain(entry: str) -> str:
    """A domain-list entry in the form hosts are compared in (lower-case IDNA, no wildcard or dots)."""
    entry = entry.strip()
    if "://" in entry or "/" in entry:
        entry = host_of(entry)
    entry = entry.lstrip("*").strip(".")
    return _canonical_host(entry) if entry else ""


_PSL = None


def registrable_domain(host: str) -> str | None:
    """Registrable domain (eTLD+1) from the Public Suffix List bundled with `publicsuffixlist`, offline."""
    global _PSL
    if _PSL is None:
        from publicsuffixlist import PublicSuffixList

        _PSL = PublicSuffixList()
    if not host:
        return None
    try:
        return ipaddress.ip_address(host.strip("[]")).compressed  # an IP literal is its own site
    except ValueError:
        return _PSL.privatesuffix(host)
