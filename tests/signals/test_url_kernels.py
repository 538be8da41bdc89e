"""The compiled URL forms and URL digests (`url_kernels.py`) against the exact scalar reference and hashlib.

The scalar reference in `urls.py` is the oracle (itself held to python-threatexchange and a WHATWG parser in
`test_url_oracle.py`); here the compiled path must give the same bytes for every fuzzed URL, in shapes that
reach the compiled path (plain http(s) URLs) as well as the ones it hands back to the reference.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from safeset.signals import url_kernels
from safeset.signals.urls import NORMALIZERS

from .test_url_oracle import PATH_CHARS, SPECIAL_LETTERS, _escape, real_urls

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def plain_urls(draw: st.DrawFn) -> str:
    """http(s) URLs with ASCII hosts, the shapes the kernels handle themselves, with the odd thing mixed in."""
    scheme = draw(st.sampled_from(["https://", "http://", "HTTP://", "https:", "https:///"]))
    host = draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,12}[A-Za-z0-9]", fullmatch=True))
    port = draw(st.sampled_from(["", "", ":80", ":443", ":8080", ":0", ":65536", ":08"]))
    piece = st.one_of(
        st.text(alphabet=PATH_CHARS + '"<>\\^`{|}#?', max_size=6), _escape(), st.sampled_from([".", ".."])
    )
    path = "/".join(draw(st.lists(st.lists(piece, max_size=3).map("".join), max_size=4)))
    query = draw(st.one_of(st.just(""), st.lists(piece, max_size=3).map(lambda p: "?" + "&".join(p))))
    fragment = draw(st.sampled_from(["", "", "#", "#top", "#a?b", "#" + SPECIAL_LETTERS[:3]]))
    return scheme + host + port + draw(st.sampled_from(["/", "", "//"])) + path + query + fragment


def _both_paths(urls: list[str | None]) -> None:
    array = pa.array(urls, type=pa.string())
    for name in ("te", "canonical"):
        reference = NORMALIZERS[name]
        expected = [None if url is None else reference.normalize(url) for url in urls]
        assert reference.normalize_array(array).to_pylist() == expected, name  # as scans call it
        # The kernels with no host mapping: every non-ASCII host of the canonical form takes the scalar path.
        forms = url_kernels.url_forms(array, NORMALIZERS["te"].normalize, NORMALIZERS["canonical"].normalize)
        assert forms.form(name).to_arrow().to_pylist() == expected, name
        # Sliced and large_string arrays give the same answer.
        assert reference.normalize_array(array.slice(1)).to_pylist() == expected[1:], name
        large = array.cast(pa.large_string())
        assert reference.normalize_array(large).to_pylist() == expected, name


@FUZZ
@given(st.lists(st.one_of(plain_urls(), real_urls(), st.none()), min_size=1, max_size=16))
@example(["https://a.com/p#", "https://a.com/p?#x", "https://a.com/p;#x", "https://a.com/p#x;", "http://a.com?x"])
@example(["https://A.com:443/x/%2e%2E/y?", "https://a.com/%7e%41%zz%", "https://a.com/é ü", "http://a.com:8080"])
@example(["https://a.com/x?u=http://b.org/", "https://a.com/ΑΣ", "https://a.com/İ", "http://a.com/%", None])
@example(["https://a.com/./", "https://a.com/.x/..y", "https://a.com/%2e", "https://a.com/a?./..", "https://a.com/?"])
# The edges of the simple kinds (forms as spans of the URL; `te` lower-cased where only the path has upper case).
@example(["http://a.com/x/.y", "http://a.com/x?", "http://a.com./x", "http://a.com", "https://a.com/A?B=C", None])
@example(["http://a_b.com/~x", "http://a.com/x;y", "http://a.com//x", "https://A.com/x", "https://a.com:443/x"])
@example(["http://a.com/x?y?", "http://a.com/a/..", "http://a.com/%41", "http://a.com/X#Y", "https:/a.com/x", "http:"])
def test_compiled_forms_equal_the_scalar_reference(urls: list[str | None]) -> None:
    _both_paths(urls)


def _md5_paths() -> list[bool]:
    """Both MD5 paths: OpenSSL's (where this Python's libcrypto has `MD5`) and the compiled rounds."""
    return [True, False] if url_kernels.openssl_md5() is not None else [False]


@FUZZ
@given(st.lists(st.one_of(st.text(max_size=80), st.binary(max_size=150).map(lambda b: b.hex())), max_size=20))
def test_url_digests_equal_hashlib(values: list[str]) -> None:
    array = pa.array([*values, None], type=pa.string())
    for algorithm in ("md5", "sha1", "sha256"):
        digests, valid = url_kernels.digest_strings(array, algorithm)
        assert valid.tolist() == [True] * len(values) + [False]
        expected = [getattr(hashlib, algorithm)(v.encode()).digest() for v in values]
        assert [bytes(row) for row in digests[: len(values)]] == expected
        assert not digests[-1].any()
    source = url_kernels.string_buffers(array)
    for use_openssl in _md5_paths():
        digests, _ = url_kernels.digest_spans(
            source.data, source.offsets[:-1], source.offsets[1:], source.valid, "md5", use_openssl=use_openssl
        )
        assert [bytes(row) for row in digests[: len(values)]] == [hashlib.md5(v.encode()).digest() for v in values]
        assert not digests[-1].any()


@pytest.mark.parametrize("length", [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000])
def test_md5_at_block_boundaries(length: int) -> None:
    value = "".join(chr(97 + i % 26) for i in range(length))
    source = url_kernels.string_buffers(pa.array(["pad", value]))
    for use_openssl in _md5_paths():
        digests, _ = url_kernels.digest_spans(
            source.data, source.offsets[:-1], source.offsets[1:], source.valid, "md5", use_openssl=use_openssl
        )
        assert bytes(digests[1]) == hashlib.md5(value.encode()).digest(), use_openssl


def test_openssl_md5_is_found_where_hashlib_is_built_on_openssl() -> None:
    """On Linux CPython links hashlib to libcrypto; if this fails, the fast MD5 path is silently unused."""
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("libcrypto lookup is only asserted on Linux")
    assert url_kernels.openssl_md5() is not None


def test_unusual_rows_are_counted_as_fallback() -> None:
    urls = ["https://a.com/x", "https://bücher.de/x", "HTTP://A.COM/Y", "ftp://a.com/x", None]
    url_kernels.STATS.reset()
    NORMALIZERS["te"].normalize_bytes(pa.array(urls))
    # canonical: the IDN host and the ftp URL; te: the IDN host (urllib's NFKC check) and ftp's ':'.
    assert url_kernels.STATS.rows == {"canonical": 4, "te": 4}
    assert url_kernels.STATS.fallback == {"canonical": 2, "te": 2}
    assert "canonical: 2 of 4 rows" in str(url_kernels.STATS)


def test_python_lower_table_matches_str_lower() -> None:
    table = url_kernels.python_lower_table()
    for char in "AZÀÞĀǅǄΣΑẞİIKÅᏸᲐ":
        lowered = char.lower()
        if len(lowered) == 1 and char != "Σ":
            assert chr(table[ord(char)]) == lowered
        else:
            assert table[ord(char)] == 0xFFFFFFFF


@FUZZ
@given(st.lists(st.one_of(plain_urls(), real_urls(), st.none()), min_size=1, max_size=24), st.integers(0, 3))
@example(["https://bücher.de/a", "https://a.com/x", "https://bücher.de/b"], 0)  # fallback rows first and last
@example(["https://bücher.de/a", None, "https://bücher.de/b", "https://bücher.de/c"], 1)
def test_form_bytes_and_their_digests_equal_the_arrow_path(urls: list[str | None], cut: int) -> None:
    """The shared byte buffer a batch's forms live in (the URLs' own bytes, the rewritten forms, and the rows the
    scalar path fixed, as spans) holds exactly the reference's strings, and MD5 / SHA-1 straight from it equal
    hashlib's of each string."""
    array = pa.array(["https://pad.example/"] * cut + urls, type=pa.string()).slice(cut)
    for name in ("te", "canonical"):
        reference = NORMALIZERS[name]
        form = reference.normalize_bytes(array)
        assert ((form.starts <= form.ends) & (form.ends <= len(form.data))).all()
        rows = [None if form.row(i) is None else form.row(i).decode() for i in range(len(urls))]  # type: ignore[union-attr]
        expected = [None if url is None else reference.normalize(url) for url in urls]
        assert rows == expected, name
        assert form.to_arrow().to_pylist() == expected, name
        for algorithm, use_openssl in [("md5", True), ("md5", False), ("sha1", True)]:
            digests, valid = url_kernels.digest_spans(
                form.data, form.starts, form.ends, form.valid, algorithm, use_openssl=use_openssl
            )
            assert valid.tolist() == [url is not None for url in urls]
            for row, value in enumerate(expected):
                wanted = None if value is None else hashlib.new(algorithm, value.encode()).digest()
                assert bytes(digests[row]) == (wanted or bytes(digests.shape[1])), (algorithm, value)


@FUZZ
@given(st.lists(st.one_of(plain_urls(), real_urls(), st.none()), min_size=1, max_size=24))
@example(["https://a.com/x", "https://a.com/X", None, "https://bücher.de/a", "HTTPS://A.COM/x?"])
def test_digests_shared_between_identical_forms_equal_hashlib(urls: list[str | None]) -> None:
    """A batch's second form takes the first's digest where the two are byte-identical (and only there): every
    digest still equals hashlib's of its own form, in either order of asking."""
    from safeset.io.batch import RowBatch
    from safeset.signals.compute import Signals

    array = pa.array(urls, type=pa.string())
    expected = {name: [None if u is None else norm.normalize(u) for u in urls] for name, norm in NORMALIZERS.items()}
    for order in (("te", "canonical"), ("canonical", "te")):
        signals = Signals(RowBatch("t", np.arange(len(urls)), None, urls=array), [])
        for name in order:
            digests, valid = signals.url_digest("md5", name)
            assert valid.tolist() == [u is not None for u in urls]
            for row, value in enumerate(expected[name]):
                wanted = bytes(16) if value is None else hashlib.md5(value.encode()).digest()
                assert bytes(digests[row]) == wanted, (name, value)
        same = signals.url_forms_equal("te", "canonical")
        pairs = zip(expected["te"], expected["canonical"], strict=True)
        assert same.tolist() == [t is not None and t == c for t, c in pairs]


unicode_hosts = st.text(
    alphabet=st.one_of(
        st.sampled_from("abcXYZ09-.üßİΣＡ℀＃？／＠：ｆ\u2024\u00aa"),
        st.characters(codec="utf-8", min_codepoint=0x80, exclude_categories=("Cs",)),
    ),
    min_size=1,
    max_size=8,
)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["https://", "http://", "HTTP://"]), unicode_hosts, st.sampled_from(
    ["", "/", "/A/b?q=1", ":8080/x", "#f"]
)).map("".join), min_size=1, max_size=12))
@example(["https://a℀b.com/x", "https://bücher.de/X", "https://ＡＢ.com/x", "http://x＃y.com/", "https://İ.de/"])
@example(["https://\xad/A/b?q=1", "https://\xad\xad.de/x", "https://a\u3002b/x"])  # hosts mapped to nothing
def test_unicode_hosts_in_the_te_kernel_equal_the_scalar_reference(urls: list[str]) -> None:
    """Non-ASCII hosts go through the te kernel once urllib's NFKC check of the host passes (asked per host):
    hosts whose NFKC form holds `/ ? # @ :` (urllib raises) and all others give the reference's bytes."""
    _both_paths(urls)
