"""Verification glue: send candidate cases' hashes and URLs to a service and record its verdicts.

Crash safety comes from ordering: a batch is marked `submitted` (logged, with a batch id and the service name)
and committed before anything is sent; the verdicts are recorded in one transaction after the service answers.
A run that stops in between leaves exactly those cases `submitted` with that service owing a verdict; the next
run re-sends them first. A case with a recorded verdict is never in that set, so it is never sent again, and a
case marked submitted stays so until a verdict is recorded, so none is lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from safeset.cases.model import CaseState, CaseView
from safeset.cases.store import CaseStore
from safeset.errors import SafesetError
from safeset.services.base import Outcome, Verdict, VerificationItem, VerificationService

_OUTCOME_STATES = {
    Outcome.CONFIRMED: CaseState.CONFIRMED,
    Outcome.NOT_CONFIRMED: CaseState.NOT_CONFIRMED,
    Outcome.UNVERIFIABLE: CaseState.UNVERIFIABLE,
}


@dataclass(frozen=True)
class VerifyOptions:
    batch: int | None = None  # items per request; the service's own maximum when None or larger
    dry_run: bool = False  # only list the requests that would be sent
    limit: int | None = None  # at most this many new candidates this run (re-sends always go)


@dataclass
class VerifyResult:
    resent: int = 0  # cases re-sent from a run that stopped before their verdict
    sent: int = 0  # candidates sent for the first time
    outcomes: dict[str, int] = field(default_factory=dict)
    no_hash: int = 0  # candidates with neither hash nor URL: marked unverifiable without sending
    requests: list[dict[str, Any]] = field(default_factory=list)  # --dry-run: what would be sent


def item_for(case: CaseView) -> VerificationItem:
    """What a service may see of a case: its PDQ, MD5 and first known URL. Never bytes, keys or captions."""
    url = next((o.url for o in case.occurrences if o.url), None)
    return VerificationItem(case_id=case.id, pdq=case.pdq, md5=case.md5, url=url)


def verify_cases(
    store: CaseStore, service: VerificationService, who: str, options: VerifyOptions | None = None
) -> VerifyResult:
    options = options or VerifyOptions()
    size = max(1, min(options.batch or service.max_batch, service.max_batch or 1))
    result = VerifyResult()
    pending = _views(store, store.pending_submissions(service.name))
    candidates = _views(store, store.case_ids([CaseState.CANDIDATE]))
    if options.limit is not None:
        candidates = candidates[: options.limit]
    sendable = [c for c in candidates if _has_something(c)]
    empty = [c for c in candidates if not _has_something(c)]
    if options.dry_run:
        for batch in _batches(pending + sendable, size):
            result.requests.extend(service.requests_for([item_for(c) for c in batch]))
        result.resent, result.sent, result.no_hash = len(pending), len(sendable), len(empty)
        return result
    if empty:
        store.transition([c.id for c in empty], CaseState.UNVERIFIABLE, who, "no hash or URL a service could check")
        result.no_hash = len(empty)
    for batch in _batches(pending, size):  # already marked submitted by the run that stopped
        _send(store, service, who, batch, result)
        result.resent += len(batch)
    for batch in _batches(sendable, size):
        store.mark_submitted([c.id for c in batch], service.name, who)
        _send(store, service, who, batch, result)
        result.sent += len(batch)
    return result


def _send(
    store: CaseStore, service: VerificationService, who: str, batch: Sequence[CaseView], result: VerifyResult
) -> None:
    items = [item_for(c) for c in batch]
    try:
        verdicts = service.verify(items)
    except SafesetError as exc:
        raise SafesetError(
            f"{service.name}: {exc}; {len(items)} case(s) stay submitted and are re-sent by the next `cases verify`"
        ) from None
    except Exception as exc:
        raise SafesetError(
            f"{service.name} failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            f"{len(items)} case(s) stay submitted and are re-sent by the next `cases verify`"
        ) from None
    store.record_verdicts(_checked(service.name, items, verdicts), who)
    for verdict in verdicts:
        result.outcomes[verdict.outcome.value] = result.outcomes.get(verdict.outcome.value, 0) + 1


def _checked(
    service: str, items: Sequence[VerificationItem], verdicts: Sequence[Verdict]
) -> list[tuple[int, CaseState, str, str | None]]:
    """Verdicts as transitions, refusing answers for cases that were not asked about (nothing is recorded then;
    the batch stays submitted). A case left unanswered stays submitted and is re-sent next run."""
    asked = {item.case_id for item in items}
    stray = sorted({v.case_id for v in verdicts} - asked)
    if stray:
        raise SafesetError(f"{service} answered for cases it was not sent ({stray[:5]}); nothing was recorded")
    answered: set[int] = set()
    moves = []
    for verdict in verdicts:
        if verdict.case_id in answered:
            continue
        answered.add(verdict.case_id)
        outcome = Outcome(verdict.outcome)
        detail = f": {verdict.detail}" if verdict.detail else ""
        moves.append(
            (verdict.case_id, _OUTCOME_STATES[outcome], f"{service} {outcome.value}{detail}", verdict.reference)
        )
    return moves


def _views(store: CaseStore, ids: list[int]) -> list[CaseView]:
    return store.get_cases(ids)


def _has_something(case: CaseView) -> bool:
    return bool(case.pdq or case.md5 or any(o.url for o in case.occurrences))


def _batches(cases: Sequence[CaseView], size: int) -> list[Sequence[CaseView]]:
    return [cases[i : i + size] for i in range(0, len(cases), size)]
