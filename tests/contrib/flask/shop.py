"""A small Flask shop for the extension's tests: orders (the order machine of
`models.order`) and the app's own notes, on Flask-SQLAlchemy; views that fire in the
request's session and commit, raise, or catch a refusal."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any, ClassVar

from flask import Flask, abort, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import ForeignKey, Numeric, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from models.order import OrderWorkflow, payments
from statekit import Backoff, ManualClock, Runner, Sweeper
from statekit.contrib.flask import FROM_HEADER, StateKit
from statekit.engine import Machine
from statekit.errors import TransitionError
from statekit.records import TransitionRecord
from statekit.store.sqlalchemy import StateMixin


class ShopBase(DeclarativeBase):
    """Declarative base of the shop's tables."""


db = SQLAlchemy(model_class=ShopBase)
statekit = StateKit()


class Order(StateMixin, db.Model):  # type: ignore[name-defined,misc]
    """An order; its machine is found by the extension from this attribute."""

    __tablename__ = "shop_orders"
    __statekit_machine__: ClassVar[Machine] = OrderWorkflow.machine

    id: Mapped[int] = mapped_column(primary_key=True)
    total: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    sku: Mapped[str] = mapped_column(String(32), default="SKU-1")
    quantity: Mapped[int] = mapped_column(default=1)
    in_stock: Mapped[int] = mapped_column(default=10)
    card_authorized: Mapped[bool] = mapped_column(default=True)
    credit_approved: Mapped[bool] = mapped_column(default=False)
    paid_amount: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal(0))


class Note(db.Model):  # type: ignore[name-defined,misc]
    """The app's own write in a request (no machine)."""

    __tablename__ = "shop_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("shop_orders.id"))
    text: Mapped[str] = mapped_column(String(200))


BEFORE_FIRE: list[Callable[[Order], None]] = []
"""Hooks a test sets to run in the fire view between loading the order and firing."""


def sweep_until_dead_lettered(runner: Runner, clock: ManualClock) -> None:
    """Three days on, sweep six times a minute apart while the payment provider is
    down: each paid order is stuck with its refund dead-lettered."""
    payments.outages = 100
    sweeper = Sweeper([runner], clock=clock, backoff=Backoff(base=timedelta(seconds=1), jitter=0))
    clock.advance(days=3)
    try:
        for _ in range(6):
            sweeper.run_once()
            clock.advance(minutes=1)
    finally:
        payments.outages = 0


def record_json(record: TransitionRecord) -> dict[str, Any]:
    """What the views answer with for a transition."""
    return {
        "seq": record.seq,
        "event": record.event,
        "source": record.source,
        "target": record.target,
        "actor": record.actor,
        "idempotency_key": record.idempotency_key,
        "replayed": record.replayed,
    }


def create_app(url: str, **config: Any) -> Flask:
    """The shop on database `url`, with `config` (``STATEKIT_*`` keys and others)."""
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    app.config.update(config)
    db.init_app(app)
    statekit.init_app(app, db=db)
    add_views(app)
    return app


def add_views(app: Flask) -> None:
    """The shop's views."""

    @app.post("/orders")
    def create_order() -> dict[str, Any]:
        data = request.get_json()
        order = Order(id=data.get("id"), total=Decimal(data["total"]))
        for name in ("card_authorized", "in_stock"):
            if name in data:
                setattr(order, name, data[name])
        statekit.start(order)
        db.session.commit()
        return {"id": order.id, "state": order.state}

    @app.get("/orders/<int:key>")
    def show_order(key: int) -> dict[str, Any]:
        order = statekit.get_or_404(Order, key)
        return {
            "id": order.id,
            "state": order.state,
            "allowed": [e.as_dict() for e in statekit.allowed_events(order)],
            "history": [record_json(r) for r in statekit.history(order)],
        }

    @app.post("/orders/<int:key>/events/<event>")
    def fire(key: int, event: str) -> tuple[dict[str, Any], int]:
        """Fire, note it, and commit; ?then=raise raises after firing instead;
        ?refused=commit catches a refusal and commits the note anyway; ?note=0 writes
        no note."""
        order = statekit.get_or_404("order", key)
        if request.args.get("note") != "0":
            db.session.add(Note(order_id=order.id, text=f"{event} requested"))
        for hook in BEFORE_FIRE:
            hook(order)
        try:
            record = statekit.fire(
                order, event, request.get_json(silent=True), idempotency_key=FROM_HEADER
            )
        except TransitionError as refused:
            if request.args.get("refused") != "commit":
                raise
            db.session.commit()
            return {"refused": str(refused)}, 200
        if request.args.get("then") == "raise":
            raise RuntimeError("the view failed after firing")
        db.session.commit()
        return {**record_json(record), "state": order.state}, 200 if record.replayed else 201

    @app.get("/boom")
    def boom() -> None:
        abort(500)
