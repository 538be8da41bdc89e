"""StringSet: the compiled lookup answers exactly what `pc.is_in` / `pc.index_in` answer, on hostile strings."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from safeset.kinds.digest import stringset_kernels
from safeset.kinds.digest.digestset import StringSet

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
