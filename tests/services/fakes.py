"""Local stand-ins for the verification services, on 127.0.0.1 only, implementing each documented contract.

Each fake "knows" a set of PDQ hashes and/or URLs (benign stand-ins) and answers confirmed for those, and
validates every request strictly: the path and method the contract names, exactly the documented body or query
fields (hashes and URLs only — anything else is a violation), the credentials, and the Host header (a request
meant for another host would show here). Violations are recorded in `fake.violations` and answered with 400;
tests assert the list stays empty. `fake.script(status, ...)` queues canned answers (401, 429 with Retry-After,
503, malformed JSON) for the next requests, to drive the adapters' error paths.

Usage (also from the end-to-end flow tests):

    with FakeArachnid(known_pdqs={pdq_hex}) as fake:
        adapter = ArachnidShieldService(ArachnidOptions(endpoint=fake.url, username=fake.username, ...))
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from safeset.services.hma import url_md5

Answer = tuple[int, dict[str, str], bytes]


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    json: Any = None


def _json_answer(status: int, obj: Any, headers: Mapping[str, str] | None = None) -> Answer:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(obj).encode()


def hamming(a_hex: str, b_hex: str) -> int:
    return (int(a_hex, 16) ^ int(b_hex, 16)).bit_count()


@dataclass
class _Script:
    answers: deque[Answer] = field(default_factory=deque)


class FakeService:
    """A threaded HTTP server on 127.0.0.1 (random port); subclasses implement `answer`."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        self._script = _Script()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                fake._handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # --- lifecycle ---------------------------------------------------------------------------------------------
    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def url(self) -> str:
        """The endpoint to hand the adapter."""
        return self.base

    def start(self) -> FakeService:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- scripting ---------------------------------------------------------------------------------------------
    def script(
        self, status: int, body: Any = None, headers: Mapping[str, str] | None = None, raw: bytes | None = None
    ) -> None:
        """Answer the next (validated) request with this instead of the contract's answer."""
        if raw is not None:
            answer: Answer = (status, {"Content-Type": "text/html", **(headers or {})}, raw)
        else:
            answer = _json_answer(status, body if body is not None else {}, headers)
        self._script.answers.append(answer)

    def violate(self, message: str) -> Answer:
        self.violations.append(message)
        return _json_answer(400, {"detail": f"fake: {message}"})

    # --- serving -----------------------------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        split = urlsplit(handler.path)
        recorded = Recorded(
            method=handler.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
        )
        with self._lock:
            self.requests.append(recorded)
            answer = self._answer_checked(recorded)
        status, headers, payload = answer
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _answer_checked(self, request: Recorded) -> Answer:
        if request.headers.get("host") != f"127.0.0.1:{self.port}":
            return self.violate(f"Host header {request.headers.get('host')!r} is not this server")
        if request.body:
            if "application/json" not in request.headers.get("content-type", ""):
                return self.violate(f"body sent as {request.headers.get('content-type')!r}, not JSON")
            try:
                request.json = json.loads(request.body)
            except (json.JSONDecodeError, UnicodeDecodeError):
                return self.violate("request body is not JSON")
        problem = self.check(request)
        if problem:
            return self.violate(problem)
        if self._script.answers:
            return self._script.answers.popleft()
        return self.answer(request)

    def check(self, request: Recorded) -> str | None:
        """A contract violation in this request, or None."""
        raise NotImplementedError

    def answer(self, request: Recorded) -> Answer:
        raise NotImplementedError


# --- C3P Arachnid Shield --------------------------------------------------------------------------------------


class FakeArachnid(FakeService):
    """`POST v1/pdq/` and `POST v1/url/` with HTTP Basic auth; `v1/media/` is a violation (bytes would leave)."""

    def __init__(
        self,
        known_pdqs: Iterable[str] = (),
        known_urls: Iterable[str] = (),
        dead_urls: Iterable[str] = (),
        radius: int = 0,
        username: str = "fake-user",
        password: str = "fake-pass",
        null_for_no_match: bool = False,
        classification: str = "csam",
    ) -> None:
        super().__init__()
        self.known_pdqs = {p.lower() for p in known_pdqs}
        self.known_urls = set(known_urls)
        self.dead_urls = set(dead_urls)
        self.radius = radius
        self.username, self.password = username, password
        self.null_for_no_match = null_for_no_match
        self.classification = classification

    def check(self, request: Recorded) -> str | None:
        if request.path == "/v1/media/":
            return "v1/media/ called: image bytes must never be sent"
        if request.method != "POST" or request.path not in ("/v1/pdq/", "/v1/url/"):
            return f"unexpected {request.method} {request.path}"
        if request.query:
            return f"unexpected query {request.query}"
        if request.path == "/v1/pdq/":
            body = request.json
            if not isinstance(body, dict) or set(body) != {"hashes"} or not isinstance(body["hashes"], list):
                return f"v1/pdq/ body must be exactly {{'hashes': [...]}}, got {body!r}"
            for value in body["hashes"]:
                try:
                    raw = base64.b64decode(value, validate=True) if isinstance(value, str) else b""
                except binascii.Error:
                    raw = b""
                if len(raw) != 32:
                    return f"v1/pdq/ hash {value!r} is not standard base64 of 32 bytes"
            if len(body["hashes"]) != len(set(body["hashes"])):
                return "v1/pdq/ batch repeats a hash"
        else:
            body = request.json
            if not isinstance(body, dict) or set(body) != {"url"} or not isinstance(body["url"], str):
                return f"v1/url/ body must be exactly {{'url': str}}, got {body!r}"
            if not body["url"].startswith(("http://", "https://")):
                return f"v1/url/ url {body['url']!r} is not absolute http(s)"
        return None

    def _authorised(self, request: Recorded) -> bool:
        expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return request.headers.get("authorization") == f"Basic {expected}"

    def _known(self, pdq_hex: str) -> str | None:
        for known in self.known_pdqs:
            if hamming(known, pdq_hex) <= self.radius:
                return known
        return None

    def answer(self, request: Recorded) -> Answer:
        if not self._authorised(request):
            return _json_answer(401, {"detail": "Invalid username/password."})
        if request.path == "/v1/pdq/":
            scanned: dict[str, Any] = {}
            for value in request.json["hashes"]:
                pdq_hex = base64.b64decode(value).hex()
                known = self._known(pdq_hex)
                if known is None:
                    no_match = {"classification": "no-known-match", "match_type": None, "near_match_details": None}
                    scanned[value] = None if self.null_for_no_match else no_match
                else:
                    scanned[value] = {
                        "classification": self.classification,
                        "match_type": "exact" if known == pdq_hex else "near",
                        "near_match_details": {
                            "timestamp": 0.0,
                            "sha1_base32": base64.b32encode(hashlib.sha1(bytes.fromhex(known)).digest()).decode(),
                            "sha256_hex": hashlib.sha256(bytes.fromhex(known)).hexdigest(),
                            "classification": self.classification,
                        },
                    }
            return _json_answer(200, {"scanned_hashes": scanned})
        url = request.json["url"]
        if url in self.dead_urls:
            return _json_answer(422, {"detail": "The media at the given URL could not be retrieved."})
        digest = hashlib.sha256(url.encode()).hexdigest()
        known = url in self.known_urls
        return _json_answer(
            200,
            {
                "size_bytes": 1234,
                "sha1_base32": base64.b32encode(hashlib.sha1(url.encode()).digest()).decode(),
                "sha256_hex": digest,
                "classification": self.classification if known else "no-known-match",
                "match_type": "exact" if known else None,
                "near_match_details": [],
            },
        )


# --- Meta HMA / OpenMediaMatch ------------------------------------------------------------------------------


class FakeHma(FakeService):
    """`GET /m/lookup?signal_type=pdq|url_md5&signal=...` → bank-keyed matches; optional bearer token (proxy)."""

    def __init__(
        self,
        pdq_banks: Mapping[str, Iterable[str]] | None = None,
        url_banks: Mapping[str, Iterable[str]] | None = None,
        radius: int = 31,
        token: str | None = None,
    ) -> None:
        super().__init__()
        self.pdq_banks = {bank: [p.lower() for p in pdqs] for bank, pdqs in (pdq_banks or {}).items()}
        # URL banks are given as URLs and held as the MD5s HMA would store (ThreatExchange HASH_URL_MD5)
        self.url_banks = {bank: [url_md5(u) for u in urls] for bank, urls in (url_banks or {}).items()}
        self.radius = radius
        self.token = token

    def check(self, request: Recorded) -> str | None:
        if request.method != "GET" or request.path != "/m/lookup":
            return f"unexpected {request.method} {request.path}"
        if request.body:
            return "GET /m/lookup with a body"
        if set(request.query) != {"signal_type", "signal"} or any(len(v) != 1 for v in request.query.values()):
            return f"/m/lookup query must be exactly signal_type and signal, got {request.query}"
        signal_type, signal = request.query["signal_type"][0], request.query["signal"][0]
        digits = {"pdq": 64, "url_md5": 32}.get(signal_type)
        if digits is None:
            return f"signal_type {signal_type!r} is not pdq or url_md5"
        if len(signal) != digits or any(c not in "0123456789abcdef" for c in signal):
            return f"{signal_type} signal {signal!r} is not {digits} lower-case hex digits"
        return None

    def answer(self, request: Recorded) -> Answer:
        if self.token is not None and request.headers.get("authorization") != f"Bearer {self.token}":
            return _json_answer(401, {"message": "missing or wrong bearer token"})
        signal_type, signal = request.query["signal_type"][0], request.query["signal"][0]
        found: dict[str, list[dict[str, Any]]] = {}
        if signal_type == "pdq":
            for bank, pdqs in self.pdq_banks.items():
                for content_id, known in enumerate(pdqs, start=1):
                    if (distance := hamming(known, signal)) <= self.radius:
                        found.setdefault(bank, []).append({"bank_content_id": content_id, "distance": str(distance)})
        else:
            for bank, digests in self.url_banks.items():
                for content_id, known in enumerate(digests, start=1001):
                    if known == signal:
                        found.setdefault(bank, []).append({"bank_content_id": content_id, "distance": "-"})
        return _json_answer(200, found)


# --- Microsoft PhotoDNA Cloud ---------------------------------------------------------------------------------


class FakePhotoDna(FakeService):
    """`POST /photodna/v1.0/Match` with `Ocp-Apim-Subscription-Key`; outcome codes inside HTTP 200."""

    PREFIX = "/photodna/v1.0/"

    def __init__(
        self, known_urls: Iterable[str] = (), unreachable_urls: Iterable[str] = (), key: str = "fake-key"
    ) -> None:
        super().__init__()
        self.known_urls = set(known_urls)
        self.unreachable_urls = set(unreachable_urls)
        self.key = key
        self._tracking = 0

    @property
    def url(self) -> str:
        return self.base + self.PREFIX.lstrip("/")

    def check(self, request: Recorded) -> str | None:
        if request.method != "POST" or request.path != self.PREFIX + "Match":
            return f"unexpected {request.method} {request.path}"
        if set(request.query) - {"enhance"}:
            return f"unexpected query {request.query}"
        body = request.json
        if not isinstance(body, dict) or {k.lower() for k in body} != {"datarepresentation", "value"}:
            return f"Match body must be exactly DataRepresentation and Value, got {body!r}"
        fields = {k.lower(): v for k, v in body.items()}
        if fields["datarepresentation"] != "URL" or not isinstance(fields["value"], str):
            return f"Match body must be a URL representation, got {body!r}"
        return None

    def answer(self, request: Recorded) -> Answer:
        if request.headers.get("ocp-apim-subscription-key") != self.key:
            return _json_answer(
                401,
                {
                    "statusCode": 401,
                    "message": "Access denied due to invalid subscription key. Make sure to provide a valid key.",
                },
            )
        self._tracking += 1
        url = {k.lower(): v for k, v in request.json.items()}["value"]
        tracking = f"WUS_fake_{self._tracking:06d}"
        if url in self.unreachable_urls:
            status = {"Code": 3208, "Description": "Image could not be downloaded", "Exception": None}
            return _json_answer(200, {"Status": status, "TrackingId": tracking, "IsMatch": False})
        is_match = url in self.known_urls
        flags = [{"AdvancedInfo": [], "Source": "Test", "Violations": ["A1"]}] if is_match else []
        return _json_answer(
            200,
            {
                "Status": {"Code": 3000, "Description": "OK", "Exception": None},
                "ContentId": None,
                "IsMatch": is_match,
                "MatchDetails": {"AdvancedInfo": [], "MatchFlags": flags},
                "TrackingId": tracking,
                "EvaluateResponse": None,
            },
        )
