"""The contract between the case store and a verification service adapter.

What may leave the machine is fixed here: a `VerificationItem` carries hashes and a URL, and has no field
that could hold image bytes. The case store decides which cases to send and records every answer; an adapter
only turns items into requests and responses into verdicts (batching, retries and rate limits are its own).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol


class Outcome(StrEnum):
    CONFIRMED = "confirmed"  # the service holds this item as known material
    NOT_CONFIRMED = "not-confirmed"  # checked, not known to the service
    UNVERIFIABLE = "unverifiable"  # nothing the service can check (no hash it takes, dead link)


@dataclass(frozen=True)
class VerificationItem:
    """One case as a service may see it: hashes and a URL only."""

    case_id: int
    pdq: str | None = None  # 64 lower-case hex digits
    md5: str | None = None  # 32 lower-case hex digits of the image bytes
    url: str | None = None


@dataclass(frozen=True)
class Verdict:
    case_id: int
    outcome: Outcome
    reference: str | None = None  # the service's id for this answer (tracking id, response id), for the audit log
    detail: str = ""  # one line: classification, match type, distance, bank


class VerificationService(Protocol):
    """An adapter; `verify` answers every item it was given, in order, or raises (nothing then counts as sent)."""

    name: str
    max_batch: int  # items per request the service accepts

    def requests_for(self, items: Sequence[VerificationItem]) -> list[dict[str, Any]]:
        """The requests `verify` would send (method, url, body without credentials): what `--dry-run` prints."""
        ...

    def verify(self, items: Sequence[VerificationItem]) -> list[Verdict]: ...


#: name -> factory(endpoint or None: the documented default / environment variable) -> adapter
SERVICES: dict[str, Callable[[str | None], VerificationService]] = {}


def register_service(name: str, factory: Callable[[str | None], VerificationService]) -> None:
    SERVICES[name] = factory
