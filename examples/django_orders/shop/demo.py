"""Demo orders for the example (``manage.py seed``) and its tests: orders in several
states, and a stuck order whose refund failed until it was dead-lettered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from examples.django_orders.shop.models import Order
from models.order import payments
from statekit.clock import ManualClock
from statekit.compensation import Backoff
from statekit.contrib.django.hosting import host
from statekit.runtime import Runner
from statekit.sweeper import Sweeper

__all__ = ["DEMO", "payload_for", "place", "stuck_order"]

DEMO: list[tuple[str, str, tuple[str, ...]]] = [
    ("Ada Lovelace", "49.90", ()),
    ("Ben Okafor", "120.00", ("reserve",)),
    ("Dara Singh", "89.00", ("reserve", "pay")),
    ("Elena Rossi", "15.00", ("reserve", "pay", "ship")),
    ("Greta Lind", "60.00", ("cancel",)),
]
"""(customer, total, the events fired after placing the order)."""


def payload_for(order: Order, event: str) -> dict[str, Any]:
    """A plausible payload for `event` on `order`."""
    if event == "pay":
        return {"amount": order.total, "reference": f"PAY-{order.pk:04d}"}
    if event == "ship":
        return {"carrier": "DHL", "tracking_number": f"TRK{order.pk:06d}"}
    return {}


def place(customer: str, total: str, events: tuple[str, ...] = (), *, actor: str = "seed") -> Order:
    """Place an order and fire `events` on it (each saved with what its action changed)."""
    runner = host().runner_for(Order)
    order = Order(customer=customer, total=Decimal(total))
    runner.start(order)
    for event in events:
        runner.fire(order, event, actor=actor, **payload_for(order, event))
        order.save()
    return order


def stuck_order(customer: str, total: str, *, days_ago: int = 6) -> Order:
    """An order reserved and paid `days_ago` days ago and never shipped: the sweeper
    runs over the days after (a controllable clock), marks it stuck past the paid
    state's deadline, and its refund fails until it is dead-lettered."""
    clock = ManualClock(datetime.now(UTC) - timedelta(days=days_ago))
    runner = Runner(Order.__statekit_machine__, host().store, clock=clock)
    order = Order(customer=customer, total=Decimal(total))
    runner.start(order)
    for event in ("reserve", "pay"):
        runner.fire(order, event, actor="seed", **payload_for(order, event))
        order.save()
    sweeper = Sweeper([runner], clock=clock, backoff=Backoff(base=timedelta(minutes=1)))
    payments.outages = 1000
    try:
        for _ in range(40):
            clock.advance(hours=3)
            sweeper.run_once()
    finally:
        payments.outages = 0
    order.refresh_from_db()
    return order
