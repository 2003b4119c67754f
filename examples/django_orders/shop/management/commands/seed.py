"""``manage.py seed``: an ``admin`` superuser (password ``admin``, or
``ORDERS_ADMIN_PASSWORD``), a ``clerk`` who may fire reserve, pay and ship only,
and demo orders in several states, one of them stuck with its refund
dead-lettered. Does nothing when orders exist already."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import Permission, User
from django.core.management.base import BaseCommand

from examples.django_orders.shop.models import Order
from models.order import payments
from statekit.clock import ManualClock
from statekit.compensation import Backoff
from statekit.contrib.django.hosting import host
from statekit.runtime import Runner
from statekit.sweeper import Sweeper

DEMO: list[tuple[str, str, tuple[str, ...]]] = [
    ("Ada Lovelace", "49.90", ()),
    ("Ben Okafor", "120.00", ("reserve",)),
    ("Dara Singh", "89.00", ("reserve", "pay")),
    ("Elena Rossi", "15.00", ("reserve", "pay", "ship")),
    ("Greta Lind", "60.00", ("cancel",)),
]


def payload_for(order: Order, event: str) -> dict[str, Any]:
    """A plausible payload for `event` on `order`."""
    if event == "pay":
        return {"amount": order.total, "reference": f"PAY-{order.pk:04d}"}
    if event == "ship":
        return {"carrier": "DHL", "tracking_number": f"TRK{order.pk:06d}"}
    return {}


class Command(BaseCommand):
    help = __doc__

    def handle(self, *args: Any, **options: Any) -> None:
        password = os.environ.get("ORDERS_ADMIN_PASSWORD", "admin")
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@example.invalid", password)
        if not User.objects.filter(username="clerk").exists():
            clerk = User.objects.create_user("clerk", password=password, is_staff=True)
            codenames = ["view_order", "fire_reserve_order", "fire_pay_order", "fire_ship_order"]
            clerk.user_permissions.set(Permission.objects.filter(codename__in=codenames))
        if Order.objects.exists():
            self.stdout.write("orders exist already; nothing seeded")
            return
        runner = host().runner_for(Order)
        for customer, total, events in DEMO:
            order = Order(customer=customer, total=Decimal(total))
            runner.start(order)
            for event in events:
                runner.fire(order, event, actor="seed", **payload_for(order, event))
        self.stuck_order()
        self.stdout.write(f"seeded {Order.objects.count()} orders; log in as admin or clerk")

    def stuck_order(self) -> None:
        """An order paid six days ago and never shipped: the sweeper marks it stuck
        and its refund fails until it is dead-lettered."""
        clock = ManualClock(datetime.now(UTC) - timedelta(days=6))
        store = host().store
        runner = Runner(Order.__statekit_machine__, store, clock=clock)
        order = Order(customer="Hiro Tanaka", total=Decimal("75.00"))
        runner.start(order)
        runner.fire(order, "reserve", actor="seed")
        runner.fire(order, "pay", actor="seed", **payload_for(order, "pay"))
        sweeper = Sweeper([runner], clock=clock, backoff=Backoff(base=timedelta(minutes=1)))
        payments.outages = 50
        try:
            for _ in range(40):
                clock.advance(hours=3)
                sweeper.run_once()
        finally:
            payments.outages = 0
