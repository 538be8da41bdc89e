"""StringSet: the compiled lookup answers exactly what `pc.is_in` / `pc.index_in` answer, on hostile strings."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from safeset.kinds.digest import stringset_kernels
from safeset.kinds.digest.digestset import DigestSet, StringSet

texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
values = st.lists(st.one_of(st.none(), texts, st.sampled_from(["", "a", "ab", "é", "\x00", "http://x/"])), max_size=40)


@settings(max_examples=150, deadline=None)
@given(stored=values, queries=values, cut=st.integers(0, 5), large=st.booleans())
def test_lookup_equals_arrow(stored: list[str | None], queries: list[str | None], cut: int, large: bool) -> None:
    kind = pa.large_string() if large else pa.string()
    stored_array = pa.array(stored, type=pa.string())
    query_array = pa.array(["pad"] * cut + queries, type=kind).slice(cut)  # a sliced array: offsets start mid-buffer
    found = StringSet(stored_array).contains(query_array)
    expected = np.asarray(
        pc.is_in(query_array, value_set=stored_array, skip_nulls=False).to_numpy(zero_copy_only=False)
    )
    assert found.tolist() == expected.tolist()
    positions = StringSet(stored_array).positions(query_array)
    present = stored_array.drop_null().to_pylist()
    for query, position in zip(query_array.to_pylist(), positions.tolist(), strict=True):
        if query is None or query not in present:
            assert position == -1
        else:
            assert present[position] == query


def test_hash_collisions_are_resolved_by_comparing_bytes() -> None:
    """Stored strings that all share one hash (forced): a query with that hash is found by its bytes alone."""
    stored = pa.array(["aaaa", "bbbb", "cccc", "dddd"])  # same length: only the bytes tell them apart
    string_set = StringSet(stored)
    target = stringset_kernels.hash_strings(pa.array(["cccc"]))[0]
    string_set.hashes[:] = target  # every stored entry now collides with "cccc"
    string_set.order = np.arange(4, dtype=np.int64)
    assert string_set.positions(pa.array(["cccc", "dddd", None])).tolist() == [2, -1, -1]
    # "dddd" hashes elsewhere, so it is (wrongly, for this doctored index) absent: the bytes decided for "cccc".


@settings(max_examples=100, deadline=None)
@given(stored=values, queries=values, cut=st.integers(0, 5))
def test_lookup_from_bytes_equals_lookup_from_arrow(
    stored: list[str | None], queries: list[str | None], cut: int
) -> None:
    """`positions_bytes` (queries as a buffer + int64 offsets, as the URL forms are shared) equals `positions`."""
    strings = StringSet(pa.array(stored, type=pa.string()))
    query_array = pa.array(["pad"] * cut + queries, type=pa.string()).slice(cut)
    data, offsets, valid = stringset_kernels.string_buffers(query_array)
    assert strings.positions_bytes(data, offsets, valid).tolist() == strings.positions(query_array).tolist()


digest_rows = st.lists(st.binary(min_size=16, max_size=16), max_size=40)


@settings(max_examples=150, deadline=None)
@given(stored=digest_rows, queries=digest_rows, shared_prefix=st.booleans(), data=st.data())
def test_compiled_digest_lookup_equals_the_numpy_reference(
    stored: list[bytes], queries: list[bytes], shared_prefix: bool, data: st.DataObject
) -> None:
    """DigestSet's compiled lookup against its numpy reference: members, non-members, invalid rows, and digests
    sharing their first 8 bytes (only the comparison of the rest tells them apart)."""
    if shared_prefix:
        stored = [b"\x07" * 8 + s[8:] for s in stored]
        queries = [b"\x07" * 8 + q[8:] for q in queries]
    queries = queries + stored[: len(stored) // 2]
    as_rows = lambda items: np.frombuffer(b"".join(items), dtype=np.uint8).reshape(-1, 16)  # noqa: E731
    dset = DigestSet.build(as_rows(stored))
    query_rows = as_rows(queries)
    valid = np.array(data.draw(st.lists(st.booleans(), min_size=len(queries), max_size=len(queries))), dtype=bool)
    assert dset.lookup(query_rows, valid).tolist() == dset.lookup_reference(query_rows, valid).tolist()
    found = dset.lookup(query_rows)
    assert found.tolist() == dset.lookup_reference(query_rows).tolist()
    for query, position in zip(queries, found.tolist(), strict=True):
        assert (position >= 0) == (query in stored)
        if position >= 0:
            assert bytes(dset.digests[position]) == query
