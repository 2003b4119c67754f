"""The example order service in a real headless Chromium, served by a real server
thread: a person fires events from the order page (the state, the history and the
diagram drawn by the vendored Mermaid follow), and retries a dead-lettered refund
from the needs-attention page after a sweep.

Needs Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium`` and
``/usr/bin/chromedriver``); without them the tests skip, or fail in CI. Screenshots
of each step go to the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from examples.flask_orders.models import Order, db
from examples.flask_orders.orders import NewOrder, place_order
from examples.flask_orders.seed import stuck_order
from tests.conftest import missing_service
from tests.contrib.flask.example_support import example_app

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement

pytestmark = pytest.mark.browser

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


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Flask, str]]:
    """The order service on a fresh SQLite file, served by a real server thread."""
    with example_app(f"sqlite+pysqlite:///{tmp_path / 'orders.db'}") as app:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield app, f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            thread.join(timeout=WAIT)
            server.server_close()


def _wait(browser: WebDriver, condition: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT).until(condition)


def _open(browser: WebDriver, url: str) -> None:
    browser.get(url)
    _wait(browser, lambda b: b.execute_script("return document.readyState") == "complete")


def _click(browser: WebDriver, button: WebElement) -> None:
    """Click a form's button and wait for the page it leads to."""
    from selenium.webdriver.support import expected_conditions

    html = browser.find_element("tag name", "html")
    button.click()
    _wait(browser, expected_conditions.staleness_of(html))
    _wait(browser, lambda b: b.execute_script("return document.readyState") == "complete")


def _diagram_current(browser: WebDriver) -> str:
    """Wait for the order's diagram to be drawn; the state its SVG highlights."""
    figure = browser.find_element("id", "diagram")
    _wait(browser, lambda b: figure.get_attribute("data-rendered"))
    assert figure.get_attribute("data-rendered") == "true"
    current = figure.find_elements("css selector", "svg g.node.current, svg g.node.stuck")
    assert len(current) == 1
    match = re.search(r"-state-(\w+)-\d+$", current[0].get_attribute("id") or "")
    assert match is not None
    return match.group(1)


def _text(browser: WebDriver, css: str) -> str:
    return str(browser.find_element("css selector", css).text)


def _history(browser: WebDriver) -> list[str]:
    rows = browser.find_elements("css selector", "#history tbody tr[data-seq]")
    return [" ".join(row.text.split()) for row in rows]


def _shot(browser: WebDriver, path: Path) -> None:
    """A screenshot of the whole page (the window grown to its height)."""
    for _ in range(2):  # the height the page takes at that size
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1280, max(1000, min(int(height) + 140, 4000)))
    browser.save_screenshot(str(path))
    browser.set_window_size(1280, 1000)


def _check_log(browser: WebDriver, base: str) -> None:
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


def test_a_person_fires_events_from_the_order_page(
    browser: WebDriver, served: tuple[Flask, str], tmp_path: Path
) -> None:
    app, base = served
    with app.app_context():
        order = place_order(NewOrder(customer="Dara Singh", total="89.00"))
        db.session.commit()
        order_id = order.id

    _open(browser, f"{base}/orders/{order_id}")
    assert _diagram_current(browser) == "pending"
    assert _history(browser) == []
    buttons = [
        f.get_attribute("data-event") for f in browser.find_elements("css selector", "form.event")
    ]
    assert buttons == ["reserve", "abandon", "cancel"]
    _shot(browser, tmp_path / "1-order-pending.png")

    _click(browser, browser.find_element("css selector", 'form[data-event="reserve"] button'))
    assert _text(browser, ".flash-ok") == "reserve: pending → stock_reserved"
    assert _text(browser, "#state") == "stock reserved"
    assert _diagram_current(browser) == "stock_reserved"
    assert _history(browser)[0].startswith("1 reserve pending → stock reserved")

    pay = browser.find_element("css selector", 'form[data-event="pay"]')
    assert pay.find_element("name", "amount").get_attribute("value") == "89.00"
    pay.find_element("name", "reference").send_keys("PAY-0042")
    _click(browser, pay.find_element("tag name", "button"))
    assert _text(browser, ".flash-ok") == "pay: stock_reserved → paid"
    assert _diagram_current(browser) == "paid"
    history = _history(browser)
    assert len(history) == 2
    assert history[1].startswith("2 pay stock reserved → paid")
    assert "reference: PAY-0042" in history[1]
    assert "clerk" in history[1]
    svg = browser.find_element("css selector", "#diagram svg")
    assert "1. reserve" in svg.text
    assert "2. pay" in svg.text
    _shot(browser, tmp_path / "2-order-paid.png")
    fitted = svg.size["width"]
    zoom = browser.find_element("css selector", "button.zoom")
    zoom.click()
    assert zoom.text == "Fit to width"
    assert svg.size["width"] > fitted  # its own size, wider than the card
    _shot(browser, tmp_path / "2b-order-paid-actual-size.png")
    zoom.click()
    assert svg.size["width"] == fitted
    _check_log(browser, base)
    with app.app_context():
        stored = db.session.get(Order, order_id)
        assert stored is not None
        assert (stored.state, stored.paid_amount) == ("paid", 89)


def test_a_person_retries_a_dead_lettered_refund(
    browser: WebDriver, served: tuple[Flask, str], tmp_path: Path
) -> None:
    app, base = served
    with app.app_context():
        started = datetime.now(UTC) - timedelta(days=6)
        order = stuck_order("Hiro Tanaka", "75.00", refund_failures=5, started=started)
        order_id = order.id

    _open(browser, f"{base}/attention")
    card = browser.find_element("id", f"order-{order_id}")
    refund = card.find_element("css selector", 'tr[data-action="refund_payment"]')
    assert refund.get_attribute("data-status") == "dead"
    assert "ConnectionError: payment provider unavailable" in refund.text
    _shot(browser, tmp_path / "3-attention-dead-lettered.png")

    _click(browser, card.find_element("css selector", "form.retry button"))
    assert "retrying 1 dead-lettered compensation(s)" in _text(browser, ".flash-ok")
    card = browser.find_element("id", f"order-{order_id}")
    refund = card.find_element("css selector", 'tr[data-action="refund_payment"]')
    assert refund.get_attribute("data-status") == "pending"
    assert card.find_elements("css selector", "form.retry") == []
    _shot(browser, tmp_path / "4-attention-retrying.png")

    _click(browser, browser.find_element("css selector", "#sweep button"))
    assert "1 compensated" in _text(browser, ".flash-ok")
    assert browser.find_elements("id", f"order-{order_id}") == []
    assert browser.find_element("id", "all-clear").is_displayed()

    _open(browser, f"{base}/orders/{order_id}")
    assert _diagram_current(browser) == "cancelled"
    events = [row.split()[1] for row in _history(browser)]
    assert events == ["reserve", "pay", "@stuck", "@retry", "@compensated"]
    assert "clerk" in _history(browser)[3]
    _shot(browser, tmp_path / "5-order-compensated.png")
    _check_log(browser, base)
