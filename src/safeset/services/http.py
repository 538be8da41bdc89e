"""The HTTP layer every verification adapter shares: timeouts, a client-side rate limit, retries with backoff.

Services answer overload with 429 (often with `Retry-After`) and transient faults with 5xx or dropped
connections; a batch must then be retried, not lost, and the retry must not hammer the service. Anything
else that is not a success (401, 403, a malformed body) is a `ServiceError` with one clear line, naming the
service and the HTTP status, never a traceback. Redirects are never followed: a hash sent to one host must not
be forwarded to another.
"""

from __future__ import annotations

import email.utils
import json
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx

from safeset.errors import SafesetError

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class ServiceError(SafesetError):
    """A verification service refused a request or answered something that cannot be read."""


@dataclass(frozen=True)
class HttpOptions:
    """How an adapter talks to its service (the same knobs for every service)."""

    timeout_s: float = 30.0
    max_retries: int = 5  # retries after the first attempt, for 429 / 5xx / connection errors
    backoff_base_s: float = 0.5  # first wait; doubled each retry (plus jitter) unless Retry-After says otherwise
    backoff_max_s: float = 60.0  # no single wait longer than this, Retry-After included
    requests_per_second: float = 5.0  # client-side ceiling, 0 for none
    user_agent: str = "safeset-verify"

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.max_retries < 0 or self.backoff_base_s < 0 or self.requests_per_second < 0:
            raise SafesetError("HTTP options: timeout must be > 0; retries, backoff and rate must be >= 0")


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds to wait: delta-seconds or an HTTP date (RFC 9110 §10.2.3); None when unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class RateLimiter:
    """At most `rate` request starts per second, spaced evenly (a thread-safe minimum interval)."""

    def __init__(
        self, rate: float, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
    ):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._clock, self._sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if self.interval == 0.0:
            return
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            self._sleep(start - now)


class HttpTransport:
    """One service's HTTP client: every request goes through the rate limit and the retry loop."""

    def __init__(
        self,
        service: str,
        options: HttpOptions,
        *,
        auth: httpx.Auth | None = None,
        headers: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.service = service
        self.options = options
        self._sleep = sleep
        self.limiter = RateLimiter(options.requests_per_second, sleep=sleep)
        self.client = httpx.Client(
            auth=auth,
            headers={"User-Agent": options.user_agent, **(headers or {})},
            timeout=httpx.Timeout(options.timeout_s),
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment: hashes go to the configured endpoint only
        )

    def close(self) -> None:
        self.client.close()

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.options.backoff_max_s)
        wait = self.options.backoff_base_s * (2**attempt)
        return min(wait + random.uniform(0, wait / 4), self.options.backoff_max_s)

    def request(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        accept: frozenset[int] = frozenset(),
    ) -> httpx.Response:
        """Send with retries; return a 2xx response (or one whose status is in `accept`), else raise ServiceError."""
        last_problem = ""
        for attempt in range(self.options.max_retries + 1):
            self.limiter.wait()
            try:
                response = self.client.request(method, url, json=json_body, params=params)
            except httpx.TransportError as exc:  # connection refused/reset, timeouts
                last_problem = f"{type(exc).__name__}: {exc}"
                retry_after = None
            else:
                if response.is_success or response.status_code in accept:
                    return response
                if response.status_code not in RETRY_STATUSES:
                    raise ServiceError(f"{self.service}: {self._describe(response)}")
                last_problem = self._describe(response)
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            if attempt < self.options.max_retries:
                self._sleep(self._backoff(attempt, retry_after))
        raise ServiceError(
            f"{self.service}: gave up after {self.options.max_retries + 1} attempts; last: {last_problem}"
        )

    def _describe(self, response: httpx.Response) -> str:
        status = response.status_code
        if 300 <= status < 400:
            return f"HTTP {status} redirect to {response.headers.get('Location', '?')!r} (redirects are not followed)"
        what = {401: "unauthorised: check the credentials", 403: "forbidden: check the credentials"}.get(status, "")
        detail = _error_detail(response)
        return (
            f"HTTP {status} {response.reason_phrase}"
            + (f" ({what})" if what else "")
            + (f": {detail}" if detail else "")
        )


def _error_detail(response: httpx.Response) -> str:
    """The service's own one-line reason, from the JSON error shapes these services use, or a short text body."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        text = response.text.strip().splitlines()
        return text[0][:200] if text else ""
    if isinstance(body, dict):
        for field in ("detail", "message", "error"):
            if isinstance(body.get(field), str):
                return body[field][:200]
    return ""


def json_of(response: httpx.Response, service: str) -> Any:
    """The response body as JSON, or a ServiceError saying the service answered something else."""
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ServiceError(
            f"{service}: malformed JSON in the answer to {response.request.method} {response.request.url.path} "
            f"(HTTP {response.status_code}): {exc}"
        ) from None


class HttpService:
    """What every adapter shares: its options' endpoint, one transport opened on first use (credentials are read
    only then, so a dry run needs none) and closed with the adapter."""

    label: str  # the service's name in messages

    def __init__(self, endpoint: str, http: HttpOptions, sleep: Any = None) -> None:
        self._endpoint = endpoint if endpoint.endswith("/") else endpoint + "/"
        self._http = http
        self._sleep = sleep
        self._transport: HttpTransport | None = None

    def _url(self, path: str) -> str:
        return urljoin(self._endpoint, path)

    def _transport_options(self) -> dict[str, Any]:
        """Headers or auth of this service (reads credentials; raises SafesetError naming what is missing)."""
        return {}

    def _client(self) -> HttpTransport:
        if self._transport is None:
            extra = {} if self._sleep is None else {"sleep": self._sleep}
            self._transport = HttpTransport(self.label, self._http, **self._transport_options(), **extra)
        return self._transport

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
