"""The hash chain as a property: any log verifies as written, and any single edit, deletion or swap of entries
is caught at the first entry it touches."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from safeset.cases.audit import GENESIS_HASH, ChainFields, StoredEntry, entry_hash, verify_chain

STATES = ["candidate", "submitted", "confirmed", "not-confirmed", "dismissed"]
texts = st.text(max_size=30)  # any Unicode, surrogates excluded by hypothesis' default alphabet

fields_lists = st.lists(
    st.tuples(
        texts,
        st.integers(1, 10**6),
        st.none() | st.sampled_from(STATES),
        st.sampled_from(STATES),
        texts,
        st.none() | texts,
        st.integers(0, 10**9),
    ),
    min_size=1,
    max_size=12,
)


def build(raw: list[tuple]) -> tuple[list[StoredEntry], int, str]:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    entries, prev = [], GENESIS_HASH
    for seq, (who, case_id, from_state, to_state, reason, reference, micros) in enumerate(raw, start=1):
        fields = ChainFields(
            seq, start + timedelta(microseconds=micros), who, case_id, from_state, to_state, reason, reference
        )
        digest = entry_hash(fields, prev)
        entries.append(StoredEntry(fields, prev, digest))
        prev = digest
    return entries, len(entries), prev


@given(fields_lists)
def test_an_untouched_log_verifies(raw: list[tuple]) -> None:
    assert verify_chain(*build(raw)) == []


@given(fields_lists, st.data())
def test_any_edit_is_caught_at_that_entry(raw: list[tuple], data: st.DataObject) -> None:
    entries, head_seq, head_hash = build(raw)
    index = data.draw(st.integers(0, len(entries) - 1))
    field = data.draw(st.sampled_from(["who", "case_id", "to_state", "reason", "reference", "at"]))
    old = getattr(entries[index].fields, field)
    changes = {
        "who": lambda v: v + "x",
        "case_id": lambda v: v + 1,
        "to_state": lambda v: "withheld",
        "reason": lambda v: v + " ",
        "reference": lambda v: (v or "") + "r",
        "at": lambda v: v + timedelta(microseconds=1),
    }
    new = changes[field](old)
    entries[index] = dataclasses.replace(
        entries[index], fields=dataclasses.replace(entries[index].fields, **{field: new})
    )
    problems = verify_chain(entries, head_seq, head_hash)
    assert problems and problems[0].startswith(f"entry {index + 1}:")


@given(fields_lists.filter(lambda raw: len(raw) >= 2), st.data())
def test_deleting_or_swapping_entries_is_caught(raw: list[tuple], data: st.DataObject) -> None:
    entries, head_seq, head_hash = build(raw)
    i = data.draw(st.integers(0, len(entries) - 2))
    deleted = entries[:i] + entries[i + 1 :]
    assert verify_chain(deleted, head_seq, head_hash)
    swapped = list(entries)
    swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
    problems = verify_chain(swapped, head_seq, head_hash)
    assert problems and problems[0].startswith(f"entry {entries[i + 1].fields.seq}:")
    assert verify_chain(entries[:-1], head_seq, head_hash)  # the tail cut off: the head disagrees
