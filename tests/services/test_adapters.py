"""Each adapter against its local fake: request shapes (hashes and URLs only), verdicts, and the error paths."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safeset.errors import SafesetError
from safeset.services import load_services, service
from safeset.services.arachnid import ArachnidOptions, ArachnidShieldService, pdq_base64
from safeset.services.base import SERVICES, Outcome, VerificationItem
from safeset.services.hma import HmaOptions, HmaService, url_md5
from safeset.services.http import HttpOptions, RateLimiter, ServiceError, retry_after_seconds
from safeset.services.photodna import PhotoDnaOptions, PhotoDnaService
from tests.services.fakes import FakeArachnid, FakeHma, FakePhotoDna

KNOWN = hashlib.sha256(b"known stand-in").hexdigest()
OTHER = hashlib.sha256(b"ordinary photo").hexdigest()
NEAR = f"{int(KNOWN, 16) ^ 0b1011:064x}"  # 3 bits away
NO_WAIT = HttpOptions(requests_per_second=0, max_retries=3, backoff_base_s=0.01, timeout_s=5)


def flip(hex_hash: str, bits: int) -> str:
    return f"{int(hex_hash, 16) ^ ((1 << bits) - 1):064x}"


@pytest.fixture
def arachnid_fake():
    with FakeArachnid(
        known_pdqs=[KNOWN], known_urls=["https://img.example.org/known.jpg"], dead_urls=["https://gone.example/x.jpg"]
    ) as fake:
        yield fake
        assert fake.violations == []


def arachnid(fake: FakeArachnid, sleeps: list[float] | None = None, **options) -> ArachnidShieldService:
    opts = ArachnidOptions(endpoint=fake.url, username=fake.username, password=fake.password, http=NO_WAIT, **options)
    return ArachnidShieldService(opts, sleep=(sleeps.append if sleeps is not None else None))


# --- Arachnid Shield ------------------------------------------------------------------------------------------


def test_arachnid_batches_pdq_and_sends_urls_alone(arachnid_fake: FakeArachnid) -> None:
    items = [
        VerificationItem(1, pdq=KNOWN, md5="0" * 32, url="https://img.example.org/a.jpg"),
        VerificationItem(2, pdq=OTHER),
        VerificationItem(3, pdq=flip(OTHER, 5)),
        VerificationItem(4, url="https://img.example.org/known.jpg"),
        VerificationItem(5, url="https://img.example.org/other.jpg"),
        VerificationItem(6, md5="1" * 32),  # nothing Arachnid takes
        VerificationItem(7, url="https://gone.example/x.jpg"),
    ]
    verdicts = arachnid(arachnid_fake, max_batch=2).verify(items)
    assert [v.case_id for v in verdicts] == [1, 2, 3, 4, 5, 6, 7]
    assert [v.outcome for v in verdicts] == [
        Outcome.CONFIRMED,
        Outcome.NOT_CONFIRMED,
        Outcome.NOT_CONFIRMED,
        Outcome.CONFIRMED,
        Outcome.NOT_CONFIRMED,
        Outcome.UNVERIFIABLE,
        Outcome.UNVERIFIABLE,
    ]
    assert verdicts[0].reference == "sha256:" + hashlib.sha256(bytes.fromhex(KNOWN)).hexdigest()
    assert "csam" in verdicts[0].detail
    paths = [r.path for r in arachnid_fake.requests]
    assert paths == ["/v1/pdq/", "/v1/pdq/", "/v1/url/", "/v1/url/", "/v1/url/"]  # 3 PDQs in batches of 2
    first = arachnid_fake.requests[0].json
    assert first == {"hashes": [base64.b64encode(bytes.fromhex(KNOWN)).decode(), pdq_base64(OTHER)]}
    # item 1 had a URL too, but its PDQ went; the md5 never leaves
    sent = b"".join(r.body for r in arachnid_fake.requests)
    assert b"a.jpg" not in sent and b"0" * 32 not in sent


def test_arachnid_dry_run_matches_what_is_sent(arachnid_fake: FakeArachnid) -> None:
    items = [VerificationItem(i, pdq=flip(KNOWN, i)) for i in range(5)] + [VerificationItem(9, url="http://h/x")]
    adapter = arachnid(arachnid_fake, max_batch=2)
    planned = adapter.requests_for(items)
    assert arachnid_fake.requests == []  # planning sends nothing
    adapter.verify(items)
    assert [(p["url"].removeprefix(arachnid_fake.url), p["body"]) for p in planned] == [
        (r.path.lstrip("/"), r.json) for r in arachnid_fake.requests
    ]
    assert all("password" not in str(p) and arachnid_fake.password not in str(p) for p in planned)


def test_arachnid_no_match_as_null(arachnid_fake: FakeArachnid) -> None:
    arachnid_fake.null_for_no_match = True
    verdicts = arachnid(arachnid_fake).verify([VerificationItem(1, pdq=OTHER), VerificationItem(2, pdq=KNOWN)])
    assert [v.outcome for v in verdicts] == [Outcome.NOT_CONFIRMED, Outcome.CONFIRMED]


def test_arachnid_near_match_by_radius() -> None:
    with FakeArachnid(known_pdqs=[KNOWN], radius=8) as fake:
        verdicts = arachnid(fake).verify([VerificationItem(1, pdq=NEAR), VerificationItem(2, pdq=flip(KNOWN, 9))])
        assert [v.outcome for v in verdicts] == [Outcome.CONFIRMED, Outcome.NOT_CONFIRMED]
        assert "match near" in verdicts[0].detail
        assert fake.violations == []


def test_arachnid_wrong_credentials_is_one_clear_error(arachnid_fake: FakeArachnid) -> None:
    adapter = ArachnidShieldService(
        ArachnidOptions(endpoint=arachnid_fake.url, username="someone", password="wrong", http=NO_WAIT)
    )
    with pytest.raises(ServiceError, match=r"HTTP 401 .*check the credentials.*Invalid username/password"):
        adapter.verify([VerificationItem(1, pdq=KNOWN)])
    assert len(arachnid_fake.requests) == 1  # 401 is not retried


def test_arachnid_credentials_come_from_environment(arachnid_fake: FakeArachnid, monkeypatch) -> None:
    monkeypatch.setenv("ARACHNID_SHIELD_URL", arachnid_fake.url)
    monkeypatch.delenv("ARACHNID_SHIELD_USERNAME", raising=False)
    monkeypatch.delenv("ARACHNID_SHIELD_PASSWORD", raising=False)
    adapter = service("arachnid")
    assert adapter.requests_for([VerificationItem(1, pdq=KNOWN)])[0]["url"] == arachnid_fake.url + "v1/pdq/"
    with pytest.raises(SafesetError, match="ARACHNID_SHIELD_USERNAME and ARACHNID_SHIELD_PASSWORD"):
        adapter.verify([VerificationItem(1, pdq=KNOWN)])
    assert arachnid_fake.requests == []
    monkeypatch.setenv("ARACHNID_SHIELD_USERNAME", arachnid_fake.username)
    monkeypatch.setenv("ARACHNID_SHIELD_PASSWORD", arachnid_fake.password)
    assert service("arachnid").verify([VerificationItem(1, pdq=KNOWN)])[0].outcome is Outcome.CONFIRMED


def test_429_with_retry_after_is_honoured(arachnid_fake: FakeArachnid) -> None:
    arachnid_fake.script(429, {"detail": "Request was throttled."}, headers={"Retry-After": "7"})
    sleeps: list[float] = []
    verdicts = arachnid(arachnid_fake, sleeps).verify([VerificationItem(1, pdq=KNOWN)])
    assert verdicts[0].outcome is Outcome.CONFIRMED
    assert sleeps == [7.0]
    assert len(arachnid_fake.requests) == 2 and arachnid_fake.requests[0].json == arachnid_fake.requests[1].json


def test_503_then_success_backs_off_exponentially(arachnid_fake: FakeArachnid) -> None:
    arachnid_fake.script(503, raw=b"<html>Service Unavailable</html>")
    arachnid_fake.script(502, raw=b"bad gateway")
    sleeps: list[float] = []
    verdicts = arachnid(arachnid_fake, sleeps).verify([VerificationItem(1, pdq=OTHER)])
    assert verdicts[0].outcome is Outcome.NOT_CONFIRMED
    assert len(sleeps) == 2 and 0.01 <= sleeps[0] <= 0.0125 and 0.02 <= sleeps[1] <= 0.025


def test_persistent_503_gives_up_with_the_last_status(arachnid_fake: FakeArachnid) -> None:
    for _ in range(4):
        arachnid_fake.script(503, {"detail": "maintenance"})
    with pytest.raises(ServiceError, match=r"gave up after 4 attempts; last: HTTP 503 .*maintenance"):
        arachnid(arachnid_fake, []).verify([VerificationItem(1, pdq=OTHER)])


def test_malformed_json_is_a_clear_error(arachnid_fake: FakeArachnid) -> None:
    arachnid_fake.script(200, raw=b"{not json")
    with pytest.raises(ServiceError, match=r"Arachnid Shield: malformed JSON in the answer to POST /v1/pdq/"):
        arachnid(arachnid_fake).verify([VerificationItem(1, pdq=OTHER)])


def test_answer_missing_a_hash_is_an_error(arachnid_fake: FakeArachnid) -> None:
    arachnid_fake.script(200, {"scanned_hashes": {}})
    with pytest.raises(ServiceError, match="lacks the submitted hash"):
        arachnid(arachnid_fake).verify([VerificationItem(1, pdq=OTHER)])


def test_connection_refused_is_retried_then_reported() -> None:
    fake = FakeArachnid()  # bound, never started and closed: connections are refused
    fake.server.server_close()
    sleeps: list[float] = []
    with pytest.raises(ServiceError, match=r"gave up after 4 attempts; last: ConnectError"):
        arachnid(fake, sleeps).verify([VerificationItem(1, pdq=OTHER)])
    assert len(sleeps) == 3


def test_redirect_to_another_host_is_not_followed(arachnid_fake: FakeArachnid) -> None:
    arachnid_fake.script(307, {}, headers={"Location": "http://192.0.2.1/v1/pdq/"})
    with pytest.raises(ServiceError, match=r"HTTP 307 redirect to 'http://192.0.2.1/v1/pdq/' \(redirects are not"):
        arachnid(arachnid_fake).verify([VerificationItem(1, pdq=OTHER)])
    assert len(arachnid_fake.requests) == 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_hostile_answers_never_crash(arachnid_fake: FakeArachnid, payload: bytes) -> None:
    """Whatever bytes come back, the adapter answers or raises ServiceError, never anything else."""
    arachnid_fake.script(200, raw=payload)
    try:
        arachnid(arachnid_fake).verify([VerificationItem(1, pdq=OTHER)])
    except ServiceError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3),
        max_leaves=8,
    )
)
def test_hostile_json_shapes_never_crash(arachnid_fake: FakeArachnid, body) -> None:
    arachnid_fake.script(200, {"scanned_hashes": {pdq_base64(OTHER): body}})
    try:
        verdicts = arachnid(arachnid_fake).verify([VerificationItem(1, pdq=OTHER)])
    except ServiceError:
        return
    assert verdicts[0].outcome in (Outcome.CONFIRMED, Outcome.NOT_CONFIRMED)


# --- HMA ------------------------------------------------------------------------------------------------------


def test_hma_pdq_and_url_md5_lookups() -> None:
    url = "HTTPS://Img.Example.org/Known.jpg?x=1"
    with FakeHma(pdq_banks={"TEST_PDQ": [KNOWN]}, url_banks={"TEST_URLS": [url]}, token="t0k") as fake:
        adapter = HmaService(HmaOptions(endpoint=fake.url, bearer_token="t0k", http=NO_WAIT))
        items = [
            VerificationItem(1, pdq=NEAR, url="https://img.example.org/ignored.jpg"),
            VerificationItem(2, pdq=flip(KNOWN, 40)),
            VerificationItem(3, url=url),
            VerificationItem(4, url="https://img.example.org/unknown.jpg"),
            VerificationItem(5, md5="2" * 32),
        ]
        verdicts = adapter.verify(items)
        assert [v.outcome for v in verdicts] == [
            Outcome.CONFIRMED,
            Outcome.NOT_CONFIRMED,
            Outcome.CONFIRMED,
            Outcome.NOT_CONFIRMED,
            Outcome.UNVERIFIABLE,
        ]
        assert verdicts[0].reference == "TEST_PDQ:1" and "distance 3" in verdicts[0].detail
        assert verdicts[2].reference == "TEST_URLS:1001"
        assert [r.query for r in fake.requests][:3] == [
            {"signal_type": ["pdq"], "signal": [NEAR]},
            {"signal_type": ["pdq"], "signal": [flip(KNOWN, 40)]},
            {"signal_type": ["url_md5"], "signal": [url_md5(url)]},
        ]
        assert len(fake.requests) == 4  # item 5: no request
        assert all(b"example" not in r.path.encode() + r.body for r in fake.requests)  # URLs leave only hashed
        assert adapter.requests_for(items)[2]["params"] == {"signal_type": "url_md5", "signal": url_md5(url)}
        assert fake.violations == []


def test_hma_url_md5_is_threatexchange_convention() -> None:
    from threatexchange.signal_type.url_md5 import UrlMD5Signal

    url = "https://Example.COM/Path/Img.JPG?q=A"
    assert url_md5(url) == UrlMD5Signal.hash_from_str(url)


def test_hma_bank_filter_and_auth_errors() -> None:
    with FakeHma(pdq_banks={"OTHER_BANK": [KNOWN]}, token="t0k") as fake:
        filtered = HmaService(HmaOptions(endpoint=fake.url, bearer_token="t0k", banks=("MINE",), http=NO_WAIT))
        assert filtered.verify([VerificationItem(1, pdq=KNOWN)])[0].outcome is Outcome.NOT_CONFIRMED
        anonymous = HmaService(HmaOptions(endpoint=fake.url, http=NO_WAIT))
        with pytest.raises(ServiceError, match=r"HMA: HTTP 401 .*missing or wrong bearer token"):
            anonymous.verify([VerificationItem(1, pdq=KNOWN)])
        assert fake.violations == []


def test_hma_auth_header_from_environment(monkeypatch) -> None:
    with FakeHma(pdq_banks={"B": [KNOWN]}) as fake:
        monkeypatch.setenv("HMA_URL", fake.url)
        monkeypatch.setenv("HMA_AUTH_HEADER", "X-Proxy-Key: abc")
        adapter = service("hma")
        assert adapter.verify([VerificationItem(1, pdq=KNOWN)])[0].outcome is Outcome.CONFIRMED
        assert fake.requests[0].headers["x-proxy-key"] == "abc"
        monkeypatch.setenv("HMA_AUTH_HEADER", "no colon")
        with pytest.raises(SafesetError, match="HMA_AUTH_HEADER must read 'Name: value'"):
            service("hma")


def test_hma_unexpected_shape_is_an_error() -> None:
    with FakeHma() as fake:
        fake.script(200, {"BANK": [{"id": 3}]})
        fake.script(200, ["not", "an", "object"])
        adapter = HmaService(HmaOptions(endpoint=fake.url, http=NO_WAIT))
        with pytest.raises(ServiceError, match="not a list of"):
            adapter.verify([VerificationItem(1, pdq=KNOWN)])
        with pytest.raises(ServiceError, match="expected an object keyed by bank"):
            adapter.verify([VerificationItem(1, pdq=KNOWN)])


# --- PhotoDNA -------------------------------------------------------------------------------------------------


def test_photodna_match_by_url() -> None:
    known, unknown, gone = "https://img.example.org/k.jpg", "https://img.example.org/u.jpg", "https://gone.example/g"
    with FakePhotoDna(known_urls=[known], unreachable_urls=[gone], key="k3y") as fake:
        adapter = PhotoDnaService(PhotoDnaOptions(endpoint=fake.url, subscription_key="k3y", http=NO_WAIT))
        items = [
            VerificationItem(1, url=known, pdq=KNOWN, md5="3" * 32),
            VerificationItem(2, url=unknown),
            VerificationItem(3, url=gone),
            VerificationItem(4, pdq=KNOWN),
        ]
        verdicts = adapter.verify(items)
        assert [v.outcome for v in verdicts] == [
            Outcome.CONFIRMED,
            Outcome.NOT_CONFIRMED,
            Outcome.UNVERIFIABLE,
            Outcome.UNVERIFIABLE,
        ]
        assert verdicts[0].reference == "WUS_fake_000001" and "Test" in verdicts[0].detail
        assert verdicts[2].detail.startswith("status 3208")
        assert [r.json for r in fake.requests] == [
            {"DataRepresentation": "URL", "Value": u} for u in (known, unknown, gone)
        ]
        assert all(r.headers["ocp-apim-subscription-key"] == "k3y" for r in fake.requests)
        assert fake.violations == []


def test_photodna_string_is_match_and_lower_case_keys() -> None:
    with FakePhotoDna(key="k") as fake:
        fake.script(200, {"status": {"code": 3000, "description": "OK"}, "isMatch": "True", "trackingId": "T1"})
        adapter = PhotoDnaService(PhotoDnaOptions(endpoint=fake.url, subscription_key="k", http=NO_WAIT))
        verdict = adapter.verify([VerificationItem(1, url="https://x.example/a.jpg")])[0]
        assert verdict.outcome is Outcome.CONFIRMED and verdict.reference == "T1"


def test_photodna_errors() -> None:
    with FakePhotoDna(key="right") as fake:
        wrong = PhotoDnaService(PhotoDnaOptions(endpoint=fake.url, subscription_key="wrong", http=NO_WAIT))
        with pytest.raises(ServiceError, match=r"PhotoDNA: HTTP 401 .*Access denied due to invalid subscription key"):
            wrong.verify([VerificationItem(1, url="https://x.example/a.jpg")])
        fake.script(429, {"statusCode": 429, "message": "Rate limit is exceeded."}, headers={"Retry-After": "2"})
        fake.script(200, {"no": "status"})
        sleeps: list[float] = []
        right = PhotoDnaService(
            PhotoDnaOptions(endpoint=fake.url, subscription_key="right", http=NO_WAIT), sleep=sleeps.append
        )
        with pytest.raises(ServiceError, match=r"no Status\.Code"):
            right.verify([VerificationItem(1, url="https://x.example/a.jpg")])
        assert sleeps == [2.0]
        with pytest.raises(SafesetError, match="PHOTODNA_SUBSCRIPTION_KEY"):
            PhotoDnaService(PhotoDnaOptions(endpoint=fake.url)).verify([VerificationItem(1, url="http://x/y")])


# --- shared machinery -----------------------------------------------------------------------------------------


def test_registry_lists_the_three_services() -> None:
    load_services()
    assert {"arachnid", "hma", "photodna"} <= set(SERVICES)
    assert {SERVICES[n](None).name for n in ("arachnid", "hma", "photodna")} == {"arachnid", "hma", "photodna"}
    with pytest.raises(SafesetError, match="unknown verification service 'nope'"):
        service("nope")


def test_rate_limiter_spaces_request_starts() -> None:
    now = [100.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(4):
        limiter.wait()
    assert waits == [0.25, 0.25, 0.25]
    now[0] += 10  # idle time is not banked into a burst
    limiter.wait()
    limiter.wait()
    assert waits[3:] == [0.25]


def test_retry_after_forms() -> None:
    assert retry_after_seconds("12") == 12.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
