"""The example order service (`examples/flask_orders`) through `app.test_client()`,
on a SQLite file and on PostgreSQL: its JSON API (payloads, `Idempotency-Key`,
problem responses) and the pages a person uses (forms per allowed event, the
needs-attention levers)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from examples.flask_orders import create_app
from examples.flask_orders.__main__ import main
from examples.flask_orders.models import Order, db
from examples.flask_orders.seed import seed_demo, stuck_order
from tests.contrib.flask.example_support import example_app
from tests.sql_support import fresh_database

PROBLEM = "application/problem+json"


@pytest.fixture(params=["sqlite", "postgresql"], scope="module")
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    backend: str = request.param
    with fresh_database(backend, tmp_path_factory.mktemp(backend)) as found:
        yield found


@pytest.fixture
def app(url: str) -> Iterator[Flask]:
    with example_app(url) as built:
        yield built


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def _place(client: FlaskClient, **fields: Any) -> dict[str, Any]:
    body = {"customer": "Ada", "total": "49.90", **fields}
    response = client.post("/api/orders", json=body)
    assert response.status_code == 201, response.get_data(as_text=True)
    order: dict[str, Any] = response.get_json()
    return order


def _fire(
    client: FlaskClient, order_id: int, event: str, key: str | None = None, **payload: Any
) -> Any:
    headers = {"Idempotency-Key": key} if key else {}
    return client.post(f"/api/orders/{order_id}/events/{event}", json=payload, headers=headers)


def _text(response: Any) -> str:
    return str(response.get_data(as_text=True))


# -- the JSON API ---------------------------------------------------------------------


def test_an_order_is_placed_listed_by_state_and_shown(client: FlaskClient) -> None:
    order = _place(client, customer="Ada Lovelace", total="49.90")
    assert (order["state"], order["version"], order["total"]) == ("pending", 0, "49.90")
    listed = client.get("/api/orders").get_json()["orders"][0]
    for field in ("created_at", "entered_at", "deadline_at"):
        assert datetime.fromisoformat(listed[field]).utcoffset() == timedelta(0)
    other = _place(client, customer="Ben")
    _fire(client, other["id"], "reserve")

    pending = client.get("/api/orders?state=pending").get_json()["orders"]
    reserved = client.get("/api/orders?state=stock_reserved").get_json()["orders"]
    assert [o["id"] for o in pending] == [order["id"]]
    assert [o["id"] for o in reserved] == [other["id"]]
    assert len(client.get("/api/orders").get_json()["orders"]) == 2

    shown = client.get(f"/api/orders/{other['id']}").get_json()
    assert [(r["seq"], r["event"], r["target"]) for r in shown["history"]] == [
        (1, "reserve", "stock_reserved")
    ]
    allowed = {e["name"]: e for e in shown["allowed_events"]}
    assert list(allowed) == ["pay", "cancel"]
    pay_fields = {f["name"]: f for f in allowed["pay"]["fields"]}
    assert pay_fields["amount"]["required"] is True
    assert pay_fields["method"]["choices"] == ["card", "invoice"]
    mermaid = shown["diagram"]["mermaid"]
    assert "class stock_reserved current" in mermaid
    assert "1. reserve" in mermaid


def test_an_event_with_a_payload_applies_once_per_idempotency_key(client: FlaskClient) -> None:
    order = _place(client, total="30.00")
    _fire(client, order["id"], "reserve")
    payment = {"amount": "30.00", "reference": "PAY-1"}

    first = _fire(client, order["id"], "pay", "pay-once", **payment)
    again = _fire(client, order["id"], "pay", "pay-once", **payment)

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.get_json()["transition"]["replayed"] is True
    assert again.get_json()["transition"]["seq"] == first.get_json()["transition"]["seq"] == 2
    shown = client.get(f"/api/orders/{order['id']}").get_json()
    assert [r["event"] for r in shown["history"]] == ["reserve", "pay"]
    assert shown["history"][1]["idempotency_key"] == "pay-once"
    assert shown["history"][1]["actor"] == "clerk"
    assert shown["order"]["paid_amount"] == "30.00"


def test_the_actor_comes_from_the_x_actor_header(client: FlaskClient) -> None:
    order = _place(client)
    client.post(f"/api/orders/{order['id']}/events/reserve", headers={"X-Actor": "webhook"})
    shown = client.get(f"/api/orders/{order['id']}").get_json()
    assert shown["history"][0]["actor"] == "webhook"


def test_refusals_answer_problems_with_their_facts(client: FlaskClient) -> None:
    order = _place(client, total="20.00")
    declined = _place(client, total="20.00", card_authorized=False)
    for placed in (order, declined):
        _fire(client, placed["id"], "reserve")

    not_allowed = _fire(client, order["id"], "ship", carrier="DHL", tracking_number="T1")
    assert not_allowed.status_code == 409
    assert not_allowed.mimetype == PROBLEM
    problem = not_allowed.get_json()
    assert (problem["state"], problem["event"], problem["allowed"]) == (
        "stock_reserved",
        "ship",
        ["pay", "cancel"],
    )

    wrong_amount = _fire(client, order["id"], "pay", amount="19.00", reference="P")
    assert wrong_amount.status_code == 422
    assert wrong_amount.get_json()["check"] == "amount_matches_total"

    guard = _fire(client, declined["id"], "pay", amount="20.00", reference="P")
    assert guard.status_code == 422
    assert guard.get_json()["reason"] == "card authorisation was declined"

    bad_payload = _fire(client, order["id"], "pay", amount="-1")
    assert bad_payload.status_code == 422
    assert any(e.startswith("reference") for e in bad_payload.get_json()["errors"])

    missing = client.get("/api/orders/9999")
    assert (missing.status_code, missing.mimetype) == (404, PROBLEM)
    assert (missing.get_json()["entity"], missing.get_json()["key"]) == ("order", "9999")

    invalid = client.post("/api/orders", json={"customer": "", "total": "0"})
    assert invalid.status_code == 422
    assert invalid.mimetype == PROBLEM
    assert len(invalid.get_json()["errors"]) == 2

    shown = client.get(f"/api/orders/{order['id']}").get_json()
    assert (shown["order"]["state"], len(shown["history"])) == ("stock_reserved", 1)


def test_the_api_retries_and_resolves_stuck_orders(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        dead = stuck_order("Hiro", "75.00", refund_failures=5, started=_days_ago(6))
        retrying = stuck_order("Ines", "42.00", refund_failures=1, started=_days_ago(3))
        dead_id, retrying_id = dead.id, retrying.id

    listed = client.get("/api/attention").get_json()["orders"]
    assert [o["key"] for o in listed] == [str(dead_id), str(retrying_id)]
    assert [c["status"] for c in listed[0]["compensations"]] == ["dead", "pending"]

    nothing_dead = client.post(f"/api/orders/{retrying_id}/retry")
    assert (nothing_dead.status_code, nothing_dead.mimetype) == (409, PROBLEM)
    refusal = nothing_dead.get_json()
    assert "has no dead-lettered compensations" in refusal["detail"]
    assert (refusal["lever"], refusal["key"], refusal["state"]) == (
        "retry",
        str(retrying_id),
        "paid",
    )
    no_note = client.post(f"/api/orders/{retrying_id}/resolve", json={"state": "cancelled"})
    assert (no_note.status_code, no_note.mimetype) == (422, PROBLEM)
    assert no_note.get_json()["argument"] == "note"
    assert client.post("/api/orders/9999/retry").status_code == 404
    retried = client.post(f"/api/orders/{dead_id}/retry")
    assert retried.status_code == 200
    assert retried.get_json()["transition"]["event"] == "@retry"
    resolved = client.post(
        f"/api/orders/{retrying_id}/resolve", json={"state": "cancelled", "note": "by phone"}
    )
    assert resolved.get_json()["transition"]["target"] == "cancelled"

    swept = client.post("/api/sweep").get_json()
    assert swept["compensated"] == 1
    assert client.get("/api/attention").get_json()["orders"] == []
    assert client.get(f"/api/orders/{dead_id}").get_json()["order"]["state"] == "cancelled"


# -- the pages ------------------------------------------------------------------------


def test_the_order_page_has_a_form_per_allowed_event(client: FlaskClient) -> None:
    order = _place(client, customer="Dara", total="89.00")
    _fire(client, order["id"], "reserve")

    page = client.get(f"/orders/{order['id']}")

    html = _text(page)
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    events = re.findall(
        r'<form method="post" action="[^"]+" class="event" data-event="(\w+)"', html
    )
    assert events == ["pay", "cancel"]
    pay_form = html[html.index('data-event="pay"') : html.index('data-event="cancel"')]
    assert '<input name="amount" required inputmode="decimal" value="89.00"' in pay_form
    assert '<select name="method">' in pay_form
    assert '<input name="reference" required autocomplete="off">' in pay_form
    assert 'name="idempotency_key"' in pay_form
    assert "class stock_reserved current" in html
    assert "/static/vendor/mermaid/mermaid.tiny.js" in html
    assert "http://" not in html.replace("http://www.w3.org", "")
    assert "https://" not in html


def test_an_unknown_order_is_a_page(client: FlaskClient) -> None:
    for missing in (client.get("/orders/9999"), client.post("/orders/9999/events/pay")):
        assert (missing.status_code, missing.mimetype) == (404, "text/html")
        assert "No order 9999" in _text(missing)


def test_a_form_fires_its_event_once(client: FlaskClient) -> None:
    order = _place(client)
    form = {"idempotency_key": "form-1-reserve"}

    first = client.post(f"/orders/{order['id']}/events/reserve", data=form, follow_redirects=True)
    again = client.post(f"/orders/{order['id']}/events/reserve", data=form, follow_redirects=True)

    assert "reserve: pending → stock_reserved" in _text(first)
    assert "already applied (step 1); nothing changed" in _text(again)
    history = client.get(f"/api/orders/{order['id']}").get_json()["history"]
    assert [r["event"] for r in history] == ["reserve"]


def test_a_payload_form_fires_and_a_refusal_is_shown(client: FlaskClient) -> None:
    order = _place(client, total="12.00")
    declined = _place(client, total="12.00", card_authorized=False)
    for placed in (order, declined):
        client.post(f"/orders/{placed['id']}/events/reserve")
    payment = {"amount": "12.00", "method": "card", "reference": "PAY-9", "idempotency_key": ""}

    paid = client.post(f"/orders/{order['id']}/events/pay", data=payment, follow_redirects=True)
    refused = client.post(
        f"/orders/{declined['id']}/events/pay", data=payment, follow_redirects=True
    )

    assert "pay: stock_reserved → paid" in _text(paid)
    assert "amount: 12.00, method: card, reference: PAY-9" in _text(paid)
    assert 'class="flash flash-error"' in _text(refused)
    assert "card authorisation was declined" in _text(refused)
    states = [client.get(f"/api/orders/{o['id']}").get_json()["order"] for o in (order, declined)]
    assert [s["state"] for s in states] == ["paid", "stock_reserved"]


def test_placing_an_order_from_the_form(client: FlaskClient) -> None:
    form = {"customer": "Eve", "total": "15.00", "quantity": "2", "sku": "SKU-9"}

    placed = client.post("/orders", data=form, follow_redirects=True)
    invalid = client.post("/orders", data={"customer": "", "total": "x"}, follow_redirects=True)

    assert "Order 1 placed for Eve." in _text(placed)
    assert "flash-error" in _text(invalid)
    order = client.get("/api/orders/1").get_json()["order"]
    assert (order["quantity"], order["sku"], order["card_authorized"]) == (2, "SKU-9", False)


def test_the_index_filters_by_state(client: FlaskClient) -> None:
    _place(client, customer="Pending Pat")
    reserved = _place(client, customer="Reserved Rui")
    _fire(client, reserved["id"], "reserve")

    html = _text(client.get("/?state=stock_reserved"))

    assert "Reserved Rui" in html
    assert "Pending Pat" not in html
    assert re.search(r"stock reserved <b>1</b>", html)


def test_the_attention_page_retries_resolves_and_sweeps(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        dead = stuck_order("Hiro", "75.00", refund_failures=5, started=_days_ago(6))
        retrying = stuck_order("Ines", "42.00", refund_failures=1, started=_days_ago(3))
        dead_id, retrying_id = dead.id, retrying.id

    page = _text(client.get("/attention"))
    assert f'id="order-{dead_id}"' in page
    assert f'id="order-{retrying_id}"' in page
    assert page.count("Retry 1 dead-lettered") == 1
    assert 'data-action="refund_payment" data-status="dead"' in page
    assert "ConnectionError: payment provider unavailable" in page

    retried = _text(client.post(f"/attention/{dead_id}/retry", follow_redirects=True))
    assert "retrying 1 dead-lettered compensation(s)" in retried
    nothing_dead = _text(client.post(f"/attention/{retrying_id}/retry", follow_redirects=True))
    assert "has no dead-lettered compensations" in nothing_dead
    no_note = {"state": "cancelled", "note": " "}
    refused = _text(
        client.post(f"/attention/{retrying_id}/resolve", data=no_note, follow_redirects=True)
    )
    assert "needs a note" in refused
    resolved = client.post(
        f"/attention/{retrying_id}/resolve",
        data={"state": "cancelled", "note": "refunded by phone"},
        follow_redirects=True,
    )
    assert f"Order {retrying_id} resolved into cancelled." in _text(resolved)

    swept = _text(client.post("/attention/sweep", follow_redirects=True))
    assert "Sweep: " in swept
    assert "1 compensated" in swept
    assert "Nothing needs attention" in swept
    with app.app_context():
        orders = {o.id: o for o in db.session.scalars(db.select(Order))}
        assert orders[dead_id].state == orders[retrying_id].state == "cancelled"
        assert orders[dead_id].paid_amount == Decimal(0)
    history = client.get(f"/api/orders/{retrying_id}").get_json()["history"]
    assert (history[-1]["event"], history[-1]["actor"]) == ("@resolve", "clerk")


# -- starting it ----------------------------------------------------------------------


def test_main_creates_the_tables_and_the_demo_once(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLASK_SQLALCHEMY_DATABASE_URI", url)
    with example_app(url):
        pass  # empties the database

    main(["--reset", "--no-serve"])
    main(["--no-serve"])

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("(9 demo orders added)")
    assert lines[1].endswith("(0 demo orders added)")
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        assert seed_demo() == 0  # still there
        states = sorted(o.state for o in db.session.scalars(db.select(Order)))
        db.session.remove()
        db.engine.dispose()
    expected = ["pending", "stock_reserved", "stock_reserved", "paid", "paid", "paid"]
    assert states == sorted([*expected, "shipped", "delivered", "cancelled"])


def _days_ago(days: int) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)
