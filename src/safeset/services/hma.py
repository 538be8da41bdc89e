"""Meta HMA 2.0 / OpenMediaMatch: `GET /m/lookup` for PDQ hashes and for URL-MD5 signals.

With `signal_type` given, the lookup answers `{"<BANK>": [{"bank_content_id": int, "distance": "<string>"}]}`
(`{}` for no match); one signal per request, so a batch is a series of requests under the rate limit. A URL is
sent as the MD5 of its ThreatExchange `HASH_URL_MD5` normal form (the same `te` form the URL banks use), so the
URL itself never leaves the machine. HMA has no authentication of its own; deployments put it behind a proxy,
hence an optional bearer token (`HMA_TOKEN`) or a named header (`HMA_AUTH_HEADER`, `Name: value`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from safeset.errors import SafesetError
from safeset.services.base import Outcome, Verdict, VerificationItem, register_service
from safeset.services.http import HttpOptions, HttpService, ServiceError, json_of
from safeset.signals.urls import ThreatExchangeUrl

ENDPOINT_ENV = "HMA_URL"
TOKEN_ENV = "HMA_TOKEN"
HEADER_ENV = "HMA_AUTH_HEADER"
DEFAULT_ENDPOINT = "http://127.0.0.1:5000/"  # HMA's development server; real deployments name their own


def url_md5(url: str) -> str:
    """ThreatExchange `HASH_URL_MD5` of a URL: MD5 hex of its `te` normal form in UTF-8."""
    return hashlib.md5(ThreatExchangeUrl().normalize(url).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class HmaOptions:
    endpoint: str = DEFAULT_ENDPOINT
    bearer_token: str | None = None
    auth_header: tuple[str, str] | None = None  # (name, value) for deployments with their own header scheme
    banks: tuple[str, ...] = ()  # only matches in these banks confirm (empty: any bank)
    use_url_md5: bool = True  # URL items without PDQ: look up `url_md5` (not enabled in every HMA config)
    http: HttpOptions = field(default_factory=HttpOptions)

    @classmethod
    def from_environment(cls, endpoint: str | None = None, **overrides: Any) -> HmaOptions:
        header = os.environ.get(HEADER_ENV)
        auth_header = None
        if header:
            name, sep, value = header.partition(":")
            if not sep or not name.strip():
                raise SafesetError(f"{HEADER_ENV} must read 'Name: value'")
            auth_header = (name.strip(), value.strip())
        return cls(
            endpoint=endpoint or os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT,
            bearer_token=os.environ.get(TOKEN_ENV) or None,
            auth_header=auth_header,
            **overrides,
        )


class HmaService(HttpService):
    name = "hma"
    max_batch = 1  # /m/lookup takes one signal per request

    label = "HMA"

    def __init__(self, options: HmaOptions, sleep: Any = None) -> None:
        super().__init__(options.endpoint, options.http, sleep)
        self.options = options

    def _lookup_url(self) -> str:
        return self._url("m/lookup")

    def _signal(self, item: VerificationItem) -> tuple[str, str] | None:
        if item.pdq:
            return "pdq", item.pdq.lower()
        if item.url and self.options.use_url_md5:
            return "url_md5", url_md5(item.url)
        return None

    def requests_for(self, items: Sequence[VerificationItem]) -> list[dict[str, Any]]:
        requests = []
        for item in items:
            signal = self._signal(item)
            if signal is not None:
                params = {"signal_type": signal[0], "signal": signal[1]}
                requests.append({"method": "GET", "url": self._lookup_url(), "params": params})
        return requests

    def _transport_options(self) -> dict[str, Any]:
        headers = {}
        if self.options.bearer_token:
            headers["Authorization"] = f"Bearer {self.options.bearer_token}"
        if self.options.auth_header:
            headers[self.options.auth_header[0]] = self.options.auth_header[1]
        return {"headers": headers}

    def verify(self, items: Sequence[VerificationItem]) -> list[Verdict]:
        return [self._verify_one(item) for item in items]

    def _verify_one(self, item: VerificationItem) -> Verdict:
        signal = self._signal(item)
        if signal is None:
            return Verdict(
                item.case_id, Outcome.UNVERIFIABLE, detail="no PDQ hash" + (" and no URL" if not item.url else "")
            )
        signal_type, value = signal
        response = self._client().request(
            "GET", self._lookup_url(), params={"signal_type": signal_type, "signal": value}
        )
        body = json_of(response, "HMA")
        if not isinstance(body, dict):
            raise ServiceError(f"HMA: /m/lookup answered {type(body).__name__}, expected an object keyed by bank")
        matches: list[tuple[str, int, str]] = []
        for bank, entries in body.items():
            if not isinstance(entries, list) or not all(
                isinstance(e, dict) and "bank_content_id" in e and "distance" in e for e in entries
            ):
                raise ServiceError(
                    f"HMA: /m/lookup entry for bank {bank!r} is not a list of {{bank_content_id, distance}}"
                )
            if self.options.banks and bank not in self.options.banks:
                continue
            matches += [(str(bank), int(e["bank_content_id"]), str(e["distance"])) for e in entries]
        if not matches:
            return Verdict(item.case_id, Outcome.NOT_CONFIRMED, detail=f"{signal_type}: no match")
        matches.sort(key=lambda m: (_distance_key(m[2]), m[0], m[1]))
        bank, content_id, distance = matches[0]
        more = f" (+{len(matches) - 1} more)" if len(matches) > 1 else ""
        return Verdict(
            item.case_id,
            Outcome.CONFIRMED,
            reference=f"{bank}:{content_id}",
            detail=f"{signal_type}: bank {bank} content {content_id} distance {distance}{more}",
        )


def _distance_key(distance: str) -> float:
    """Closest first; `-` (MD5 types: exact) sorts as 0."""
    try:
        return float(distance)
    except ValueError:
        return 0.0


def make_hma(endpoint: str | None) -> HmaService:
    return HmaService(HmaOptions.from_environment(endpoint))


register_service("hma", make_hma)  # on import: `cases verify` imports every module under safeset.services
