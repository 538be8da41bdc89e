"""What a case is, as the rest of safeset sees it: states, the legal moves between them, and read-only views.

These names are a public contract (the review page builds on them), so they live apart from the database code:
a view is a plain frozen dataclass, never an ORM object bound to a session.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class CaseState(StrEnum):
    CANDIDATE = "candidate"  # found by a scan; nobody has checked it yet
    SUBMITTED = "submitted"  # sent to a verification service; no verdict recorded yet
    CONFIRMED = "confirmed"  # a service (or a reviewer after one) holds it as known material
    NOT_CONFIRMED = "not-confirmed"  # checked, not known
    UNVERIFIABLE = "unverifiable"  # nothing a service could check (dead link, no hash it takes)
    REPORTED = "reported"  # confirmed and exported to a hotline
    WITHHELD = "withheld"  # withheld from a release
    DISMISSED = "dismissed"  # set aside by a reviewer, with a reason


#: Legal moves. A not-confirmed or unverifiable case may go to another service (submitted again); a dismissed
#: case may be reopened. Confirmed material is never dismissed, and nothing leaves `withheld`.
TRANSITIONS: dict[CaseState, frozenset[CaseState]] = {
    CaseState.CANDIDATE: frozenset(
        {CaseState.SUBMITTED, CaseState.CONFIRMED, CaseState.NOT_CONFIRMED, CaseState.UNVERIFIABLE, CaseState.DISMISSED}
    ),
    CaseState.SUBMITTED: frozenset(
        {CaseState.CONFIRMED, CaseState.NOT_CONFIRMED, CaseState.UNVERIFIABLE, CaseState.DISMISSED}
    ),
    CaseState.NOT_CONFIRMED: frozenset({CaseState.SUBMITTED, CaseState.CONFIRMED, CaseState.DISMISSED}),
    CaseState.UNVERIFIABLE: frozenset(
        {CaseState.SUBMITTED, CaseState.CONFIRMED, CaseState.NOT_CONFIRMED, CaseState.DISMISSED}
    ),
    CaseState.CONFIRMED: frozenset({CaseState.REPORTED, CaseState.WITHHELD}),
    CaseState.REPORTED: frozenset({CaseState.WITHHELD}),
    CaseState.WITHHELD: frozenset(),
    CaseState.DISMISSED: frozenset({CaseState.CANDIDATE}),
}

#: States of cases held as known material: what feeds the next scan and what a hotline report may hold.
CONFIRMED_STATES: tuple[CaseState, ...] = (CaseState.CONFIRMED, CaseState.REPORTED, CaseState.WITHHELD)


def can_move(from_state: CaseState, to_state: CaseState) -> bool:
    return to_state in TRANSITIONS[from_state]


@dataclass(frozen=True)
class Occurrence:
    """One dataset row the case's item appears under."""

    key: str
    shard: str
    row: int
    url: str | None


@dataclass(frozen=True)
class Evidence:
    """Why the item was flagged; `score` is the number the evidence carries (a distance, a cosine, a classifier
    score) where one can be read from it, else None."""

    detector: str
    bank: str
    evidence: str
    action: str
    score: float | None


@dataclass(frozen=True)
class CaseView:
    id: int
    identity: (
        str  # what makes the item distinct: "md5:<hex>", "sha256:<hex>", "pdq:<hex>", "url:<canonical>", "key:<k>"
    )
    state: CaseState
    occurrences: list[Occurrence]
    evidence: list[Evidence]
    first_seen: datetime
    updated_at: datetime
    pdq: str | None
    md5: str | None
    sha1: str | None = None
    sha256: str | None = None
    reference: str | None = None  # the last verification service's reference (tracking / response id)


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: datetime
    who: str
    case_id: int
    from_state: CaseState | None  # None when the case was created
    to_state: CaseState
    reason: str
    reference: str | None
    entry_hash: str


@dataclass(frozen=True)
class ImportResult:
    new_cases: int
    updated_cases: int  # existing cases that gained an occurrence or evidence
    findings_read: int
    urls_filled: bool = False  # whether URLs could be read from the scanned dataset
    note: str | None = None  # why URLs (or dataset hash columns) were not read, when they were not
