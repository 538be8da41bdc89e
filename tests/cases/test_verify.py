"""Verification glue against a fake adapter that implements the service Protocol: verdicts recorded with their
references, a crash mid-run recovered without losing or repeating a submission, --dry-run changing nothing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from safeset.cases import CaseState, CaseStore
from safeset.cases.verify import VerifyOptions, verify_cases
from safeset.errors import SafesetError
from safeset.services.base import Outcome, Verdict, VerificationItem
from tests.cases.conftest import finding, write_run


class FakeService:
    """Confirms items whose md5 is in `known`; raises on the call numbered `fail_on` (1-based)."""

    name = "fake"

    def __init__(self, known: set[str], max_batch: int = 2, fail_on: int | None = None) -> None:
        self.known = known
        self.max_batch = max_batch
        self.fail_on = fail_on
        self.calls: list[list[int]] = []

    def requests_for(self, items: Sequence[VerificationItem]) -> list[dict[str, Any]]:
        return [{"method": "POST", "url": "http://127.0.0.1/check", "body": {"md5": [i.md5 for i in items]}}]

    def verify(self, items: Sequence[VerificationItem]) -> list[Verdict]:
        self.calls.append([i.case_id for i in items])
        if self.fail_on == len(self.calls):
            raise ConnectionError("connection reset by peer")
        return [
            Verdict(
                i.case_id,
                Outcome.CONFIRMED if i.md5 in self.known else Outcome.NOT_CONFIRMED,
                reference=f"ref-{i.case_id}",
                detail="exact",
            )
            for i in items
        ]


def _md5(n: int) -> str:
    return f"{n:032x}"


def _five_cases(store: CaseStore, tmp_path: Path) -> list[int]:
    rows = [finding(f"k{n}", "s.tar", n, "md5", "known", f"md5:{_md5(n)} L{n} (image bytes)") for n in range(5)]
    rows.append(finding("bare", "s.tar", 9, "neighbor", "known", "cosine 0.9 to k1 (hop 1)", "review"))
    store.import_run(write_run(tmp_path / "run", rows), "alice")
    return [c.id for c in store.list_cases()]


def test_verdicts_are_recorded_with_references(store: CaseStore, tmp_path: Path) -> None:
    ids = _five_cases(store, tmp_path)
    service = FakeService(known={_md5(1), _md5(3)})
    result = verify_cases(store, service, "alice")
    assert (result.sent, result.resent, result.no_hash) == (5, 0, 1)
    assert result.outcomes == {"confirmed": 2, "not-confirmed": 3}
    assert service.calls == [ids[0:2], ids[2:4], ids[4:5]]  # batches of the service's maximum
    states = {c.id: c.state for c in store.list_cases()}
    assert [states[i] for i in ids] == [
        CaseState.NOT_CONFIRMED,
        CaseState.CONFIRMED,
        CaseState.NOT_CONFIRMED,
        CaseState.CONFIRMED,
        CaseState.NOT_CONFIRMED,
        CaseState.UNVERIFIABLE,  # nothing to send: no hash, no URL
    ]
    assert store.get_case(ids[1]).reference == f"ref-{ids[1]}"
    submitted = [e for e in store.audit_trail(ids[1]) if e.to_state is CaseState.SUBMITTED]
    assert submitted[0].reference.startswith("batch:") and "fake" in submitted[0].reason
    assert store.verify_log() == []


def test_a_crash_mid_run_is_resumed_without_loss_or_repeat(store: CaseStore, tmp_path: Path) -> None:
    ids = _five_cases(store, tmp_path)
    crashing = FakeService(known={_md5(2)}, fail_on=2)
    with pytest.raises(SafesetError, match="2 case\\(s\\) stay submitted"):
        verify_cases(store, crashing, "alice")
    states = {c.id: c.state for c in store.list_cases()}
    assert [states[i] for i in ids[:5]] == [
        CaseState.NOT_CONFIRMED,
        CaseState.NOT_CONFIRMED,
        CaseState.SUBMITTED,  # sent when the service failed: no verdict
        CaseState.SUBMITTED,
        CaseState.CANDIDATE,  # never reached
    ]
    assert store.pending_submissions("fake") == ids[2:4]
    assert store.pending_submissions("another") == []

    resumed = FakeService(known={_md5(2)})
    result = verify_cases(store, resumed, "alice")
    assert resumed.calls == [ids[2:4], ids[4:5]]  # exactly the unanswered ones first, then the rest; no repeats
    assert (result.resent, result.sent) == (2, 1)
    assert store.get_case(ids[2]).state is CaseState.CONFIRMED
    assert store.list_cases(state=CaseState.SUBMITTED) == []
    assert verify_cases(store, FakeService(set()), "alice").sent == 0  # nothing left to send
    assert store.verify_log() == []


def test_dry_run_prints_requests_and_changes_nothing(store: CaseStore, tmp_path: Path) -> None:
    ids = _five_cases(store, tmp_path)
    service = FakeService(set(), max_batch=3)
    before = store.audit_trail()
    result = verify_cases(store, service, "alice", VerifyOptions(dry_run=True, batch=10))
    assert service.calls == []
    assert [r["body"]["md5"] for r in result.requests] == [[_md5(0), _md5(1), _md5(2)], [_md5(3), _md5(4)]]
    assert store.audit_trail() == before
    assert {c.state for c in store.get_cases(ids)} == {CaseState.CANDIDATE}


def test_an_answer_for_a_case_not_sent_is_refused(store: CaseStore, tmp_path: Path) -> None:
    _five_cases(store, tmp_path)

    class Stray(FakeService):
        def verify(self, items: Sequence[VerificationItem]) -> list[Verdict]:
            return [Verdict(12345, Outcome.CONFIRMED)]

    with pytest.raises(SafesetError, match="not sent"):
        verify_cases(store, Stray(set()), "alice")
    assert store.list_cases(state=CaseState.CONFIRMED) == []
