"""Demo orders, so a fresh database has something on every page: orders in each
state, one whose card was declined, and two stuck orders whose refund failed (one
retrying, one dead-lettered), made by running the sweeper over a past week with a
controllable clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from examples.flask_orders.models import Order, db, statekit
from examples.flask_orders.orders import NewOrder, place_order
from models.order import payments
from statekit.clock import ManualClock
from statekit.compensation import Backoff
from statekit.runtime import Runner
from statekit.sweeper import Sweeper

__all__ = ["seed_demo", "stuck_order", "walk"]

# (customer, total, events after placing it, extra order fields)
DEMO: list[tuple[str, str, tuple[str, ...], dict[str, Any]]] = [
    ("Ada Lovelace", "49.90", (), {}),
    ("Ben Okafor", "120.00", ("reserve",), {}),
    ("Chen Wei", "35.50", ("reserve",), {"card_authorized": False}),
    ("Dara Singh", "89.00", ("reserve", "pay"), {}),
    ("Elena Rossi", "15.00", ("reserve", "pay", "ship"), {"quantity": 3}),
    ("Farid Haddad", "240.00", ("reserve", "pay", "ship", "deliver"), {}),
    ("Greta Lind", "60.00", ("cancel",), {}),
]


def payload_for(order: Order, event: str) -> dict[str, Any]:
    """A plausible payload for `event` on `order`."""
    if event == "pay":
        return {"amount": order.total, "reference": f"PAY-{order.id:04d}"}
    if event == "ship":
        return {"carrier": "DHL", "tracking_number": f"TRK{order.id:06d}"}
    return {}


def walk(order: Order, events: tuple[str, ...], *, actor: str = "demo") -> None:
    """Fire `events` on `order` in the current session and commit each."""
    for event in events:
        statekit.fire(order, event, payload_for(order, event), actor=actor)
        db.session.commit()


def stuck_order(customer: str, total: str, *, refund_failures: int, started: datetime) -> Order:
    """An order reserved and paid at `started` and never shipped. The sweeper runs
    over the days after it (a controllable clock): past the paid state's deadline it
    marks the order stuck and tries to refund it, and the payment provider fails
    `refund_failures` times in a row (the order's refund is dead-lettered after its
    last attempt)."""
    machine = Order.__statekit_machine__
    clock = ManualClock(started)
    runner = Runner(machine, statekit.store, clock=clock)
    sweeper = Sweeper([runner], clock=clock, backoff=Backoff(jitter=0), handler_timeout=None)
    order = Order(**NewOrder(customer=customer, total=Decimal(total)).model_dump())
    db.session.add(order)
    runner.start(order)
    db.session.commit()
    for event in ("reserve", "pay"):
        runner.fire(order, event, actor="demo", **payload_for(order, event))
        db.session.commit()
    payments.outages = refund_failures
    try:
        clock.advance(days=2, minutes=5)
        sweeper.run_once()
        for _ in range(refund_failures - 1):
            clock.advance(hours=1)
            sweeper.run_once()
    finally:
        payments.outages = 0
    db.session.refresh(order)
    return order


def seed_demo(now: datetime | None = None) -> int:
    """Add the demo orders unless the table has orders already; returns how many
    were added. Runs in the app context."""
    if db.session.scalar(select(func.count()).select_from(Order)):
        return 0
    now = now or datetime.now(UTC)
    stuck_order("Hiro Tanaka", "75.00", refund_failures=5, started=now - timedelta(days=6))
    stuck_order("Ines Duarte", "42.00", refund_failures=1, started=now - timedelta(days=3))
    for customer, total, events, extra in DEMO:
        order = place_order(NewOrder(customer=customer, total=Decimal(total), **extra))
        db.session.commit()
        walk(order, events)
    return len(DEMO) + 2
