from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from safeset.signals.digests import digests_to_hex, hash_blobs, hex_to_digests, hex_to_digests_reference
from safeset.signals.images import image_problem


def test_hex_decoding_marks_invalid_rows() -> None:
    good = hashlib.md5(b"a").hexdigest()
    column = pa.array([good, good.upper(), None, "xyz", good[:-1] + "g", good + "0", ""])
    digests, valid = hex_to_digests(column, 16)
    assert valid.tolist() == [True, True, False, False, False, False, False]
    assert digests_to_hex(digests[:2]) == [good, good]
    assert not digests[2:].any()


def test_hex_decoding_of_sliced_arrays() -> None:
    values = [hashlib.sha1(str(i).encode()).hexdigest() for i in range(10)]
    digests, valid = hex_to_digests(pa.array(values).slice(3, 4), 20)
    assert valid.all()
    assert digests_to_hex(digests) == values[3:7]


def test_hash_blobs_matches_hashlib() -> None:
    blobs = pa.array([b"one", None, b"three"], type=pa.binary())
    out = hash_blobs(blobs, ["md5", "sha256"])
    digests, valid = out["sha256"]
    assert valid.tolist() == [True, False, True]
    assert bytes(digests[2]) == hashlib.sha256(b"three").digest()
    assert bytes(out["md5"][0][0]) == hashlib.md5(b"one").digest()


def test_image_problems(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from safeset.demo import variant

    jpeg = variant("coffee", 0)
    assert image_problem(jpeg) is None
    assert "truncated" in (image_problem(jpeg[: len(jpeg) // 2]) or "")
    assert image_problem(b"not an image") == "not a recognised image format"
    assert image_problem(b"") == "empty image"
    assert "exceeds" in (image_problem(jpeg, max_pixels=100) or "")
    assert np.all([image_problem(variant("bridge", i)) is None for i in range(3)])


hex_like = st.one_of(
    st.none(),
    st.binary(min_size=16, max_size=16).map(bytes.hex),
    st.binary(min_size=16, max_size=16).map(lambda b: b.hex().upper()),
    st.text(alphabet="0123456789abcdefABCDEFgG \u00e9", min_size=30, max_size=34),
    st.text(max_size=40),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(hex_like, max_size=30), st.integers(0, 3), st.booleans())
def test_compiled_hex_decoding_equals_the_numpy_reference(values: list[str | None], cut: int, large: bool) -> None:
    kind = pa.large_string() if large else pa.string()
    column = pa.array(["00"] * cut + values, type=kind).slice(cut)
    digests, valid = hex_to_digests(column, 16)
    expected_digests, expected_valid = hex_to_digests_reference(column, 16)
    assert valid.tolist() == expected_valid.tolist()
    assert np.array_equal(digests, expected_digests)
    for value, ok, row in zip(values, valid.tolist(), digests, strict=True):
        if ok:
            assert value is not None and bytes(row) == bytes.fromhex(value)
