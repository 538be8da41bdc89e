"""C3P Arachnid Shield: PDQ hashes in batches (`v1/pdq/`), URLs one by one (`v1/url/`); never `v1/media/`.

Request and response shapes are the official `arachnid-shield-sdk`'s own models (`ScanMediaFromPdq`,
`ScannedPDQHashes`/`PDQMatch`, `ScanMediaFromUrl`, `ScannedMedia`, `ErrorDetail`), so the contract is the SDK's.
The SDK's client is not used for transport, for three reasons: it reads its base URL from `ARACHNID_SHIELD_URL`
once, when the module is first imported (a default argument), so an endpoint cannot be chosen per run; it
exposes neither the HTTP status nor `Retry-After`, which backoff needs; and a non-JSON 5xx surfaces from it as a
JSON decode error. The shared `HttpTransport` (httpx, the SDK's own dependency) sends the models' `to_dict()`.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from arachnid_shield_sdk.api.client import DEFAULT_BASE_URL
from arachnid_shield_sdk.models import (
    MediaClassification,
    ScanMediaFromPdq,
    ScanMediaFromUrl,
    ScannedMedia,
)
from arachnid_shield_sdk.models.scanned_pdq import PDQMatch

from safeset.errors import SafesetError
from safeset.services.base import Outcome, Verdict, VerificationItem, register_service
from safeset.services.http import HttpOptions, HttpService, ServiceError, json_of

ENDPOINT_ENV = "ARACHNID_SHIELD_URL"
USERNAME_ENV = "ARACHNID_SHIELD_USERNAME"
PASSWORD_ENV = "ARACHNID_SHIELD_PASSWORD"
# What a v1/url/ refusal about the item itself looks like (the link is dead, not an image): the item cannot be
# checked, the run goes on. Auth, rate-limit and server errors are still errors.
URL_ITEM_REFUSALS = frozenset({400, 404, 422})


def pdq_base64(pdq_hex: str) -> str:
    """The service's PDQ form: standard base64 of the 32 hash bytes."""
    raw = bytes.fromhex(pdq_hex)
    if len(raw) != 32:
        raise SafesetError(f"PDQ hash {pdq_hex!r} is not 64 hex digits")
    return base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class ArachnidOptions:
    endpoint: str = DEFAULT_BASE_URL
    username: str | None = None  # from ARACHNID_SHIELD_USERNAME when None
    password: str | None = None  # from ARACHNID_SHIELD_PASSWORD when None
    max_batch: int = 100  # PDQ hashes per v1/pdq/ request (the service documents no limit; kept modest)
    http: HttpOptions = field(default_factory=HttpOptions)

    @classmethod
    def from_environment(cls, endpoint: str | None = None, **overrides: Any) -> ArachnidOptions:
        return cls(endpoint=endpoint or os.environ.get(ENDPOINT_ENV) or DEFAULT_BASE_URL, **overrides)


def _confirmed(classification: MediaClassification | str | None) -> bool:
    return classification is not None and MediaClassification(classification) != MediaClassification.NoKnownMatch


class ArachnidShieldService(HttpService):
    name = "arachnid"

    label = "Arachnid Shield"

    def __init__(self, options: ArachnidOptions, sleep: Any = None) -> None:
        super().__init__(options.endpoint, options.http, sleep)
        self.options = options
        self.max_batch = options.max_batch

    # --- what would be sent ------------------------------------------------------------------------------------
    def _plan(self, items: Sequence[VerificationItem]) -> tuple[list[list[VerificationItem]], list[VerificationItem]]:
        by_pdq = [item for item in items if item.pdq]
        by_url = [item for item in items if not item.pdq and item.url]
        batches = [by_pdq[i : i + self.max_batch] for i in range(0, len(by_pdq), self.max_batch)]
        return batches, by_url

    def requests_for(self, items: Sequence[VerificationItem]) -> list[dict[str, Any]]:
        batches, by_url = self._plan(items)
        requests = [
            {
                "method": "POST",
                "url": self._url("v1/pdq/"),
                "body": ScanMediaFromPdq(hashes=_unique([pdq_base64(i.pdq or "") for i in batch])).to_dict(),
            }
            for batch in batches
        ]
        requests += [
            {"method": "POST", "url": self._url("v1/url/"), "body": ScanMediaFromUrl(url=item.url or "").to_dict()}
            for item in by_url
        ]
        return requests

    # --- sending -----------------------------------------------------------------------------------------------
    def _transport_options(self) -> dict[str, Any]:
        username = self.options.username or os.environ.get(USERNAME_ENV)
        password = self.options.password or os.environ.get(PASSWORD_ENV)
        if not username or not password:
            raise SafesetError(f"Arachnid Shield needs credentials: set {USERNAME_ENV} and {PASSWORD_ENV}")
        return {"auth": httpx.BasicAuth(username, password)}

    def verify(self, items: Sequence[VerificationItem]) -> list[Verdict]:
        verdicts: dict[int, Verdict] = {}
        batches, by_url = self._plan(items)
        for batch in batches:
            verdicts.update(self._verify_pdq(batch))
        for item in by_url:
            verdicts[id(item)] = self._verify_url(item)
        return [
            verdicts.get(id(item)) or Verdict(item.case_id, Outcome.UNVERIFIABLE, detail="no PDQ hash and no URL")
            for item in items
        ]

    def _verify_pdq(self, batch: list[VerificationItem]) -> dict[int, Verdict]:
        wanted = {id(item): pdq_base64(item.pdq or "") for item in batch}
        request = ScanMediaFromPdq(hashes=_unique(list(wanted.values())))
        response = self._client().request("POST", self._url("v1/pdq/"), json_body=request.to_dict())
        body = json_of(response, "Arachnid Shield")
        scanned = body.get("scanned_hashes") if isinstance(body, dict) else None
        if not isinstance(scanned, dict):
            raise ServiceError("Arachnid Shield: v1/pdq/ answer has no 'scanned_hashes' object")
        answers: dict[str, PDQMatch | None] = {}
        for submitted, value in scanned.items():
            try:
                # The SDK docstring allows null for "no match", its parser expects an object: accept both.
                answers[submitted] = None if value is None else PDQMatch.from_dict(value)
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                raise ServiceError(f"Arachnid Shield: unreadable v1/pdq/ entry for {submitted!r}: {exc!r}") from None
        verdicts = {}
        for item in batch:
            key = wanted[id(item)]
            if key not in answers:
                raise ServiceError(f"Arachnid Shield: v1/pdq/ answer lacks the submitted hash {key!r}")
            match = answers[key]
            if match is None or not _confirmed(match.classification):
                verdicts[id(item)] = Verdict(item.case_id, Outcome.NOT_CONFIRMED, detail="pdq: no-known-match")
                continue
            near = match.near_match_details
            reference = f"sha256:{near.sha256_hex}" if near is not None else None
            detail = f"pdq: {MediaClassification(match.classification).value}, match {_value(match.match_type)}"
            verdicts[id(item)] = Verdict(item.case_id, Outcome.CONFIRMED, reference=reference, detail=detail)
        return verdicts

    def _verify_url(self, item: VerificationItem) -> Verdict:
        request = ScanMediaFromUrl(url=item.url or "")
        response = self._client().request(
            "POST", self._url("v1/url/"), json_body=request.to_dict(), accept=URL_ITEM_REFUSALS
        )
        body = json_of(response, "Arachnid Shield")
        if response.status_code in URL_ITEM_REFUSALS:
            detail = body.get("detail") if isinstance(body, dict) else None
            return Verdict(
                item.case_id, Outcome.UNVERIFIABLE, detail=f"url: HTTP {response.status_code} {detail or ''}".strip()
            )
        try:
            scanned = ScannedMedia.from_dict(body)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ServiceError(f"Arachnid Shield: unreadable v1/url/ answer: {exc!r}") from None
        reference = f"sha256:{scanned.sha256_hex}"
        if not scanned.matches_known_media:
            return Verdict(item.case_id, Outcome.NOT_CONFIRMED, reference=reference, detail="url: no-known-match")
        detail = f"url: {_value(scanned.classification)}, match {_value(scanned.match_type)}"
        return Verdict(item.case_id, Outcome.CONFIRMED, reference=reference, detail=detail)


def _value(enum_or_none: Any) -> str:
    return "-" if enum_or_none is None else str(getattr(enum_or_none, "value", enum_or_none))


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def make_arachnid(endpoint: str | None) -> ArachnidShieldService:
    return ArachnidShieldService(ArachnidOptions.from_environment(endpoint))


register_service("arachnid", make_arachnid)  # on import: `cases verify` imports every module under safeset.services
