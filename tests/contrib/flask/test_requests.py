"""Firing in a request: the request's session owns the commit, refusals leave the
app's other writes to the app, a retried POST with one Idempotency-Key applies once;
on a SQLite file, PostgreSQL and MariaDB."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from tests.contrib.flask.shop import Note, Order, db, statekit

PAYMENT = {"amount": "10.00", "reference": "PAY-1"}


def place(client: FlaskClient, key: int = 1, **fields: Any) -> None:
    response = client.post("/orders", json={"id": key, "total": "10.00", **fields})
    assert response.status_code == 200, response.json


def stored(app: Flask, key: int = 1) -> dict[str, Any]:
    """What the database holds of order `key`, read in a fresh session."""
    with app.app_context():
        order = db.session.get(Order, key)
        assert order is not None
        notes = db.session.scalars(select(Note.text).where(Note.order_id == key).order_by(Note.id))
        history = statekit.store.history("order", str(key))
        return {
            "state": order.state,
            "version": order.state_version,
            "in_stock": order.in_stock,
            "notes": list(notes),
            "events": [r.event for r in history],
        }


def test_a_view_that_fires_and_returns_commits_the_transition_with_its_own_write(
    app: Flask, client: FlaskClient
) -> None:
    place(client)
    response = client.post("/orders/1/events/reserve")
    assert response.status_code == 201
    assert response.json is not None
    assert response.json["state"] == "stock_reserved"
    assert response.json["seq"] == 1
    assert stored(app) == {
        "state": "stock_reserved",
        "version": 1,
        "in_stock": 9,  # the reserve action's write to the row, flushed with the transition
        "notes": ["reserve requested"],
        "events": ["reserve"],
    }


def test_a_view_that_fires_then_raises_rolls_back_both(app: Flask, client: FlaskClient) -> None:
    place(client)
    response = client.post("/orders/1/events/reserve?then=raise")
    assert response.status_code == 500
    assert stored(app) == {
        "state": "pending",
        "version": 0,
        "in_stock": 10,
        "notes": [],
        "events": [],
    }
    assert client.post("/orders/1/events/reserve").status_code == 201  # nothing half-done


def test_a_refused_transition_leaves_the_other_writes_to_the_app(
    app: Flask, client: FlaskClient
) -> None:
    place(client)
    response = client.post("/orders/1/events/ship?refused=commit")  # the app commits anyway
    assert response.status_code == 200
    assert stored(app)["notes"] == ["ship requested"]
    assert stored(app)["events"] == []
    response = client.post("/orders/1/events/ship")  # the app lets the refusal propagate
    assert response.status_code == 409
    assert stored(app) == {
        "state": "pending",
        "version": 0,
        "in_stock": 10,
        "notes": ["ship requested"],
        "events": [],
    }


def test_a_retried_post_with_one_idempotency_key_applies_once(
    app: Flask, client: FlaskClient
) -> None:
    place(client)
    client.post("/orders/1/events/reserve")
    headers = {"Idempotency-Key": "pay-order-1"}
    first = client.post("/orders/1/events/pay", json=PAYMENT, headers=headers)
    again = client.post("/orders/1/events/pay", json=PAYMENT, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json is not None
    assert again.json is not None
    assert again.json["replayed"] is True
    assert {**first.json, "replayed": True} == again.json  # the recorded transition
    assert again.json["seq"] == 2
    assert again.json["idempotency_key"] == "pay-order-1"
    assert stored(app)["events"] == ["reserve", "pay"]
    with app.app_context():
        order = db.session.get(Order, 1)
        assert order is not None
        assert order.paid_amount == Decimal("10.00")


def test_the_idempotency_key_header_may_be_a_structured_field_string(
    app: Flask, client: FlaskClient
) -> None:
    place(client)
    headers = {"Idempotency-Key": '"8e03978e-40d5-43e8-bc93-6894a57f9324"'}
    client.post("/orders/1/events/reserve", headers=headers)
    again = client.post("/orders/1/events/reserve", headers=headers)
    assert again.json is not None
    assert again.json["replayed"] is True
    assert again.json["idempotency_key"] == "8e03978e-40d5-43e8-bc93-6894a57f9324"


def test_without_the_header_a_repeated_post_is_a_new_request(
    app: Flask, client: FlaskClient
) -> None:
    place(client)
    assert client.post("/orders/1/events/reserve").status_code == 201
    assert client.post("/orders/1/events/reserve").status_code == 409
    assert stored(app)["events"] == ["reserve"]


def test_views_read_allowed_events_with_payload_fields_and_history(
    app: Flask, client: FlaskClient
) -> None:
    place(client)
    client.post("/orders/1/events/reserve", environ_base={"REMOTE_USER": "ann"})
    shown = client.get("/orders/1").json
    assert shown is not None
    assert [e["name"] for e in shown["allowed"]] == ["pay", "cancel"]
    pay = shown["allowed"][0]["fields"]
    assert [(f["name"], f["type"], f["required"]) for f in pay] == [
        ("amount", "number", True),
        ("method", "string", False),
        ("reference", "string", True),
    ]
    assert pay[1]["choices"] == ["card", "invoice"]
    assert pay[1]["default"] == "card"
    assert [(r["event"], r["actor"]) for r in shown["history"]] == [("reserve", "ann")]


def test_a_started_order_is_in_the_request_session_until_the_app_commits(app: Flask) -> None:
    with app.test_request_context():
        order = Order(id=7, total=Decimal(5))
        statekit.start(order)
        assert order.state == "pending"
        db.session.rollback()
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Order)) == 0
        assert statekit.store.history("order", "7") == []


def test_the_loser_of_a_race_with_the_same_key_answers_with_the_winners_record(
    app: Flask, client: FlaskClient
) -> None:
    from tests.contrib.flask.shop import BEFORE_FIRE

    place(client)

    def same_request_elsewhere(order: Order) -> None:  # commits first, under the same key
        statekit.runner(order).fire_by_key(order.id, "reserve", idempotency_key="k-9")

    BEFORE_FIRE.append(same_request_elsewhere)
    # No note: on SQLite a transaction that read before the winner committed cannot
    # write any more (docs/flask.md); on the servers it could.
    response = client.post("/orders/1/events/reserve?note=0", headers={"Idempotency-Key": "k-9"})
    assert response.status_code == 200
    assert response.json is not None
    assert response.json["replayed"] is True
    assert response.json["seq"] == 1
    assert stored(app)["events"] == ["reserve"]
