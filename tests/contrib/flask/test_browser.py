"""The example order service in a real headless Chromium, served by a real server
thread: a person fires events from the order page (the state, the history and the
diagram drawn by the vendored Mermaid follow), and retries a dead-lettered refund
from the needs-attention page after a sweep.

The harness (a headless Chromium, its steps) is tests/browser_support.py. Screenshots
of each step go to the test's tmp dir.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from flask import Flask
from werkzeug.serving import make_server

from examples.flask_orders.models import Order, db
from examples.flask_orders.orders import NewOrder, place_order
from examples.flask_orders.seed import stuck_order
from tests.browser_support import WAIT, check_log, click, open_page, shot, wait
from tests.contrib.flask.example_support import example_app

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

pytestmark = pytest.mark.browser


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


def _diagram_current(browser: WebDriver) -> str:
    """Wait for the order's diagram to be drawn; the state its SVG highlights."""
    figure = browser.find_element("id", "diagram")
    wait(browser, lambda b: figure.get_attribute("data-rendered"))
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


def test_a_person_fires_events_from_the_order_page(
    browser: WebDriver, served: tuple[Flask, str], tmp_path: Path
) -> None:
    app, base = served
    with app.app_context():
        order = place_order(NewOrder(customer="Dara Singh", total="89.00"))
        db.session.commit()
        order_id = order.id

    open_page(browser, f"{base}/orders/{order_id}")
    assert _diagram_current(browser) == "pending"
    assert _history(browser) == []
    buttons = [
        f.get_attribute("data-event") for f in browser.find_elements("css selector", "form.event")
    ]
    assert buttons == ["reserve", "abandon", "cancel"]
    shot(browser, tmp_path / "1-order-pending.png")

    click(browser, browser.find_element("css selector", 'form[data-event="reserve"] button'))
    assert _text(browser, ".flash-ok") == "reserve: pending → stock_reserved"
    assert _text(browser, "#state") == "stock reserved"
    assert _diagram_current(browser) == "stock_reserved"
    assert _history(browser)[0].startswith("1 reserve pending → stock reserved")

    pay = browser.find_element("css selector", 'form[data-event="pay"]')
    assert pay.find_element("name", "amount").get_attribute("value") == "89.00"
    pay.find_element("name", "reference").send_keys("PAY-0042")
    click(browser, pay.find_element("tag name", "button"))
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
    shot(browser, tmp_path / "2-order-paid.png")
    fitted = svg.size["width"]
    zoom = browser.find_element("css selector", "button.zoom")
    zoom.click()
    assert zoom.text == "Fit to width"
    assert svg.size["width"] > fitted  # its own size, wider than the card
    shot(browser, tmp_path / "2b-order-paid-actual-size.png")
    zoom.click()
    assert svg.size["width"] == fitted
    check_log(browser, base)
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

    open_page(browser, f"{base}/attention")
    card = browser.find_element("id", f"order-{order_id}")
    refund = card.find_element("css selector", 'tr[data-action="refund_payment"]')
    assert refund.get_attribute("data-status") == "dead"
    assert "ConnectionError: payment provider unavailable" in refund.text
    shot(browser, tmp_path / "3-attention-dead-lettered.png")

    click(browser, card.find_element("css selector", "form.retry button"))
    assert "retrying 1 dead-lettered compensation(s)" in _text(browser, ".flash-ok")
    card = browser.find_element("id", f"order-{order_id}")
    refund = card.find_element("css selector", 'tr[data-action="refund_payment"]')
    assert refund.get_attribute("data-status") == "pending"
    assert card.find_elements("css selector", "form.retry") == []
    shot(browser, tmp_path / "4-attention-retrying.png")

    click(browser, browser.find_element("css selector", "#sweep button"))
    assert "1 compensated" in _text(browser, ".flash-ok")
    assert browser.find_elements("id", f"order-{order_id}") == []
    assert browser.find_element("id", "all-clear").is_displayed()

    open_page(browser, f"{base}/orders/{order_id}")
    assert _diagram_current(browser) == "cancelled"
    events = [row.split()[1] for row in _history(browser)]
    assert events == ["reserve", "pay", "@stuck", "@retry", "@compensated"]
    assert "clerk" in _history(browser)[3]
    shot(browser, tmp_path / "5-order-compensated.png")
    check_log(browser, base)
