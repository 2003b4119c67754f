"""The admin in a real headless Chromium, served by a real server thread on a SQLite
file: a clerk logs in, fires reserve and pay (with its payload) from an order's page
and sees the new state, the history and the diagram follow; an event without the
permission cannot be clicked. Screenshots of each step go to the test's tmp dir
(harness: tests/browser_support.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.handlers.wsgi import WSGIHandler
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.db import connections

from examples.django_orders.shop.demo import place
from examples.django_orders.shop.management.commands.seed import CLERK
from tests.browser_support import WAIT, check_log, click, open_page, shot
from tests.contrib.django.admin.support import example_project, use_database
from tests.sql_support import fresh_database

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

pytestmark = pytest.mark.browser


class _OneRequest(WSGIRequestHandler):
    """One request per connection, so no handler thread outlives the test waiting
    on a kept-alive socket; no request log on the test's output."""

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()

    def log_message(self, format: str, *args: object) -> None:
        """Nothing."""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The example project on a fresh SQLite file, served (with the admin's static
    files) by a real server thread; its base URL."""
    directory = tmp_path_factory.mktemp("admin-browser")
    with example_project(), fresh_database("sqlite", directory) as url, use_database(url):
        server = ThreadedWSGIServer(("127.0.0.1", 0), _OneRequest, allow_reuse_address=False)
        server.daemon_threads = True
        server.set_app(StaticFilesHandler(WSGIHandler()))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            thread.join(timeout=WAIT)
            server.server_close()
            connections.close_all()


def _state(browser: WebDriver) -> str:
    return str(browser.find_element("css selector", "#statekit-state b").text)


def _history(browser: WebDriver) -> list[str]:
    rows = browser.find_elements("css selector", "#statekit-history tbody tr[data-seq]")
    return [" ".join(row.text.split()) for row in rows]


def _current_fill(browser: WebDriver, state: str) -> str:
    """The fill of `state`'s node in the diagram's SVG."""
    for node in browser.find_elements("css selector", "#statekit-diagram svg g.node"):
        if node.find_element("tag name", "title").get_attribute("textContent") == state:
            return str(node.find_element("css selector", "path, polygon").get_attribute("fill"))
    raise AssertionError(f"no node {state!r} in the diagram")


def test_a_clerk_fires_events_from_an_orders_admin_page(
    browser: WebDriver, served: str, tmp_path: Path
) -> None:
    clerk = User.objects.create_user("clerk", password="clerk-pw", is_staff=True)
    clerk.user_permissions.set(Permission.objects.filter(codename__in=CLERK))
    order = place("Dara Singh", "89.00")

    open_page(browser, f"{served}/admin/login/?next=/admin/shop/order/{order.pk}/change/")
    browser.find_element("name", "username").send_keys("clerk")
    browser.find_element("name", "password").send_keys("clerk-pw")
    click(browser, browser.find_element("css selector", "input[type=submit]"))
    assert _state(browser) == "pending"
    assert _history(browser) == []
    buttons = browser.find_elements("css selector", "form.statekit-event input[type=submit]")
    enabled = {b.get_attribute("value"): b.is_enabled() for b in buttons}
    assert enabled == {"reserve": True, "abandon": False, "cancel": False}
    assert browser.find_elements("css selector", 'input[name="state"]') == []  # read-only
    shot(browser, tmp_path / "1-admin-order-pending.png")

    reserve = 'form[data-event="reserve"] input[type=submit]'
    click(browser, browser.find_element("css selector", reserve))
    messages = browser.find_element("css selector", ".messagelist")
    assert "Reserve: pending → stock_reserved" in str(messages.get_attribute("textContent"))
    assert _state(browser) == "stock_reserved"
    assert _current_fill(browser, "stock_reserved") == "#fde68a"
    assert _history(browser)[0].startswith("1 reserve pending → stock_reserved")
    assert "clerk" in _history(browser)[0]

    pay = browser.find_element("css selector", 'form[data-event="pay"]')
    pay.find_element("name", "amount").send_keys("89.00")
    pay.find_element("name", "reference").send_keys("PAY-0042")
    click(browser, pay.find_element("css selector", "input[type=submit]"))
    assert _state(browser) == "paid"
    assert _current_fill(browser, "paid") == "#fde68a"
    assert _current_fill(browser, "stock_reserved") != "#fde68a"  # passed through
    history = _history(browser)
    assert len(history) == 2
    assert history[1].startswith("2 pay stock_reserved → paid")
    assert "reference: PAY-0042" in history[1]
    shot(browser, tmp_path / "2-admin-order-paid.png")
    check_log(browser, served)
    order.refresh_from_db()
    assert (order.state, str(order.paid_amount)) == ("paid", "89.00")
