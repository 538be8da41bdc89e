"""The case store: candidates from scans, their verification by hash-only services, hotline reports, and
confirmed cases fed back to the next scan. See `store.CaseStore` for the database and `model` for the views."""

from safeset.cases.model import (
    CONFIRMED_STATES,
    TRANSITIONS,
    AuditEntry,
    CaseState,
    CaseView,
    Evidence,
    ImportResult,
    Occurrence,
)
from safeset.cases.store import CaseStore, database_url

__all__ = [
    "CONFIRMED_STATES",
    "TRANSITIONS",
    "AuditEntry",
    "CaseState",
    "CaseStore",
    "CaseView",
    "Evidence",
    "ImportResult",
    "Occurrence",
    "database_url",
]
