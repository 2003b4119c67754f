"""statekit's errors as RFC 9457 problem responses: each status, and the facts each
error carries as fields; off by default."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from statekit.contrib.flask import problem_of
from statekit.errors import (
    DefinitionMismatchError,
    InvalidArgumentError,
    NestedTransitionError,
    SweeperError,
    UnstorableTextError,
)
from tests.contrib.flask.conftest import AppFactory
from tests.contrib.flask.shop import BEFORE_FIRE, Order, statekit
from tests.contrib.flask.test_requests import PAYMENT, place, stored

TYPE = "tag:statekit.invalid,2026:"


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body: dict[str, Any] = response.json
    assert body["status"] == status
    return body


def test_an_event_not_allowed_in_this_state_is_409_with_the_allowed_events(
    client: FlaskClient,
) -> None:
    place(client)
    body = problem(client.post("/orders/1/events/ship"), 409)
    assert body == {
        "type": f"{TYPE}event-not-allowed",
        "title": "Event not allowed in this state",
        "status": 409,
        "detail": "cannot fire 'ship' on order 1 in state 'pending'; allowed: reserve, "
        "abandon, cancel",
        "entity": "order",
        "key": "1",
        "state": "pending",
        "event": "ship",
        "allowed": ["reserve", "abandon", "cancel"],
    }


def test_a_refused_guard_is_422_naming_the_check_and_its_reason(client: FlaskClient) -> None:
    place(client, card_authorized=False)
    client.post("/orders/1/events/reserve")
    body = problem(client.post("/orders/1/events/pay", json=PAYMENT), 422)
    assert body["type"] == f"{TYPE}guard-rejected"
    assert (body["state"], body["event"], body["allowed"]) == (
        "stock_reserved",
        "pay",
        ["pay", "cancel"],
    )
    assert body["check"] == "payment_authorized"
    assert body["reason"] == "card authorisation was declined"
    assert body["rejections"] == [
        {"target": "paid", "check": "payment_authorized", "reason": body["reason"]}
    ]


def test_a_failed_precondition_is_422_naming_the_condition(client: FlaskClient) -> None:
    place(client)
    client.post("/orders/1/events/reserve")
    wrong = {**PAYMENT, "amount": "9.99"}
    body = problem(client.post("/orders/1/events/pay", json=wrong), 422)
    assert body["type"] == f"{TYPE}precondition-failed"
    assert body["check"] == "amount_matches_total"
    assert body["reason"] == "payment of 9.99 does not match the order total 10.00"
    assert body["entity"] == "order"
    assert body["key"] == "1"


def test_a_bad_payload_is_422_listing_each_field(client: FlaskClient) -> None:
    place(client)
    client.post("/orders/1/events/reserve")
    body = problem(client.post("/orders/1/events/pay", json={"amount": "-1"}), 422)
    assert body["type"] == f"{TYPE}invalid-payload"
    assert body["event"] == "pay"
    assert body["state"] == "stock_reserved"
    assert [e.split(":")[0] for e in body["errors"]] == ["amount", "reference"]


def test_a_payload_naming_a_reserved_argument_is_422(client: FlaskClient) -> None:
    place(client)
    body = problem(client.post("/orders/1/events/reserve", json={"actor": "mallory"}), 422)
    assert body["errors"] == ["actor: reserved, not a payload field"]


def test_an_unknown_event_is_422_with_the_known_ones(client: FlaskClient) -> None:
    place(client)
    body = problem(client.post("/orders/1/events/teleport"), 422)
    assert body["type"] == f"{TYPE}unknown-event"
    assert body["allowed"] == ["reserve", "abandon", "cancel"]
    assert "teleport" not in body["known"]
    assert "ship" in body["known"]


def test_an_unknown_instance_is_404(client: FlaskClient) -> None:
    body = problem(client.post("/orders/42/events/reserve"), 404)
    assert body == {
        "type": f"{TYPE}not-found",
        "title": "Instance not found",
        "status": 404,
        "detail": "order 42 not found",
        "entity": "order",
        "key": "42",
    }


@pytest.mark.parametrize("key", [2**31, 2**63, 10**30])
def test_a_key_beyond_the_columns_range_is_404(app: Flask, client: FlaskClient, key: int) -> None:
    """Flask's `<int:...>` takes any number: one the key column cannot hold is no
    instance, not a 500 (SQLite's OverflowError, PostgreSQL's failed transaction)."""
    place(client)
    body = problem(client.post(f"/orders/{key}/events/reserve"), 404)
    assert (body["type"], body["key"]) == (f"{TYPE}not-found", str(key))
    assert client.post("/orders/1/events/reserve").status_code == 201


def test_a_reused_idempotency_key_is_422(client: FlaskClient) -> None:
    place(client)
    headers = {"Idempotency-Key": "k-1"}
    client.post("/orders/1/events/reserve", headers=headers)
    body = problem(client.post("/orders/1/events/cancel", headers=headers), 422)
    assert body["type"] == f"{TYPE}idempotency-key-reused"
    assert (body["idempotency_key"], body["recorded_event"]) == ("k-1", "reserve")


@pytest.mark.parametrize("key", ["k" * 129, '"' + "k" * 200 + '"'])
def test_an_idempotency_key_header_the_history_cannot_hold_is_422(
    app: Flask, client: FlaskClient, key: str
) -> None:
    """The client's header, not the server, is at fault: not a 500."""
    place(client)
    body = problem(client.post("/orders/1/events/reserve", headers={"Idempotency-Key": key}), 422)
    assert body["type"] == f"{TYPE}invalid-argument"
    assert body["argument"] == "Idempotency-Key"
    assert "at most 128 characters" in body["allowed"]
    assert stored(app)["events"] == []
    assert stored(app)["notes"] == []


def test_a_lost_race_is_409_with_both_versions(app: Flask, client: FlaskClient) -> None:
    place(client)

    def another_clerk(order: Order) -> None:  # wins between the view's load and its fire
        statekit.runner(order).fire_by_key(order.id, "cancel", actor="clerk")

    BEFORE_FIRE.append(another_clerk)
    body = problem(client.post("/orders/1/events/reserve"), 409)
    assert body["type"] == f"{TYPE}lost-race"
    assert (body["expected_version"], body["actual_version"]) == (0, 1)
    assert (body["entity"], body["key"], body["event"]) == ("order", "1", "reserve")
    assert stored(app)["events"] == ["cancel"]
    assert stored(app)["notes"] == []  # the request's own write rolled back with it


def test_a_state_set_outside_a_transition_is_409_and_nothing_is_written(
    app: Flask, client: FlaskClient
) -> None:
    """A view that binds request data onto the order (state included) and fires:
    the fire would skip reserve and pay; it is refused with both states."""
    place(client)

    def mass_assignment(order: Order) -> None:
        order.state = "paid"

    BEFORE_FIRE.append(mass_assignment)
    shipping = {"carrier": "DHL", "tracking_number": "1Z"}
    body = problem(client.post("/orders/1/events/ship", json=shipping), 409)
    assert body["type"] == f"{TYPE}state-changed"
    assert (body["entity"], body["key"], body["event"]) == ("order", "1", "ship")
    assert (body["state"], body["stored_state"]) == ("paid", "pending")
    assert stored(app)["events"] == []
    assert stored(app)["notes"] == []


def test_a_server_side_error_hides_its_detail_unless_debugging() -> None:
    error = DefinitionMismatchError(entity_type="order", key="1", field="state", value="x")
    hidden = problem_of(error, type_base="t:", expose=False)
    assert hidden == {
        "type": "t:definition-mismatch",
        "title": "Stored state unknown to the machine",
        "status": 500,
        "detail": "the server could not complete the transition; see its log",
    }
    shown = problem_of(error, type_base="t:")
    assert shown["field"] == "state"
    assert "'x'" in shown["detail"]
    nested = NestedTransitionError(
        entity_type="order", key="1", state="paid", event="ship", applying="pay"
    )
    assert problem_of(nested, type_base="t:", expose=False)["status"] == 500


def test_the_handlers_are_off_by_default(make_app: AppFactory, shop_url: str) -> None:
    app = make_app(shop_url)
    client = app.test_client()
    missing = client.post("/orders/42/events/reserve")
    assert missing.status_code == 404  # still a 404: werkzeug's NotFound
    assert missing.mimetype == "text/html"
    place(client)
    app.testing = True  # let the refusal reach the test
    from statekit.errors import TransitionNotAllowedError

    with pytest.raises(TransitionNotAllowedError):
        client.post("/orders/1/events/ship")


def test_the_type_base_is_configurable(make_app: AppFactory, shop_url: str) -> None:
    app = make_app(
        shop_url,
        STATEKIT_PROBLEM_DETAILS=True,
        STATEKIT_PROBLEM_TYPE_BASE="https://shop.example/problems/",
    )
    body = problem(app.test_client().post("/orders/42/events/reserve"), 404)
    assert body["type"] == "https://shop.example/problems/not-found"


def test_a_payload_that_is_not_an_object_is_422(client: FlaskClient) -> None:
    place(client)
    body = problem(client.post("/orders/1/events/reserve", json=[1, 2]), 422)
    assert body["type"] == f"{TYPE}invalid-payload"
    assert body["errors"] == ["(payload): must be an object of fields, not list"]


def test_a_refused_lever_is_409_and_a_refused_argument_422() -> None:
    lever = SweeperError(
        "order 7 has no dead-lettered compensations",
        lever="retry",
        entity_type="order",
        key="7",
        state="paid",
    )
    assert problem_of(lever, type_base=TYPE) == {
        "type": f"{TYPE}lever-refused",
        "title": "Lever refused in this state",
        "status": 409,
        "detail": "order 7 has no dead-lettered compensations",
        "entity": "order",
        "key": "7",
        "lever": "retry",
        "state": "paid",
    }
    argument = problem_of(InvalidArgumentError("note", " ", "a note that says why"), type_base=TYPE)
    assert (argument["status"], argument["type"]) == (422, f"{TYPE}invalid-argument")
    assert (argument["argument"], argument["allowed"]) == ("note", "a note that says why")


def test_a_key_the_history_cannot_hold_is_a_422_not_a_500(app: Flask) -> None:
    """A key a client chose (NUL, lone surrogate, too long) is refused by `start`
    before anything is written, as the caller's input."""
    with app.app_context():
        for key in ("a\x00b", "a\udc80b", "k" * 129):
            with pytest.raises(UnstorableTextError) as caught:
                statekit.start(Order(id=key))
            answer = problem_of(caught.value, type_base=TYPE)
            assert (answer["status"], answer["type"]) == (422, f"{TYPE}invalid-argument")
            assert answer["argument"] == "key"
