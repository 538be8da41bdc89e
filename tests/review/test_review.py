"""The review page: token and Host checks, strict headers, filters equal the store's, bulk dismiss with a
reason through a CSRF-checked form, submit through a verification adapter (local fake), the audit trail, and
in headless Chromium: no request outside 127.0.0.1 and no dataset URL as a link or image."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import escape
from pathlib import Path
from typing import Any

import httpx
import pytest

from safeset.review import ReviewOptions, RunningReview, start_review
from safeset.services.hma import HmaOptions, HmaService
from safeset.services.http import HttpOptions
from tests.browser import Browser
from tests.services.fakes import FakeHma


@pytest.fixture
def review(case_store) -> Iterator[RunningReview]:
    running = start_review(case_store, ReviewOptions(who="tester"))
    yield running
    running.stop()


def listed_ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r"<tr data-case='(\d+)'>", page)]


def csrf_of(page: str) -> str:
    return re.search(r"name=csrf value='([^']+)'", page).group(1)


def test_every_request_needs_the_token_and_this_host(review: RunningReview) -> None:
    base = f"http://127.0.0.1:{review.port}"
    for path in ("/", "/favicon.ico", "/wrong-token/", f"/{review.app.token}x/", "/case/1"):
        assert httpx.get(base + path).status_code == 403, path
    assert httpx.post(base + "/action", data={"case": "1"}).status_code == 403
    ok = httpx.get(review.url)
    assert ok.status_code == 200
    assert ok.headers["content-security-policy"].startswith("default-src 'none'")
    assert "form-action 'self'" in ok.headers["content-security-policy"]
    assert ok.headers["referrer-policy"] == "no-referrer" and ok.headers["x-content-type-options"] == "nosniff"
    rebound = httpx.get(review.url, headers={"Host": f"attacker.example:{review.port}"})
    assert rebound.status_code == 403


def test_filters_list_what_the_store_lists(review: RunningReview, case_store) -> None:
    from safeset.cases import CaseState

    everything = case_store.list_cases()
    assert len(everything) >= 6
    detectors = {e.detector for c in everything for e in c.evidence}
    banks = {e.bank for c in everything for e in c.evidence}
    assert {"md5", "url", "score"} <= detectors
    cases_to_check: list[tuple[dict, dict]] = [({}, {})]
    cases_to_check += [({"detector": d}, {"detector": d}) for d in sorted(detectors)]
    cases_to_check += [({"bank": b}, {"bank": b}) for b in sorted(banks)]
    cases_to_check += [
        ({"min_score": "0.97"}, {"min_score": 0.97}),
        ({"state": "candidate"}, {"state": CaseState.CANDIDATE}),
    ]
    for query, store_filter in cases_to_check:
        page = httpx.get(review.url, params=query).text
        assert listed_ids(page) == [c.id for c in case_store.list_cases(**store_filter)], query
    assert httpx.get(review.url, params={"state": "nonsense"}).status_code == 400
    assert httpx.get(review.url, params={"min_score": "nan"}).status_code == 400


def test_bulk_dismiss_needs_csrf_and_reason_and_is_audited(review: RunningReview, case_store) -> None:
    from safeset.cases import CaseState

    page = httpx.get(review.url).text
    ids = listed_ids(page)[:2]
    action = review.url + "action"
    form = {"csrf": csrf_of(page), "case": [str(i) for i in ids], "action": "dismiss", "reason": "stock photo"}
    assert httpx.post(action, data={**form, "csrf": "forged"}).status_code == 403
    origin = {"Origin": "http://attacker.example"}
    assert httpx.post(action, data=form, headers=origin).status_code == 403
    no_reason = httpx.post(action, data={**form, "reason": "  "})
    assert no_reason.status_code == 409 and "needs a reason" in no_reason.text
    assert all(case_store.get_case(i).state is CaseState.CANDIDATE for i in ids)
    done = httpx.post(action, data=form, headers={"Origin": f"http://127.0.0.1:{review.port}"})
    assert done.status_code == 303 and done.headers["location"] == review.app.root
    assert all(case_store.get_case(i).state is CaseState.DISMISSED for i in ids)
    trail = case_store.audit_trail(ids[0])
    assert (trail[-1].who, trail[-1].to_state, trail[-1].reason) == ("tester", CaseState.DISMISSED, "stock photo")
    case_page = httpx.get(f"{review.url}case/{ids[0]}").text
    assert "stock photo" in case_page and "candidate → dismissed" in case_page
    assert case_store.verify_log() == []


def test_case_page_shows_urls_as_text_only(review: RunningReview, case_store) -> None:
    for case in case_store.list_cases():
        page = httpx.get(f"{review.url}case/{case.id}").text
        urls = [o.url for o in case.occurrences if o.url]
        for url in urls:
            assert escape(url) in page
        assert not re.search(r"<(img|script|link|iframe|object|embed|video|audio|source)\b", page)
        assert not re.search(r"""href=['"]?(https?:|//)""", page)
        assert "src=" not in page
    assert any(o.url for c in case_store.list_cases() for o in c.occurrences)  # the check above saw URLs


def test_submit_sends_hashes_to_the_service(case_store) -> None:
    from safeset.cases import CaseState

    url_cases = [c for c in case_store.list_cases() if c.occurrences and c.occurrences[0].url]
    known, other = url_cases[0], url_cases[1]
    with FakeHma(url_banks={"HOTLINE": [known.occurrences[0].url]}) as fake:
        adapter = HmaService(HmaOptions(endpoint=fake.url, http=HttpOptions(requests_per_second=0)))
        running = start_review(case_store, ReviewOptions(who="tester", service="hma"), adapter)
        try:
            page = httpx.get(running.url).text
            assert "submit to hma" in page
            form = {"csrf": csrf_of(page), "case": [str(known.id), str(other.id)], "action": "submit", "reason": ""}
            assert httpx.post(running.url + "action", data=form).status_code == 303
        finally:
            running.stop()
        assert fake.violations == [] and len(fake.requests) == 2
    assert case_store.get_case(known.id).state is CaseState.CONFIRMED
    assert case_store.get_case(other.id).state is CaseState.NOT_CONFIRMED
    assert case_store.get_case(known.id).reference == "HOTLINE:1001"


def _click_and_wait(driver: Any, element_id: str) -> None:
    """Click a button that submits a form and wait for the page it leads to: reading the rows right after the
    click may read the page being left (or an empty one in between)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    leaving = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.ID, element_id).click()
    WebDriverWait(driver, 20).until(expected_conditions.staleness_of(leaving))
    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")


def test_review_in_chromium(review: RunningReview, case_store, browser: Browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from safeset.cases import CaseState

    driver = browser.driver
    driver.get(review.url)
    Select(driver.find_element(By.NAME, "state")).select_by_value("candidate")
    driver.find_element(By.NAME, "detector").send_keys("md5")
    _click_and_wait(driver, "apply-filters")
    shown = [int(r.get_attribute("data-case")) for r in driver.find_elements(By.CSS_SELECTOR, "tr[data-case]")]
    assert shown == [c.id for c in case_store.list_cases(state=CaseState.CANDIDATE, detector="md5")]
    assert len(shown) >= 2
    picked = shown[:2]
    for case_id in picked:
        driver.find_element(By.ID, f"pick-{case_id}").click()
    driver.find_element(By.ID, "reason").send_keys("benign stand-in, reviewed")
    _click_and_wait(driver, "bulk-dismiss")
    # back on the filtered list: the dismissed cases are no longer candidates
    remaining = [int(r.get_attribute("data-case")) for r in driver.find_elements(By.CSS_SELECTOR, "tr[data-case]")]
    assert not set(picked) & set(remaining)
    assert all(case_store.get_case(i).state is CaseState.DISMISSED for i in picked)
    driver.get(f"{review.url}case/{picked[0]}")
    audit = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "#audit tr.audit")]
    assert any("dismissed" in row and "benign stand-in, reviewed" in row and "tester" in row for row in audit)
    dataset_urls = {o.url for c in case_store.list_cases() for o in c.occurrences if o.url}
    page_urls = [o.text for o in driver.find_elements(By.CSS_SELECTOR, "#occurrences td.url")]
    assert page_urls and set(page_urls) <= dataset_urls  # shown, as text
    assert driver.find_elements(By.TAG_NAME, "img") == []
    hrefs = [a.get_attribute("href") or "" for a in driver.find_elements(By.TAG_NAME, "a")]
    assert all(h.startswith(f"http://127.0.0.1:{review.port}/") for h in hrefs)
    assert not any(u in h for h in hrefs for u in dataset_urls)
    made = browser.requests()
    assert made and all(u.startswith(f"http://127.0.0.1:{review.port}/") for u in made)
    assert browser.outside_requests() == []
    browser.screenshot(tmp_path / "review.png")
