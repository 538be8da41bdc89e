"""Headless Chromium for tests (Debian's `chromium` + `chromium-driver`, never a Selenium Manager download),
with the DevTools network log on, so that a test can list every request a page made and assert none left
127.0.0.1 (or, for a self-contained file, that nothing but the file itself was loaded).

As a second line of defence the browser resolves no host name but 127.0.0.1/localhost: a request that slipped
out would fail rather than reach the network, and still show in the log, where the test catches it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = os.environ.get("SAFESET_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SAFESET_CHROMEDRIVER", "/usr/bin/chromedriver")
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})

QUIET_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # tests run as root in CI containers
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,AutofillServerCommunication",
    "--metrics-recording-only",
    "--window-size=1400,1000",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
)


def chromium_available() -> bool:
    return Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file() and shutil.which(CHROMEDRIVER) is not None


class Browser:
    """A Selenium driver plus the requests the pages made since the last `requests()` call."""

    def __init__(self, driver) -> None:
        self.driver = driver
        self._seen: list[str] = []

    def requests(self) -> list[str]:
        """Every URL a page asked for (documents, subresources, form posts, redirects), in order."""
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                self._seen.append(message["params"]["request"]["url"])
        return list(self._seen)

    def outside_requests(self) -> list[str]:
        """Requests to anything but 127.0.0.1/localhost over http(s), or to a scheme other than file:// ."""
        bad = []
        for url in self.requests():
            parts = urlsplit(url)
            if parts.scheme == "file" or (parts.scheme in ("http", "https") and parts.hostname in LOCAL_HOSTS):
                continue
            bad.append(url)
        return bad

    def screenshot(self, path: Path) -> Path:
        self.driver.save_screenshot(str(path))
        return path


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not chromium_available():
        pytest.skip(f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}); see make test")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in QUIET_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SE_OFFLINE", "true")  # Selenium Manager must never download a driver
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield Browser(driver)
    finally:
        driver.quit()
