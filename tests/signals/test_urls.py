from __future__ import annotations

import random

import pyarrow as pa
import pytest

from safeset.signals.urls import NORMALIZERS, host_of, hosts_array, normalize_domain, registrable_domain

AWKWARD = [
    "https://www.Example.com/A/b.jpg?x=1",
    "http://ex.com",
    "HTTP://EX.com/Path",
    "https://ex.com:443/a/./b/../c",
    "https://ex.com:8080/a",
    "https://user:pw@ex.com/p",
    "https://bücher.de/ä.jpg",
    "ex.com/path",
    "//ex.com/path",
    "https://ex.com/a%2fb%7e%41",
    "https://ex.com/a b",
    "https://ex.com/?",
    "https://ex.com./x#frag",
    "ftp://x.org/a",
    "https://x.com/r?u=http://y.com/z",
    " https://ex.com/lead",
    "https://ex.com/tab\there",
    "https://[::1]:80/x",
    "https://[bad/x",
    "https://ex.com?q=1",
    "https://ex.com/%zz",
    "https://ex.com/a/../../b",
    "https://EX.COM/UPPER/Path.JPG",
    "mailto:someone",
    "https:////0c",
    "http:///path/only",
    "",
]


@pytest.mark.parametrize("name", sorted(NORMALIZERS))
def test_vector_path_equals_scalar_reference(name: str) -> None:
    normalizer = NORMALIZERS[name]
    rng = random.Random(7)
    alphabet = "abcXYZ09-._~/?=&%#:@ é中"
    generated = [
        rng.choice(["https://", "http://", "HTTPS://", ""])
        + "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30)))
        for _ in range(400)
    ]
    urls = [*AWKWARD, *generated, None]
    vector = normalizer.normalize_array(pa.array(urls, type=pa.string())).to_pylist()
    for url, got in zip(urls, vector, strict=True):
        assert got == (None if url is None else normalizer.normalize(url)), url


def test_threatexchange_form_lowercases_and_strips_scheme() -> None:
    te = NORMALIZERS["te"]
    assert te.normalize("HTTPS://WWW.Example.COM/Some/Path.JPG") == "www.example.com/some/path.jpg"
    assert te.normalize("http://example.com") == "example.com"
    assert te.normalize("example.com/a") == "example.com/a"


def test_canonical_form() -> None:
    canonical = NORMALIZERS["canonical"]
    assert canonical.normalize("HTTPS://WWW.Example.COM:443/A/./b/../C.jpg#x") == "www.example.com/A/C.jpg"
    assert canonical.normalize("http://example.com") == "example.com/"
    assert canonical.normalize("http://example.com:8080/x") == "example.com:8080/x"
    assert canonical.normalize("https://user@example.com/%7euser/%2f") == "example.com/~user/%2F"
    assert canonical.normalize("https://bücher.de/ä") == "xn--bcher-kva.de/%C3%A4"
    assert canonical.normalize("http://a.com/x") == canonical.normalize("https://A.COM/x")


def test_hosts_vector_equals_scalar() -> None:
    urls = [u for u in AWKWARD if u] + ["https://Sub.Example.co.uk:8443/x?y#z"]
    got = hosts_array(pa.array(urls)).to_pylist()
    assert got == [host_of(u) for u in urls]
    assert got[-1] == "sub.example.co.uk"


def test_domains_and_public_suffix() -> None:
    assert normalize_domain("*.Example.COM.") == "example.com"
    assert normalize_domain("https://www.example.org/path") == "www.example.org"
    assert registrable_domain("a.b.example.co.uk") == "example.co.uk"
    assert registrable_domain("user.github.io") == "user.github.io"
    assert registrable_domain("127.0.0.1") == "127.0.0.1"


def test_hosts_use_the_uts46_mapping_whatwg_uses() -> None:
    # urllib's `hostname` lower-cases with str.lower (final sigma becomes ς); UTS #46 maps Σ to σ everywhere, so a
    # domain entry and a row's host must both go through the mapping alone to meet.
    assert host_of("https://user@ΑΣ.gr:8080/x") == normalize_domain("ΑΣ.gr") == "xn--mxa0b.gr"
    assert NORMALIZERS["canonical"].normalize("http://Straße.de/") == "xn--strae-oqa.de/"  # non-transitional
    assert NORMALIZERS["canonical"].normalize("http://xn--bcher-kva.de%2E/a/%2e%2E/b") == "xn--bcher-kva.de/b"
    assert NORMALIZERS["canonical"].normalize("https:example.org/a") == "example.org/a"
    assert NORMALIZERS["canonical"].normalize("http://[::1]:8080/x") == "[::1]:8080/x"
