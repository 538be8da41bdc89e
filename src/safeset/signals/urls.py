"""URL normal forms, as pluggable normalisers, each with a scalar reference and a vectorised Arrow path.

Hash lists from hotlines and partners are built under different conventions, so a row's URL is put in
every normal form a bank asks for. The vectorised path covers the plain ASCII `http(s)://` URLs that
make up almost all of a web dataset; anything unusual goes through the scalar reference, so both
paths give the same answer (a test checks this on awkward URLs).
"""

from __future__ import annotations

import ipaddress
import re
from abc import ABC, abstractmethod
from typing import ClassVar
from urllib.parse import quote, urlsplit, urlunsplit

import idna
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):")
_UNSAFE_URL_CHARS = str.maketrans("", "", "\t\r\n")
_LEADING_JUNK = "".join(chr(c) for c in range(0x21))  # C0 controls and space, as urlsplit strips them
_DEFAULT_PORTS = {"http": "80", "https": "443"}
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

    @abstractmethod
    def normalize_array(self, urls: pa.Array) -> pa.Array:
        """Vectorised equivalent over an Arrow string array (nulls stay null)."""

    def _scalar_rows(self, urls: pa.Array, rows: np.ndarray, out: pa.Array) -> pa.Array:
        """Replace `rows` of `out` with the scalar reference applied to the original URLs."""
        if len(rows) == 0:
            return out
        originals = urls.take(pa.array(rows)).to_pylist()
        fixed = [None if u is None else self.normalize(u) for u in originals]
        mask = np.zeros(len(urls), dtype=bool)
        mask[rows] = True
        replacement = np.empty(len(urls), dtype=object)
        replacement[rows] = fixed
        return pc.if_else(pa.array(mask), pa.array(replacement, type=pa.string()), out)


def _strip_http_scheme(lowered: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Strip a leading `http://` or `https://`; returns (stripped, mask of rows that had one)."""
    is_https = pc.fill_null(pc.starts_with(lowered, "https://"), False)
    is_http = pc.fill_null(pc.starts_with(lowered, "http://"), False)
    stripped = pc.if_else(
        is_https,
        pc.utf8_slice_codeunits(lowered, 8),
        pc.if_else(is_http, pc.utf8_slice_codeunits(lowered, 7), lowered),
    )
    return stripped, np.asarray(pc.or_(is_https, is_http).to_numpy(zero_copy_only=False), dtype=bool)


class ThreatExchangeUrl(UrlNormalizer):
    """ThreatExchange `HASH_URL_MD5` convention: lower-case the whole URL, drop the leading `scheme://`.

    The scalar form follows python-threatexchange's `normalize_url` (urlsplit, geturl, remove the first
    `scheme://`), quirks included, so that hashes agree with lists built by that tool.
    """

    name: ClassVar[str] = "te"

    def normalize(self, url: str) -> str:
        lowered = url.lower()
        try:
            parts = urlsplit(lowered)
        except ValueError:
            return lowered
        return urlunsplit(parts).replace(f"{parts.scheme}://", "", 1)

    def normalize_array(self, urls: pa.Array) -> pa.Array:
        lowered = pc.utf8_lower(urls)
        stripped, had_scheme = _strip_http_scheme(lowered)
        # Rows where urlsplit/geturl would change more than the scheme take the reference path.
        odd = _flag(lowered, r"[\x00-\x20#\[\]]|\?$")
        odd |= _literal(stripped, "://")
        odd |= ~had_scheme & _literal(lowered, ":")
        return self._scalar_rows(urls, _rows(odd, urls), stripped)


def _flag(arr: pa.Array, pattern: str) -> np.ndarray:
    return np.asarray(pc.fill_null(pc.match_substring_regex(arr, pattern), False).to_numpy(zero_copy_only=False))


def _literal(arr: pa.Array, needle: str) -> np.ndarray:
    return np.asarray(pc.fill_null(pc.match_substring(arr, needle), False).to_numpy(zero_copy_only=False))


def _rows(mask: np.ndarray, urls: pa.Array) -> np.ndarray:
    present = ~np.asarray(pc.is_null(urls).to_numpy(zero_copy_only=False), dtype=bool)
    return np.flatnonzero(mask & present)


def _canonical_host(host: str) -> str:
    host = host.rstrip(".")
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError:
            host = host.encode("idna").decode("ascii")
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


# URLs the canonical vector path would get wrong: a character percent-encoding would change, an escape that
# _canonical_part would rewrite (not `%` + two upper-case hex digits, or one that encodes an unreserved
# character: 2D 2E 30-39 41-5A 5F 61-7A 7E), a dot segment, or an empty query. Upper-case escapes of
# other characters (`%20`, `%C3%A9`) are already canonical and stay on the vector path.
_CANONICAL_ODD = (
    r"[^A-Za-z0-9/:@!$&'()*+,;=._~?%-]"
    r"|%(?:[^0-9A-F]|.[^0-9A-F]|.?$|2[DE]|3[0-9]|4[1-9A-F]|5[0-9AF]|6[1-9A-F]|7[0-9AE])"
    r"|/\.\.?(?:[/?]|$)|\?$"
)


class CanonicalUrl(UrlNormalizer):
    """Canonical form `host[:port]/path[?query]`: IDNA lower-case host without trailing dot, no default
    port, no userinfo or fragment, RFC 3986 dot segments removed, percent-encoding normalised. The scheme is
    dropped, since lists and datasets mix http and https for the same resource."""

    name: ClassVar[str] = "canonical"

    def normalize(self, url: str) -> str:
        url = url.strip(_LEADING_JUNK).translate(_UNSAFE_URL_CHARS)
        if not _SCHEME.match(url.lower()) or "//" not in url[:16]:
            url = "http://" + url.lstrip("/")
        try:
            parts = urlsplit(url)
            host = _canonical_host(parts.hostname or "")
            port = parts.port
        except (ValueError, UnicodeError):
            return url.lower()
        netloc = host
        if port is not None and str(port) != _DEFAULT_PORTS.get(parts.scheme):
            netloc += f":{port}"
        path = _remove_dot_segments(parts.path) if "." in parts.path else (parts.path or "/")
        out = netloc + _canonical_part(path, _SAFE_PATH)
        if parts.query:
            out += "?" + _canonical_part(parts.query, _SAFE_QUERY)
        return out

    def normalize_array(self, urls: pa.Array) -> pa.Array:
        rest, had_scheme = _strip_http_scheme(urls)
        # Give every row a path so that splitting on the first "/" always yields host and path.
        rest = pc.if_else(_as_arrow(_literal(rest, "/")), rest, pc.binary_join_element_wise(rest, "/", ""))
        parts = pc.split_pattern(rest, "/", max_splits=1)
        host = pc.utf8_lower(pc.list_element(parts, 0))
        path = pc.list_element(parts, 1)
        vector = pc.binary_join_element_wise(host, path, "/")
        # The vector path is exact only for plain URLs: printable ASCII that percent-encoding leaves alone,
        # a bare host (no port, userinfo, query, '%' or trailing dot) and no dot segments.
        odd = ~had_scheme
        odd |= _flag(urls, _CANONICAL_ODD)
        odd |= _flag(host, r"[:@?%]|\.$|^$")
        return self._scalar_rows(urls, _rows(odd, urls), vector)


def _as_arrow(mask: np.ndarray) -> pa.Array:
    return pa.array(mask, type=pa.bool_())


NORMALIZERS: dict[str, UrlNormalizer] = {n.name: n for n in (ThreatExchangeUrl(), CanonicalUrl())}


def host_of(url: str) -> str:
    """Host of a URL (IDNA, lower-case, no port); empty when there is none."""
    url = url.strip(_LEADING_JUNK)
    if "://" not in url[:16]:
        url = "http://" + url
    try:
        return _canonical_host(urlsplit(url).hostname or "")
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
