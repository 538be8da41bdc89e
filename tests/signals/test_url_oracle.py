"""URL normal forms against independent implementations, fuzzed over the shapes real URLs take.

- `te` must be byte for byte python-threatexchange's `normalize_url` (what `UrlMD5Signal` hashes for
  ThreatExchange `HASH_URL_MD5`), so a hotline's URL-MD5 list built with that tool matches; the scalar
  reference and the vectorised Arrow path are both held to it.
- `canonical` is checked against a WHATWG URL parser (ada-url): host, port, path and query agree once the
  parser's output is put through our percent-encoding normalisation, except where a documented choice of ours
  differs (listed in `_whatwg_divergence`).
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlsplit

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from safeset.signals.urls import NORMALIZERS, canonical_percent_encoding

threatexchange_common = pytest.importorskip("threatexchange.common")
url_md5 = pytest.importorskip("threatexchange.signal_type.url_md5")
ada_url = pytest.importorskip("ada_url")

# Letters whose lower-casing is special somewhere (Python's str.lower() vs ICU/utf8proc): dotted capital I,
# capital sharp s, titlecase digraphs, final sigma, Kelvin/Angstrom signs, Cherokee, Georgian Mtavruli, ...
SPECIAL_LETTERS = "İIıẞßǅǄǆΣσςΑΩKÅĲŁØÆꭰᏸᲐẞÐǈǋǲΪ̈ΐ"
ASCII_WORD = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."
PATH_CHARS = ASCII_WORD + "~!$&'()*+,;=:@%/ éü中한字" + SPECIAL_LETTERS
IDN_LABELS = ["bücher", "例え", "münchen", "İstanbul", "straße", "ΑΘΗΝΑ", "한국", "xn--bcher-kva", "пример", "ǅemal"]


def _escape() -> st.SearchStrategy[str]:
    hex_digit = st.sampled_from("0123456789abcdefABCDEF")
    good = st.tuples(hex_digit, hex_digit).map(lambda pair: "%" + "".join(pair))
    return st.one_of(good, st.sampled_from(["%", "%2", "%zz", "%2e", "%2E", "%2F", "%41", "%7e", "%C3%A9", "%e2%80"]))


def _segment() -> st.SearchStrategy[str]:
    piece = st.one_of(
        st.text(alphabet=PATH_CHARS, max_size=6), _escape(), st.sampled_from([".", "..", "&amp;", "&#47;"])
    )
    return st.lists(piece, max_size=4).map("".join)


def _label() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=10),
        st.sampled_from(IDN_LABELS),
        st.text(alphabet=SPECIAL_LETTERS + "abc", min_size=1, max_size=5),
    )


@st.composite
def real_urls(draw: st.DrawFn) -> str:
    """A URL as found in web-scale metadata: mostly well formed, with the irregularities lists meet."""
    scheme = draw(st.sampled_from(["https://", "http://", "HTTPS://", "Http://", "", "//", "ftp://", "https:"]))
    userinfo = draw(st.sampled_from(["", "", "", "user@", "User:Pw@", "a%40b@"]))
    labels = draw(st.lists(_label(), min_size=1, max_size=3))
    tld = draw(st.sampled_from(["com", "org", "DE", "co.uk", "中国", "рф", "com."]))
    host = draw(st.one_of(st.just(".".join([*labels, tld])), st.sampled_from(["127.0.0.1", "[::1]", "0x7f.1"])))
    port = draw(st.sampled_from(["", "", "", ":80", ":443", ":8080", ":", ":0443"]))
    path = "/".join(draw(st.lists(_segment(), max_size=4)))
    slash = draw(st.sampled_from(["/", "/", "", "//"]))
    query = draw(st.one_of(st.just(""), st.lists(_segment(), max_size=3).map(lambda parts: "?" + "&".join(parts))))
    fragment = draw(st.one_of(st.just(""), _segment().map(lambda text: "#" + text)))
    url = scheme + userinfo + host + port + slash + path + query + fragment
    wrap = draw(st.sampled_from(["", "", "", " ", "\t", "\n"]))
    return wrap + url + draw(st.sampled_from(["", "", " ", ";", "?", "#"]))


def _threatexchange(url: str) -> str | None:
    """The oracle's normal form, or None where it raises (urllib refuses the URL: it has no HASH_URL_MD5)."""
    try:
        return threatexchange_common.normalize_url(url).decode("utf-8")
    except ValueError:
        return None


FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.lists(real_urls(), min_size=1, max_size=12))
@example(["https://example.org/İstanbul", "https://EXAMPLE.org/x;", "https://a.com/x;?q", "https://a.com/ΑΣ"])
@example(["HTTPS://Straße.de/ẞ", "https://ǅ.com/Ǆ", "http://a.com/%2E%2e/b", "https://a.com;", "a.com/x?u=http://b"])
def test_te_form_equals_threatexchange(urls: list[str]) -> None:
    te = NORMALIZERS["te"]
    vector = te.normalize_array(pa.array(urls, type=pa.string())).to_pylist()
    for url, got in zip(urls, vector, strict=True):
        scalar = te.normalize(url)
        assert got == scalar, url
        expected = _threatexchange(url)
        if expected is not None:
            assert _same_query_quotes(scalar) == _same_query_quotes(expected), url
            # and the digest a URL-MD5 bank holds is the one python-threatexchange publishes
            assert hashlib.md5(scalar.encode()).hexdigest() == url_md5.UrlMD5Signal.hash_from_str(url)


def test_te_turkish_dotted_capital_keeps_combining_dot() -> None:
    got = NORMALIZERS["te"].normalize_array(pa.array(["https://example.org/İstanbul"])).to_pylist()
    assert got == ["example.org/i\u0307stanbul"]


# --------------------------------------------------------------------------------------------------------------
# canonical against WHATWG


def _parse_whatwg(url: str) -> ada_url.URL | None:
    candidate = url.strip().replace("\t", "").replace("\n", "").replace("\r", "")
    scheme = re.match(r"^([a-z][a-z0-9+.\-]*):", candidate.lower())
    if scheme is None or (scheme.group(1) not in ("http", "https", "ftp") and "//" not in candidate[:16]):
        candidate = "http://" + candidate.lstrip("/")  # as our form reads a URL without a scheme
    try:
        return ada_url.URL(candidate)
    except ValueError:
        return None


def _whatwg(url: str) -> str | None:
    """host[:port]/path[?query] from ada-url, in our percent-encoding normalisation; None where it refuses."""
    parsed = _parse_whatwg(url)
    if parsed is None:
        return None
    if parsed.protocol not in ("http:", "https:", "ftp:"):
        return None
    host = parsed.hostname.rstrip(".")
    netloc = host + (f":{parsed.port}" if parsed.port else "")
    path = canonical_percent_encoding(parsed.pathname or "/", query=False)
    query = canonical_percent_encoding(parsed.search[1:], query=True) if len(parsed.search) > 1 else ""
    return netloc + path + ("?" + query if query else "")


def _whatwg_divergence(url: str) -> str | None:
    """Deliberate differences between our canonical form and WHATWG parsing, each with its reason."""
    body = url.strip()
    if "\\" in body:
        return "WHATWG reads '\\' as '/' in http(s) URLs; we keep it as written (urllib and HTTP clients do)"
    host = urlsplit(body if "//" in body[:12] else "http://" + body.lstrip("/")).netloc.rpartition("@")[2]
    if "%" in host:
        return "WHATWG refuses or rewrites some percent-escaped hosts urllib accepts; both decode the rest alike"
    return None


def _ipv4_number_form(url: str, ours: str) -> bool:
    """WHATWG rewrites IPv4 number forms (`0x7f.1` is `127.0.0.1`); we keep a host as written (deliberate: a
    list holds the host its source wrote, and such hosts are vanishingly rare in real metadata)."""
    parsed = _parse_whatwg(url)
    return parsed is not None and parsed.host_type == 1 and not ours.startswith(parsed.hostname)


def _same_query_quotes(form: str) -> str:
    """WHATWG escapes `'` in the query of http(s) URLs; we keep it (an RFC 3986 sub-delimiter) as written."""
    head, mark, query = form.partition("?")
    return head + mark + query.replace("'", "%27")


@FUZZ
@given(st.lists(real_urls(), min_size=1, max_size=12))
@example(["https://a.com/x/%2e%2E/y", "https://A.com:443/./b/../c?", "https://bücher.de/ä?q=é", "http://a.com"])
def test_canonical_form_agrees_with_whatwg(urls: list[str]) -> None:
    canonical = NORMALIZERS["canonical"]
    vector = canonical.normalize_array(pa.array(urls, type=pa.string())).to_pylist()
    for url, got in zip(urls, vector, strict=True):
        scalar = canonical.normalize(url)
        assert got == scalar, url
        expected = _whatwg(url)
        if expected is None or _whatwg_divergence(url) is not None or _ipv4_number_form(url, scalar):
            continue
        assert _same_query_quotes(scalar) == _same_query_quotes(expected), url
