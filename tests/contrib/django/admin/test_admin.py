"""The admin with Django's test client on each backend: a staff user fires events from
an order's page and from the change list; the history records them with the user as
actor; a refused event shows statekit's message and writes nothing; the permissions
are enforced; the state fields cannot be edited; the diagram highlights the state."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.http import HttpResponse
from django.test import Client

from examples.django_orders.shop.models import Order
from statekit.contrib.django.hosting import host

pytestmark = pytest.mark.usefixtures("database")

CHANGE = "/admin/shop/order/{}/change/"
FIRE = "/admin/shop/order/{}/statekit/fire/{}/"


@pytest.fixture
def order() -> Order:
    found = Order(customer="Ada", total=Decimal("89.00"))
    host().runner_for(Order).start(found)
    return found


def staff(*codenames: str, name: str = "clerk") -> Client:
    """A client logged in as a staff user holding `codenames` (and view_order)."""
    User.objects.filter(username=name).delete()
    user = User.objects.create_user(name, password="pw", is_staff=True)
    wanted = ["view_order", "change_order", *codenames]
    user.user_permissions.set(Permission.objects.filter(codename__in=wanted))
    client = Client()
    client.force_login(user)
    return client


def texts(response: HttpResponse) -> list[str]:
    """The messages the page a lever redirected to shows (follow=True)."""
    return [str(m) for m in response.context["messages"]]  # type: ignore[attr-defined]


def post(client: Client, url: str, data: dict[str, Any] | None = None) -> HttpResponse:
    """POST and follow the redirect to the page that shows the messages."""
    response = client.post(url, data or {}, follow=True)
    assert response.status_code == 200
    return response  # type: ignore[no-any-return]


def test_an_event_fired_from_the_change_page_writes_history_with_the_user(order: Order) -> None:
    client = staff("fire_reserve_order")
    page = client.get(CHANGE.format(order.pk))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-event="reserve"' in html
    assert 'id="statekit-history"' in html
    response = post(client, FIRE.format(order.pk, "reserve"), {"idempotency_key": "k1"})
    assert texts(response) == ["reserve: pending → stock_reserved"]
    order.refresh_from_db()
    assert (order.state, order.state_version) == ("stock_reserved", 1)
    [record] = host().runner_for(Order).history(order)
    assert (record.event, record.actor) == ("reserve", "clerk")
    html = client.get(CHANGE.format(order.pk)).content.decode()
    assert '<tr data-seq="1">' in html
    assert "pending → <b>stock_reserved</b>" in html


def test_a_form_sent_twice_fires_once(order: Order) -> None:
    client = staff("fire_reserve_order")
    first = post(client, FIRE.format(order.pk, "reserve"), {"idempotency_key": "same"})
    assert texts(first) == ["reserve: pending → stock_reserved"]
    again = post(client, FIRE.format(order.pk, "reserve"), {"idempotency_key": "same"})
    assert texts(again) == ["'reserve' was already applied (step 1)."]
    assert len(host().runner_for(Order).history(order)) == 1


def test_an_event_with_a_payload_takes_the_forms_fields(order: Order) -> None:
    client = staff("fire_reserve_order", "fire_pay_order")
    texts(post(client, FIRE.format(order.pk, "reserve")))
    wrong = post(client, FIRE.format(order.pk, "pay"), {"amount": "1.00", "reference": "P-1"})
    [message] = texts(wrong)
    assert "payment of 1.00 does not match the order total 89.00" in message
    paid = post(client, FIRE.format(order.pk, "pay"), {"amount": "89.00", "reference": "P-1"})
    assert texts(paid) == ["pay: stock_reserved → paid"]
    order.refresh_from_db()
    assert (order.state, order.paid_amount) == ("paid", Decimal("89.00"))


@pytest.mark.parametrize("field", ["actor", "correlation_id"])
def test_a_form_field_named_like_fires_own_arguments_is_refused(order: Order, field: str) -> None:
    """A posted `actor` could not spoof the history's actor (it raised a TypeError,
    a 500), nor `correlation_id` set its correlation id unasked; nothing is written."""
    client = staff("fire_reserve_order")
    response = post(client, FIRE.format(order.pk, "reserve"), {field: "mallory"})
    assert texts(response) == [
        f"invalid payload for 'reserve' on order {order.pk}: {field}: reserved, not a payload field"
    ]
    order.refresh_from_db()
    assert (order.state, order.state_version) == ("pending", 0)
    assert host().runner_for(Order).history(order) == []


def test_a_disallowed_event_is_refused_with_statekits_message(order: Order) -> None:
    client = staff("fire_ship_order")
    response = post(
        client, FIRE.format(order.pk, "ship"), {"carrier": "DHL", "tracking_number": "T"}
    )
    [message] = texts(response)
    assert "'ship'" in message
    assert "pending" in message
    assert "reserve" in message  # what is allowed
    order.refresh_from_db()
    assert (order.state, order.state_version) == ("pending", 0)
    assert host().runner_for(Order).history(order) == []


def test_an_event_needs_its_permission(order: Order) -> None:
    client = staff("fire_cancel_order")
    html = client.get(CHANGE.format(order.pk)).content.decode()
    assert 'value="reserve" disabled' in html
    response = post(client, FIRE.format(order.pk, "reserve"))
    [message] = texts(response)
    assert "shop.fire_reserve_order" in message
    order.refresh_from_db()
    assert order.state == "pending"
    changelist = client.get("/admin/shop/order/").content.decode()
    assert "statekit_fire_cancel" in changelist
    assert "statekit_fire_reserve" not in changelist


def test_the_change_list_action_fires_on_the_selected(order: Order) -> None:
    other = Order(customer="Ben", total=Decimal("5.00"))
    host().runner_for(Order).start(other)
    host().runner_for(Order).fire(other, "cancel", actor="t")
    client = staff("fire_reserve_order")
    response = post(
        client,
        "/admin/shop/order/",
        {"action": "statekit_fire_reserve", "_selected_action": [order.pk, other.pk]},
    )
    messages = texts(response)
    assert "reserve: fired on 1 of 2." in messages
    assert any("cancelled" in m and "reserve" in m for m in messages)
    order.refresh_from_db()
    assert order.state == "stock_reserved"


def test_the_state_fields_cannot_be_edited(order: Order) -> None:
    client = staff("fire_reserve_order")
    html = client.get(CHANGE.format(order.pk)).content.decode()
    assert 'name="state"' not in html
    assert 'name="customer"' in html
    form = {
        "customer": "Ada L.",
        "total": "89.00",
        "sku": "SKU-1",
        "quantity": "1",
        "in_stock": "10",
        "paid_amount": "0",
        "state": "delivered",
        "state_version": "7",
    }
    assert client.post(CHANGE.format(order.pk), form).status_code == 302
    order.refresh_from_db()
    assert (order.customer, order.state, order.state_version) == ("Ada L.", "pending", 0)


def test_the_filters_find_by_state_and_stuck(order: Order) -> None:
    client = staff()
    html = client.get("/admin/shop/order/?state=pending").content.decode()
    assert f"/admin/shop/order/{order.pk}/change/" in html
    html = client.get("/admin/shop/order/?state=paid").content.decode()
    assert f"/admin/shop/order/{order.pk}/change/" not in html
    html = client.get("/admin/shop/order/?stuck=yes").content.decode()
    assert f"/admin/shop/order/{order.pk}/change/" not in html
    assert "stock reserved" in html  # every declared state is a choice


def test_the_diagram_highlights_the_current_state(order: Order) -> None:
    host().runner_for(Order).fire(order, "reserve", actor="t")
    html = staff().get(CHANGE.format(order.pk)).content.decode()
    assert 'data-current-state="stock_reserved"' in html
    svg = html[html.index("<svg", html.index('id="statekit-diagram"')) :]
    node = svg[svg.index("<title>stock_reserved</title>") :][:400]
    assert 'fill="#fde68a"' in node  # the current state's fill
