"""Microsoft PhotoDNA Cloud Service: `Match` by URL (the service fetches the image, not us).

`POST {endpoint}Match` with `{"DataRepresentation": "URL", "Value": url}` and the subscription key in
`Ocp-Apim-Subscription-Key`. The outcome arrives inside HTTP 200 as `Status.Code`: 3000 means the image was
checked (then `IsMatch`, a boolean or the string "True"); any other code (invalid or unreachable image, too
small, ...) says this item cannot be checked, which is `unverifiable`, not a failed run. Keys are read
case-insensitively (Microsoft's samples differ in case). Edge hashes need Microsoft's licensed library, so only
URL items can be sent; an item without a URL is unverifiable without a request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from safeset.errors import SafesetError
from safeset.services.base import Outcome, Verdict, VerificationItem, register_service
from safeset.services.http import HttpOptions, HttpService, ServiceError, json_of

ENDPOINT_ENV = "PHOTODNA_URL"
KEY_ENV = "PHOTODNA_SUBSCRIPTION_KEY"
DEFAULT_ENDPOINT = "https://api.microsoftmoderator.com/photodna/v1.0/"
STATUS_OK = 3000


@dataclass(frozen=True)
class PhotoDnaOptions:
    endpoint: str = DEFAULT_ENDPOINT
    subscription_key: str | None = None  # from PHOTODNA_SUBSCRIPTION_KEY when None
    http: HttpOptions = field(default_factory=HttpOptions)

    @classmethod
    def from_environment(cls, endpoint: str | None = None, **overrides: Any) -> PhotoDnaOptions:
        return cls(endpoint=endpoint or os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT, **overrides)


def _field(obj: Mapping[str, Any], name: str) -> Any:
    lowered = name.lower()
    for key, value in obj.items():
        if isinstance(key, str) and key.lower() == lowered:
            return value
    return None


def _is_true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


class PhotoDnaService(HttpService):
    name = "photodna"
    max_batch = 1  # Match takes one image per request

    label = "PhotoDNA"

    def __init__(self, options: PhotoDnaOptions, sleep: Any = None) -> None:
        super().__init__(options.endpoint, options.http, sleep)
        self.options = options

    def _match_url(self) -> str:
        return self._url("Match")

    @staticmethod
    def _body(url: str) -> dict[str, str]:
        return {"DataRepresentation": "URL", "Value": url}

    def requests_for(self, items: Sequence[VerificationItem]) -> list[dict[str, Any]]:
        return [{"method": "POST", "url": self._match_url(), "body": self._body(i.url)} for i in items if i.url]

    def _transport_options(self) -> dict[str, Any]:
        key = self.options.subscription_key or os.environ.get(KEY_ENV)
        if not key:
            raise SafesetError(f"PhotoDNA needs a subscription key: set {KEY_ENV}")
        return {"headers": {"Ocp-Apim-Subscription-Key": key}}

    def verify(self, items: Sequence[VerificationItem]) -> list[Verdict]:
        return [self._verify_one(item) for item in items]

    def _verify_one(self, item: VerificationItem) -> Verdict:
        if not item.url:
            return Verdict(item.case_id, Outcome.UNVERIFIABLE, detail="no URL (PhotoDNA Match takes URLs here)")
        response = self._client().request("POST", self._match_url(), json_body=self._body(item.url))
        body = json_of(response, "PhotoDNA")
        status = _field(body, "Status") if isinstance(body, dict) else None
        if not isinstance(status, dict) or not isinstance(_field(status, "Code"), int):
            raise ServiceError("PhotoDNA: Match answer has no Status.Code")
        code = int(_field(status, "Code"))
        tracking = _field(body, "TrackingId")
        reference = str(tracking) if tracking is not None else None
        if code != STATUS_OK:
            description = str(_field(status, "Description") or "").strip()
            return Verdict(item.case_id, Outcome.UNVERIFIABLE, reference, f"status {code} {description}".strip())
        if _is_true(_field(body, "IsMatch")):
            details = _field(body, "MatchDetails")
            flags = _field(details, "MatchFlags") if isinstance(details, dict) else None
            sources = ""
            if isinstance(flags, list):
                names = sorted({str(_field(f, "Source")) for f in flags if isinstance(f, dict) and _field(f, "Source")})
                sources = f" ({', '.join(names)})" if names else ""
            return Verdict(item.case_id, Outcome.CONFIRMED, reference, f"match{sources}")
        return Verdict(item.case_id, Outcome.NOT_CONFIRMED, reference, "no match")


def make_photodna(endpoint: str | None) -> PhotoDnaService:
    return PhotoDnaService(PhotoDnaOptions.from_environment(endpoint))


register_service("photodna", make_photodna)  # on import: `cases verify` imports every module under safeset.services
