"""`safeset review`: a page on 127.0.0.1 to triage cases without viewing them.

Why each defence is here:
- It binds 127.0.0.1 only, and answers only requests whose path starts with a random token (printed once in
  the URL) and whose Host header names this server: another local user, a web page in the reviewer's browser
  (DNS rebinding) or a guessed URL gets 403.
- Every page is sent with `Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline';
  form-action 'self'` and no script at all: nothing on it can request anything, even if a dataset URL or caption
  smuggled markup past the escaping. URLs are shown as escaped text, never as links or images; the referrer is
  never sent.
- State changes are POST forms carrying a CSRF token distinct from the URL token (the URL token may end up in
  the browser history; the CSRF token only lives in the page), and a cross-site `Origin` is refused.
- The case store is the only state; every action goes through its transitions, so the audit log records who
  did what and why.
"""

from __future__ import annotations

import getpass
import hmac
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from html import escape
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs, urlencode
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from safeset.errors import SafesetError

CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
SECURITY_HEADERS = [
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cache-Control", "no-store"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
]
MAX_FORM_BYTES = 1 << 20
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


@dataclass(frozen=True)
class ReviewOptions:
    port: int = 0  # 0: a free port chosen by the system
    page_size: int = 100
    who: str = ""  # recorded in the audit log; default: the login name
    service: str | None = None  # verification service for "submit" (none: the button is left out)
    endpoint: str | None = None


class _Refused(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


class ReviewApp:
    """The WSGI application: routing, token and CSRF checks, pages. `store` is a `safeset.cases.CaseStore`."""

    def __init__(self, store: Any, options: ReviewOptions, service: Any = None) -> None:
        from safeset.cases import CaseState

        self.store = store
        self.options = options
        self.service = service
        self.states = [s.value for s in CaseState]
        self.state_type = CaseState
        self.token = secrets.token_urlsafe(24)
        self.csrf = secrets.token_urlsafe(24)
        self.who = options.who or _login_name()
        self.allowed_hosts: set[str] = set()
        self._lock = threading.Lock()  # one store operation at a time: the page is for one reviewer

    @property
    def root(self) -> str:
        return f"/{self.token}/"

    # --- WSGI ----------------------------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            status, headers, body = self._route(environ)
        except _Refused as refused:
            status, headers, body = refused.status, [], _page("Refused", f"<p>{escape(str(refused))}</p>")
        except SafesetError as exc:
            status, headers, body = "409 Conflict", [], _page("Not done", f"<p class=err>{escape(str(exc))}</p>")
        payload = body.encode("utf-8")
        start_response(
            status,
            [
                ("Content-Type", "text/html; charset=utf-8"),
                ("Content-Length", str(len(payload))),
                *SECURITY_HEADERS,
                *headers,
            ],
        )
        return [payload]

    def _route(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], str]:
        host = environ.get("HTTP_HOST", "")
        if self.allowed_hosts and host not in self.allowed_hosts:
            raise _Refused("403 Forbidden", "wrong Host header")
        path = environ.get("PATH_INFO", "")
        given = path.split("/")[1] if path.startswith("/") else ""
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            raise _Refused("403 Forbidden", "this page needs the token printed by `safeset review`")
        rest = path[len(self.root) - 1 :]
        method = environ.get("REQUEST_METHOD", "GET")
        query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        if method == "GET" and rest in ("/", ""):
            return "200 OK", [], self._list_page(query)
        if method == "GET" and rest.startswith("/case/"):
            return "200 OK", [], self._case_page(_int(rest.removeprefix("/case/"), "case id"), query.get("msg"))
        if method == "POST" and rest == "/action":
            return self._action(environ)
        raise _Refused("404 Not Found", "no such page")

    # --- pages ---------------------------------------------------------------------------------------------------
    def _filters(self, query: dict[str, str]) -> dict[str, Any]:
        state = query.get("state") or None
        if state is not None and state not in self.states:
            raise _Refused("400 Bad Request", f"unknown state {state!r}")
        min_score = query.get("min_score") or None
        return {
            "state": state,
            "detector": query.get("detector") or None,
            "bank": query.get("bank") or None,
            "min_score": _float(min_score, "min score") if min_score is not None else None,
        }

    def _list_page(self, query: dict[str, str]) -> str:
        filters = self._filters(query)
        offset = max(_int(query.get("offset", "0"), "offset"), 0)
        with self._lock:
            cases = self.store.list_cases(
                state=self.state_type(filters["state"]) if filters["state"] else None,
                detector=filters["detector"],
                bank=filters["bank"],
                min_score=filters["min_score"],
                limit=self.options.page_size + 1,
                offset=offset,
            )
        more = len(cases) > self.options.page_size
        cases = cases[: self.options.page_size]
        shown = {k: ("" if v is None else str(v)) for k, v in filters.items()}
        options = "".join(
            f"<option value='{escape(s)}'{' selected' if s == shown['state'] else ''}>{escape(s)}</option>"
            for s in ["", *self.states]
        )
        filter_form = (
            f"<form method=get action='{self.root}' class=filters>"
            f"<label>state <select name=state>{options}</select></label>"
            f"<label>detector <input name=detector value='{escape(shown['detector'])}' size=12></label>"
            f"<label>bank <input name=bank value='{escape(shown['bank'])}' size=14></label>"
            f"<label>min score <input name=min_score value='{escape(shown['min_score'])}' size=6></label>"
            "<button type=submit id=apply-filters>filter</button></form>"
        )
        rows = "".join(self._case_row(c) for c in cases)
        back = self.root + ("?" + urlencode({k: v for k, v in shown.items() if v}) if any(shown.values()) else "")
        submit = (
            f"<button name=action value=submit id=bulk-submit>submit to {escape(self.service.name)}</button>"
            if self.service is not None
            else "<span class=muted>(start with --service to submit cases for verification)</span>"
        )
        table = (
            f"<form method=post action='{self.root}action' id=bulk>"
            f"<input type=hidden name=csrf value='{self.csrf}'><input type=hidden name=back value='{escape(back)}'>"
            "<table id=cases><tr><th></th><th>case</th><th>state</th><th>identity</th><th>detectors</th>"
            "<th>banks</th><th class=n>best score</th><th class=n>rows</th><th>first key</th><th>updated</th></tr>"
            f"{rows or '<tr><td colspan=10 class=muted>no cases match</td></tr>'}</table>"
            "<div class=actions><label>reason <input name=reason id=reason size=40></label>"
            f"<button name=action value=dismiss id=bulk-dismiss>dismiss selected</button> {submit}</div></form>"
        )
        pager = ""
        if offset or more:
            prev_q = urlencode(
                {**{k: v for k, v in shown.items() if v}, "offset": max(offset - self.options.page_size, 0)}
            )
            next_q = urlencode({**{k: v for k, v in shown.items() if v}, "offset": offset + self.options.page_size})
            pager = (
                "<p class=pager>"
                + (f"<a href='{self.root}?{escape(prev_q)}'>previous</a> " if offset else "")
                + (f"<a href='{self.root}?{escape(next_q)}'>next</a>" if more else "")
                + "</p>"
            )
        return _page("Cases", filter_form + table + pager, who=self.who)

    def _case_row(self, case: Any) -> str:
        detectors = sorted({e.detector for e in case.evidence})
        banks = sorted({e.bank for e in case.evidence})
        scores = [e.score for e in case.evidence if e.score is not None]
        first_key = case.occurrences[0].key if case.occurrences else ""
        return (
            f"<tr data-case='{case.id}'><td><input type=checkbox name=case value='{case.id}' id='pick-{case.id}'></td>"
            f"<td><a href='{self.root}case/{case.id}'>#{case.id}</a></td>"
            f"<td class='state {escape(case.state.value)}'>{escape(case.state.value)}</td>"
            f"<td class=mono>{escape(_short(case.identity, 60))}</td>"
            f"<td>{escape(', '.join(detectors))}</td><td>{escape(', '.join(banks))}</td>"
            f"<td class=n>{escape(f'{max(scores):g}') if scores else ''}</td><td class=n>{len(case.occurrences)}</td>"
            f"<td class=mono>{escape(_short(first_key, 24))}</td><td>{escape(_when(case.updated_at))}</td></tr>"
        )

    def _case_page(self, case_id: int, message: str | None = None) -> str:
        with self._lock:
            case = self.store.get_case(case_id)
            trail = self.store.audit_trail(case_id)
        hashes = "".join(
            f"<tr><th>{name}</th><td class=mono>{escape(value)}</td></tr>"
            for name, value in (
                ("identity", case.identity),
                ("md5", case.md5),
                ("sha1", getattr(case, "sha1", None)),
                ("sha256", getattr(case, "sha256", None)),
                ("pdq", case.pdq),
                ("reference", getattr(case, "reference", None)),
            )
            if value
        )
        evidence = "".join(
            f"<tr><td>{escape(e.detector)}</td><td>{escape(e.bank)}</td><td class=mono>{escape(e.evidence)}</td>"
            f"<td>{escape(e.action)}</td><td class=n>{'' if e.score is None else escape(f'{e.score:g}')}</td></tr>"
            for e in case.evidence
        )
        occurrences = "".join(
            f"<tr><td class=mono>{escape(o.key)}</td><td>{escape(o.shard)}</td><td class=n>{o.row}</td>"
            f"<td class='mono url'>{escape(o.url or '')}</td></tr>"
            for o in case.occurrences
        )
        audit = "".join(
            f"<tr class=audit><td class=n>{a.seq}</td><td>{escape(_when(a.at))}</td><td>{escape(a.who)}</td>"
            f"<td>{escape(a.from_state.value if a.from_state else '—')} → {escape(a.to_state.value)}</td>"
            f"<td>{escape(a.reason)}</td><td class=mono>{escape(a.reference or '')}</td>"
            f"<td class=mono title='{escape(a.entry_hash)}'>{escape(a.entry_hash[:12])}</td></tr>"
            for a in trail
        )
        back = f"{self.root}case/{case.id}"
        submit = (
            f"<button name=action value=submit>submit to {escape(self.service.name)}</button>"
            if self.service is not None
            else ""
        )
        actions = (
            f"<form method=post action='{self.root}action'><input type=hidden name=csrf value='{self.csrf}'>"
            f"<input type=hidden name=back value='{escape(back)}'><input type=hidden name=case value='{case.id}'>"
            "<label>reason <input name=reason size=40></label> "
            f"<button name=action value=dismiss>dismiss</button> {submit}</form>"
        )
        flash = f"<p class=flash>{escape(message)}</p>" if message else ""
        body = (
            f"<p><a href='{self.root}'>← all cases</a></p>{flash}"
            f"<p>state <b class='state {escape(case.state.value)}'>{escape(case.state.value)}</b> · first seen "
            f"{escape(_when(case.first_seen))} · updated {escape(_when(case.updated_at))}</p>"
            f"<h2>Hashes</h2><table>{hashes}</table>"
            "<h2>Evidence</h2><table id=evidence><tr><th>detector</th><th>bank</th><th>evidence</th><th>action</th>"
            f"<th class=n>score</th></tr>{evidence}</table>"
            "<h2>Dataset rows</h2><p class=muted>URLs are shown as text only; they are never fetched.</p>"
            "<table id=occurrences><tr><th>key</th><th>shard</th><th class=n>row</th><th>url</th></tr>"
            f"{occurrences}</table><h2>Actions</h2>{actions}"
            "<h2>Audit trail</h2><table id=audit><tr><th class=n>#</th><th>at</th><th>who</th><th>move</th>"
            f"<th>reason</th><th>reference</th><th>entry hash</th></tr>{audit}</table>"
        )
        return _page(f"Case #{case.id}", body, who=self.who)

    # --- actions -------------------------------------------------------------------------------------------------
    def _action(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], str]:
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and origin != "null" and origin.split("://", 1)[-1] not in self.allowed_hosts:
            raise _Refused("403 Forbidden", "cross-site form post refused")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_FORM_BYTES:
            raise _Refused("400 Bad Request", "form too large or without a length")
        raw = environ["wsgi.input"].read(length)
        try:
            form = parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise _Refused("400 Bad Request", "form is not UTF-8") from None
        given_csrf = (form.get("csrf") or [""])[-1]
        if not hmac.compare_digest(given_csrf.encode(), self.csrf.encode()):
            raise _Refused("403 Forbidden", "stale or missing form token; reload the page")
        back = (form.get("back") or [self.root])[-1]
        if not back.startswith(self.root) or "//" in back or "\\" in back:
            back = self.root
        action = (form.get("action") or [""])[-1]
        ids = [_int(v, "case id") for v in form.get("case", [])]
        if not ids:
            raise SafesetError("no case selected")
        reason = (form.get("reason") or [""])[-1].strip()
        with self._lock:
            if action == "dismiss":
                if not reason:
                    raise SafesetError("dismissing needs a reason")
                self.store.transition(ids, self.state_type.DISMISSED, self.who, reason)
                message = f"dismissed {len(ids)} case(s)"
            elif action == "submit" and self.service is not None:
                message = self._submit(ids)
            else:
                raise _Refused("400 Bad Request", f"unknown action {action!r}")
        if back.startswith(f"{self.root}case/"):
            back += "?" + urlencode({"msg": message})
        return "303 See Other", [("Location", back)], _page("Done", f"<p>{escape(message)}</p>")

    def _submit(self, ids: list[int]) -> str:
        """Send the selected cases to the service now (hashes and a URL only), recording each answer."""
        from safeset.cases.verify import item_for

        cases = self.store.get_cases(ids)
        size = max(1, int(self.service.max_batch or 1))
        counts: dict[str, int] = {}
        for start in range(0, len(cases), size):
            batch = cases[start : start + size]
            self.store.mark_submitted([c.id for c in batch], self.service.name, self.who)
            verdicts = self.service.verify([item_for(c) for c in batch])
            self.store.record_verdicts(
                [
                    (
                        v.case_id,
                        self.state_type(v.outcome.value),
                        v.detail or f"{self.service.name} verdict",
                        v.reference,
                    )
                    for v in verdicts
                ],
                self.who,
            )
            for v in verdicts:
                counts[v.outcome.value] = counts.get(v.outcome.value, 0) + 1
        return f"sent {len(cases)} case(s) to {self.service.name}: " + ", ".join(f"{n} {k}" for k, n in counts.items())


# --- helpers ---------------------------------------------------------------------------------------------------

CSS = """
body{margin:0;font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1f2933;background:#f5f7f9}
header{background:#1f3a5a;color:#fff;padding:12px 24px}header h1{margin:0;font-size:18px}
header span{color:#c9d6e3;font-size:12px}main{padding:16px 24px}a{color:#1f5fa0}
table{border-collapse:collapse;background:#fff;margin:6px 0 14px}td,th{border-bottom:1px solid #e3e7eb;
padding:4px 10px 4px 6px;text-align:left;vertical-align:top}.n{text-align:right}
.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px;word-break:break-all}
.filters label,.actions label{margin-right:12px}.filters{margin-bottom:10px}.actions{margin-top:6px}
.muted{color:#5f6b76}.err{color:#b3261e}.flash{background:#e8f3ea;border:1px solid #9fc5a8;padding:6px 10px}
.state{font-weight:600}.confirmed,.reported,.withheld{color:#b3261e}.dismissed,.not-confirmed{color:#5f6b76}
.candidate,.submitted{color:#9a6700}h2{font-size:15px;margin:18px 0 4px}
"""


def _page(title: str, body: str, who: str = "") -> str:
    whom = f"<span>reviewing as {escape(who)}</span>" if who else ""
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}"><meta name="referrer" content="no-referrer">'
        f"<title>safeset review · {escape(title)}</title><style>{CSS}</style></head>"
        f"<body><header><h1>safeset review · {escape(title)}</h1>{whom}</header><main>{body}</main></body></html>"
    )


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise _Refused("400 Bad Request", f"{what} {text[:40]!r} is not a number") from None


def _float(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _Refused("400 Bad Request", f"{what} {text[:40]!r} is not a number") from None
    if value != value:  # NaN
        raise _Refused("400 Bad Request", f"{what} is not a number")
    return value


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _when(moment: Any) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if hasattr(moment, "strftime") else str(moment)


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "reviewer"


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # the token is in every request line: keep it out of logs
        pass


@dataclass
class RunningReview:
    app: ReviewApp
    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.app.root}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_review(store: Any, options: ReviewOptions, service: Any = None) -> RunningReview:
    """Serve the review page on 127.0.0.1 in a background thread; `stop()` ends it."""
    app = ReviewApp(store, options, service)
    try:
        server = make_server("127.0.0.1", options.port, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
    except OSError as exc:
        raise SafesetError(f"cannot listen on 127.0.0.1:{options.port}: {exc.strerror or exc}") from None
    port = server.server_address[1]
    app.allowed_hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="safeset-review")
    thread.start()
    return RunningReview(app, server, thread)
