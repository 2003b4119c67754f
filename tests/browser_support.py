"""A real headless Chromium for the browser tests (marker ``browser``), and the steps
they share: open a page, click a form's button and wait for the next page, take a
screenshot of the whole page, check the console and the network log.

Needs Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium`` and
``/usr/bin/chromedriver``, or ``STATEKIT_CHROMIUM``/``STATEKIT_CHROMEDRIVER``);
without them the tests skip, or fail in CI.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import missing_service

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement

CHROMIUM = os.environ.get("STATEKIT_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("STATEKIT_CHROMEDRIVER", "/usr/bin/chromedriver")
WAIT = 20.0


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """One headless Chromium for the module, with a fresh profile and no traffic of
    its own (no component updates, no background networking)."""
    found = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if found:
        missing_service(
            f"Chromium ({', '.join(found)} missing)",
            "install Debian's chromium and chromium-driver "
            "('apt-get install chromium chromium-driver') to run the browser tests",
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing_service("selenium", "install the dev extra: pip install -e '.[dev]'")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-dev-shm-usage",  # containers often have a small /dev/shm
        f"--user-data-dir={profile}",
        "--window-size=1280,1000",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def wait(browser: WebDriver, condition: Any) -> Any:
    """Wait up to `WAIT` seconds for `condition(browser)` to be truthy; its value."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT).until(condition)


def open_page(browser: WebDriver, url: str) -> None:
    """Load `url` and wait for the document to be complete."""
    browser.get(url)
    wait(browser, lambda b: b.execute_script("return document.readyState") == "complete")


def click(browser: WebDriver, button: WebElement) -> None:
    """Click a form's button and wait for the page it leads to."""
    from selenium.webdriver.support import expected_conditions

    html = browser.find_element("tag name", "html")
    button.click()
    wait(browser, expected_conditions.staleness_of(html))
    wait(browser, lambda b: b.execute_script("return document.readyState") == "complete")


def shot(browser: WebDriver, path: Path) -> None:
    """A screenshot of the whole page (the window grown to its height)."""
    for _ in range(2):  # the height the page takes at that size
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1280, max(1000, min(int(height) + 140, 4000)))
    browser.save_screenshot(str(path))
    browser.set_window_size(1280, 1000)


def check_log(browser: WebDriver, base: str) -> None:
    """Nothing failed in the page's console (a script error, a resource the
    Content-Security-Policy blocked) and every network request went to the app itself
    (the browser's own chrome:// pages aside)."""
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if url.split(":", 1)[0] in {"http", "https", "ws", "wss", "ftp"}:
                assert url.startswith(f"{base}/"), url
