"""DigestedStrings (url banks looked up by the MD5 of a batch's URL forms): the same answers as `StringSet`, and
a digest that is found never matches on its own -- the strings are compared."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safeset.kinds.digest import digestset
from safeset.kinds.digest.digestset import DigestedStrings, DigestSet, StringSet, bucket_directory
from safeset.signals.url_kernels import FormBytes, string_buffers

texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
values = st.lists(st.one_of(st.none(), texts, st.sampled_from(["", "a", "ab", "é", "\x00", "http://x/"])), max_size=40)


def _forms(queries: list[str | None]) -> tuple[FormBytes, np.ndarray]:
    """The queries as a batch's form (spans of one buffer) and their MD5s (zero for nulls)."""
    source = string_buffers(pa.array(queries, type=pa.string()))
    starts, ends = source.offsets[:-1].copy(), source.offsets[1:].copy()
    digests = np.zeros((len(queries), 16), dtype=np.uint8)
    for i, query in enumerate(queries):
        if query is not None:
            digests[i] = np.frombuffer(hashlib.md5(query.encode()).digest(), dtype=np.uint8)
    return FormBytes(source.data, starts, ends, source.valid, source), digests


@settings(max_examples=150, deadline=None)
@given(stored=values, queries=values)
def test_positions_equal_the_string_set(stored: list[str | None], queries: list[str | None]) -> None:
    stored_array = pa.array(stored, type=pa.string())
    forms, digests = _forms([*queries, *[s for s in stored if s is not None][:5]])
    got = DigestedStrings(stored_array).positions(digests, forms.valid, forms)
    expected = StringSet(stored_array).positions(forms.to_arrow())
    assert got.tolist() == expected.tolist()


def test_a_digest_found_is_not_a_match_unless_the_strings_agree() -> None:
    """A row whose digest is a stored string's but whose bytes are not (what an MD5 collision would look like)
    is not a match; nor is a row whose digest is absent although its bytes are stored (the digest decides
    first: the form and its digest come from one batch)."""
    strings = DigestedStrings(pa.array(["https://a.example/x", "https://b.example/y"]))
    forms, digests = _forms(["https://a.example/x", "https://a.example/X", "https://b.example/y"])
    digests[1] = digests[0]  # row 1 claims row 0's digest
    digests[2] = 0  # row 2 claims a digest nobody has
    assert strings.positions(digests, forms.valid, forms).tolist() == [0, -1, -1]


def test_stored_strings_sharing_a_digest_fall_back_to_comparing_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two stored strings with one MD5 (forced here: real ones are only ever made on purpose) would hide one
    of them behind the other's digest; the set then answers through `StringSet` instead, digests unused."""

    def one_digest(array: pa.Array, algorithm: str) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((len(array), 16), dtype=np.uint8), np.ones(len(array), dtype=bool)

    monkeypatch.setattr(digestset, "digest_strings", one_digest)
    strings = DigestedStrings(pa.array(["aa", "bb", "cc"]))
    assert strings.exact is not None
    forms, digests = _forms(["cc", "bb", "dd", None])
    assert strings.positions(digests, forms.valid, forms).tolist() == [2, 1, -1, -1]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=16, max_size=16), max_size=300), st.integers(0, 8))
def test_bucket_directory_bounds_each_bucket(entries: list[bytes], shared: int) -> None:
    """Every stored prefix lies in its bucket's range of the directory, for any spread of prefixes (`shared`
    leading bytes in common pile entries into few buckets)."""
    rows = [b"\x5a" * shared + e[shared:] for e in entries]
    dset = DigestSet.build(np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(-1, 16))
    directory, bits = bucket_directory(dset.prefix)
    assert directory[0] == 0 and directory[-1] == len(dset) and (np.diff(directory) >= 0).all()
    buckets = (dset.prefix >> np.uint64(64 - bits)).astype(np.int64)
    positions = np.arange(len(dset))
    assert ((directory[buckets] <= positions) & (positions < directory[buckets + 1])).all()
