"""Retry and resolve from the admin: the change list's stuck filter and actions, and
the stuck order's page with its compensations; both need their permission."""

from __future__ import annotations

import pytest
from django.test import Client

from examples.django_orders.shop.demo import place, stuck_order
from examples.django_orders.shop.models import Order
from statekit.contrib.django.hosting import host
from tests.contrib.django.admin.test_admin import CHANGE, post, staff, texts

pytestmark = pytest.mark.usefixtures("database")


@pytest.fixture
def stuck() -> Order:
    return stuck_order("Hiro", "75.00")


def events(order: Order) -> list[str]:
    return [r.event for r in host().runner_for(Order).history(order)]


def test_the_stuck_filter_lists_the_stuck_order(stuck: Order) -> None:
    fine = place("Ada", "10.00", ("reserve",))
    html = staff().get("/admin/shop/order/?stuck=yes").content.decode()
    assert CHANGE.format(stuck.pk) in html
    assert CHANGE.format(fine.pk) not in html


def test_the_stuck_orders_page_shows_its_compensations(stuck: Order) -> None:
    html = staff("retry_order", "resolve_order").get(CHANGE.format(stuck.pk)).content.decode()
    assert 'id="statekit-attention"' in html
    assert '<tr data-action="refund_payment" data-status="dead">' in html
    assert "ConnectionError: payment provider unavailable" in html
    assert 'id="statekit-retry"' in html
    assert 'id="statekit-resolve"' in html


def test_retry_from_the_page_reopens_the_dead_letter(stuck: Order) -> None:
    client = staff("retry_order")
    response = post(client, f"/admin/shop/order/{stuck.pk}/statekit/retry/")
    [message] = texts(response)
    assert "retrying 1 dead-lettered compensation(s)" in message
    assert events(stuck)[-1] == "@retry"
    [record] = [r for r in host().runner_for(Order).history(stuck) if r.event == "@retry"]
    assert record.actor == "clerk"
    again = post(client, f"/admin/shop/order/{stuck.pk}/statekit/retry/")
    assert texts(again) == [f"order {stuck.pk} has no dead-lettered compensations"]


def test_resolve_from_the_change_list_needs_a_note_and_a_state(stuck: Order) -> None:
    client = staff("resolve_order")
    form = {"action": "statekit_resolve", "_selected_action": [stuck.pk]}
    refused = post(client, "/admin/shop/order/", {**form, "resolve_state": "cancelled"})
    [message] = texts(refused)
    assert "needs a note" in message
    unknown = post(
        client, "/admin/shop/order/", {**form, "resolve_state": "lost", "resolve_note": "x"}
    )
    assert "has no state 'lost'" in texts(unknown)[0]
    done = post(
        client,
        "/admin/shop/order/",
        {**form, "resolve_state": "cancelled", "resolve_note": "refunded by phone"},
    )
    assert texts(done) == [f"order {stuck.pk} resolved into cancelled."]
    stuck.refresh_from_db()
    assert (stuck.state, stuck.stuck_at) == ("cancelled", None)
    assert events(stuck)[-1] == "@resolve"


def test_the_levers_need_their_permissions(stuck: Order) -> None:
    client: Client = staff()
    html = client.get(CHANGE.format(stuck.pk)).content.decode()
    assert 'id="statekit-retry"' not in html
    assert 'id="statekit-resolve"' not in html
    changelist = client.get("/admin/shop/order/").content.decode()
    assert "statekit_retry" not in changelist
    response = post(client, f"/admin/shop/order/{stuck.pk}/statekit/retry/")
    assert texts(response) == ["You may not retry: it needs the permission shop.retry_order."]
    assert "@retry" not in events(stuck)
    assert client.get(f"/admin/shop/order/{stuck.pk}/statekit/retry/").status_code == 405
