"""The audit log's hash chain, as pure functions over entries (the store reads and writes rows; this decides).

Each entry's hash is the SHA-256 of a canonical JSON of its own fields and the previous entry's hash, so editing
an entry breaks its own hash, and deleting or reordering entries breaks the link (or the sequence) of the next.
A head record holding the last sequence number and hash catches entries deleted from the end. The chain proves
the log was not altered by someone who cannot also recompute every later hash; it is an integrity check, not a
signature.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class ChainFields:
    """The fields an entry's hash covers."""

    seq: int
    at: datetime
    who: str
    case_id: int
    from_state: str | None
    to_state: str
    reason: str
    reference: str | None


def as_utc(moment: datetime) -> datetime:
    """Aware UTC; SQLite hands back naive datetimes, which the store always writes in UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def canonical(fields: ChainFields, prev_hash: str) -> bytes:
    """One spelling of an entry, whatever the database: UTC time to the microsecond, sorted keys, UTF-8."""
    record = {
        "seq": fields.seq,
        "at": as_utc(fields.at).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "who": fields.who,
        "case_id": fields.case_id,
        "from": fields.from_state,
        "to": fields.to_state,
        "reason": fields.reason,
        "reference": fields.reference,
        "prev": prev_hash,
    }
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_hash(fields: ChainFields, prev_hash: str) -> str:
    return hashlib.sha256(canonical(fields, prev_hash)).hexdigest()


@dataclass(frozen=True)
class StoredEntry:
    fields: ChainFields
    prev_hash: str
    entry_hash: str


def verify_chain(entries: list[StoredEntry], head_seq: int, head_hash: str) -> list[str]:
    """Problems with a log read in sequence order, the first bad entry named first; empty when the chain holds."""
    problems: list[str] = []
    expected_prev, expected_seq = GENESIS_HASH, 1
    for entry in entries:
        seq = entry.fields.seq
        if seq != expected_seq:
            problems.append(f"entry {seq}: expected entry {expected_seq} here; entries were deleted or renumbered")
        elif entry.prev_hash != expected_prev:
            problems.append(f"entry {seq}: does not follow entry {seq - 1}; entries were deleted or reordered")
        elif entry_hash(entry.fields, entry.prev_hash) != entry.entry_hash:
            problems.append(f"entry {seq}: contents do not match its hash; the entry was altered")
        if problems:
            return problems  # everything after the first break is unanchored
        expected_prev, expected_seq = entry.entry_hash, seq + 1
    last_seq = expected_seq - 1
    if last_seq != head_seq or expected_prev != head_hash:
        problems.append(
            f"entry {last_seq + 1}: the log ends at entry {last_seq} but its head records entry {head_seq}; "
            "entries were deleted from the end or the head was altered"
        )
    return problems
