"""The pages a person uses: the orders by state, one order (a button per allowed
event, a form for its payload, its history and diagram), and the orders that need
attention (stuck, or with a dead-lettered compensation) with retry and resolve.

Each form posts and redirects back (post/redirect/get); statekit's refusals are
shown as a message on the page they came from, with nothing written. An event's
form carries an idempotency key made when the page was drawn, so a form sent twice
(a double click, a reload) fires once.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from pydantic import ValidationError
from werkzeug.wrappers import Response

from examples.flask_orders.models import Order, db, statekit
from examples.flask_orders.orders import (
    NewOrder,
    attention,
    diagram_of,
    orders_in,
    place_order,
    state_counts,
)
from statekit.errors import InstanceNotFoundError, StatekitError

__all__ = ["pages"]

pages = Blueprint("pages", __name__)

MACHINE = Order.__statekit_machine__


@pages.errorhandler(InstanceNotFoundError)
def not_found(error: InstanceNotFoundError) -> tuple[str, int]:
    """An unknown order is a page, not the API's problem response."""
    return render_template("not_found.html", key=error.key), 404


@pages.app_template_filter("moment")
def moment(value: datetime | None) -> str:
    """A time as the pages show it (UTC, to the second)."""
    return "" if value is None else f"{value:%Y-%m-%d %H:%M:%S} UTC"


@pages.get("/")
def index() -> str:
    """The orders, filtered by state, and a form to place one."""
    state = request.args.get("state") or None
    return render_template(
        "index.html",
        orders=orders_in(state),
        counts=state_counts(),
        selected=state,
        finals=MACHINE.final_states,
    )


@pages.post("/orders")
def create_order() -> Response:
    """Place an order from the form and open its page."""
    form = request.form
    fields: dict[str, Any] = {k: v for k, v in form.items() if v != ""}
    fields["card_authorized"] = "card_authorized" in form
    fields["credit_approved"] = "credit_approved" in form
    try:
        new = NewOrder.model_validate(fields)
    except ValidationError as exc:
        flash(_errors(exc), "error")
        return redirect(url_for("pages.index"))
    order = place_order(new)
    db.session.commit()
    flash(f"Order {order.id} placed for {order.customer}.", "ok")
    return redirect(url_for("pages.show_order", order_id=order.id))


@pages.get("/orders/<int:order_id>")
def show_order(order_id: int) -> str:
    """One order: its facts, a button per allowed event, its history and diagram."""
    order = statekit.get_or_404(Order, order_id)
    history = list(statekit.history(order))
    return render_template(
        "order.html",
        order=order,
        events=statekit.allowed_events(order),
        history=history,
        diagram=diagram_of(order, history),
        form_key=uuid.uuid4().hex,
        final=order.state in MACHINE.final_states,
    )


@pages.post("/orders/<int:order_id>/events/<event>")
def fire_event(order_id: int, event: str) -> Response:
    """Fire `event` with the form's fields as its payload (empty ones left out, so
    their defaults apply)."""
    order = statekit.get_or_404(Order, order_id)
    payload = {k: v for k, v in request.form.items() if k != "idempotency_key" and v != ""}
    key = request.form.get("idempotency_key") or None
    try:
        record = statekit.fire(order, event, payload, idempotency_key=key)
        db.session.commit()
    except StatekitError as exc:
        db.session.rollback()
        flash(str(exc), "error")
    else:
        if record.replayed:
            flash(f"'{event}' was already applied (step {record.seq}); nothing changed.", "ok")
        else:
            flash(f"{event}: {record.source} → {record.target}", "ok")
    return redirect(url_for("pages.show_order", order_id=order_id))


@pages.get("/attention")
def needs_attention() -> str:
    """Stuck orders and dead-lettered compensations, with the levers."""
    return render_template(
        "attention.html",
        items=attention(),
        states=MACHINE.states,
        compensated_state=MACHINE.compensated_state,
    )


@pages.post("/attention/<int:order_id>/retry")
def retry(order_id: int) -> Response:
    """Give the order's dead-lettered compensations more attempts."""
    try:
        record = statekit.retry(MACHINE.name, order_id)
    except StatekitError as exc:
        flash(str(exc), "error")
    else:
        note = (record.payload or {}).get("note", "retrying")
        flash(f"Order {order_id}: {note}; the next sweep runs them.", "ok")
    return redirect(url_for("pages.needs_attention"))


@pages.post("/attention/<int:order_id>/resolve")
def resolve(order_id: int) -> Response:
    """Move a stuck order into the chosen state, with a note saying why."""
    form = request.form
    try:
        record = statekit.resolve(
            MACHINE.name, order_id, form.get("state", ""), note=form.get("note", "")
        )
    except StatekitError as exc:
        flash(str(exc), "error")
    else:
        flash(f"Order {order_id} resolved into {record.target}.", "ok")
    return redirect(url_for("pages.needs_attention"))


@pages.post("/attention/sweep")
def sweep() -> Response:
    """Run one sweep pass now and say what it did."""
    try:
        result = statekit.sweep()
    except StatekitError as exc:
        flash(f"The sweep failed: {exc}", "error")
    else:
        done = [f"{n} {name.replace('_', ' ')}" for name, n in result.as_dict().items() if n]
        flash("Sweep: " + (", ".join(done) if done else "nothing was due") + ".", "ok")
    return redirect(url_for("pages.needs_attention"))


def _errors(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
