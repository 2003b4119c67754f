"""The JSON API: place and list orders, read one with its history, allowed events
and diagram, fire events (payload in the body, ``Idempotency-Key`` header), and the
needs-attention levers.

statekit's errors become ``application/problem+json`` responses through the
extension's handlers (``STATEKIT_PROBLEM_DETAILS``), with the status and facts of
the refusal: 409 for an event not allowed now, 422 for a refused guard, a failed
pre-condition or a bad payload, 404 for an unknown order.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, json, request
from pydantic import ValidationError

from examples.flask_orders.models import Order, db, statekit
from examples.flask_orders.orders import (
    NewOrder,
    attention,
    diagram_of,
    orders_in,
    place_order,
    record_as_dict,
)
from statekit.contrib.flask import FROM_HEADER
from statekit.records import TransitionRecord

__all__ = ["api"]

api = Blueprint("api", __name__, url_prefix="/api")

MACHINE = Order.__statekit_machine__.name


def _problem(status: int, title: str, detail: str, **facts: Any) -> Response:
    """A problem response for what the extension's handlers do not cover."""
    problem = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return Response(
        json.dumps({**problem, **facts}), status=status, mimetype="application/problem+json"
    )


def _invalid(error: ValidationError, title: str) -> Response:
    """A 422 problem listing each bad field (for input statekit does not see)."""
    errors = [
        f"{'.'.join(str(p) for p in e['loc']) or '(body)'}: {e['msg']}" for e in error.errors()
    ]
    return _problem(422, title, f"{error.error_count()} invalid field(s)", errors=errors)


def _lever(record: TransitionRecord) -> dict[str, Any]:
    return {"transition": record_as_dict(record)}


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    return data if isinstance(data, dict) else {}


@api.post("/orders")
def create_order() -> Any:
    """Place an order; answers 201 with the order in its initial state."""
    try:
        new = NewOrder.model_validate(_body())
    except ValidationError as exc:
        return _invalid(exc, "Invalid order")
    order = place_order(new)
    db.session.commit()
    return order.as_dict(), 201, {"Location": f"/api/orders/{order.id}"}


@api.get("/orders")
def list_orders() -> Any:
    """The orders, newest first; ``?state=paid`` keeps those in one state."""
    state = request.args.get("state") or None
    return {"orders": [o.as_dict() for o in orders_in(state)]}


@api.get("/orders/<int:order_id>")
def show_order(order_id: int) -> Any:
    """One order with its history, the events allowed now and its diagram."""
    order = statekit.get_or_404(Order, order_id)
    history = list(statekit.history(order))
    return {
        "order": order.as_dict(),
        "history": [record_as_dict(r) for r in history],
        "allowed_events": [e.as_dict() for e in statekit.allowed_events(order)],
        "diagram": {"mermaid": diagram_of(order, history)},
    }


@api.post("/orders/<int:order_id>/events/<event>")
def fire_event(order_id: int, event: str) -> Any:
    """Fire `event` with the JSON body as its payload. A retry carrying the same
    ``Idempotency-Key`` answers 200 with the recorded transition; a new transition
    answers 201."""
    order = statekit.get_or_404(Order, order_id)
    record = statekit.fire(order, event, _body(), idempotency_key=FROM_HEADER)
    db.session.commit()
    status = 200 if record.replayed else 201
    return {"transition": record_as_dict(record), "order": order.as_dict()}, status


@api.get("/attention")
def needs_attention() -> Any:
    """Stuck orders and dead-lettered compensations."""
    return {"orders": [a.as_dict() for a in attention()]}


@api.post("/orders/<int:order_id>/retry")
def retry(order_id: int) -> Any:
    """Give the order's dead-lettered compensations more attempts."""
    return _lever(statekit.retry(MACHINE, order_id))  # nothing dead-lettered: 409


@api.post("/orders/<int:order_id>/resolve")
def resolve(order_id: int) -> Any:
    """Move a stuck order into ``{"state": ..., "note": ...}`` by hand."""
    body = _body()
    state, note = str(body.get("state", "")), str(body.get("note", ""))
    return _lever(statekit.resolve(MACHINE, order_id, state, note=note))  # refused: 422


@api.post("/sweep")
def sweep() -> Any:
    """Run one sweep pass now (a demo's shortcut for `flask statekit sweep --once`)."""
    return statekit.sweep().as_dict()
