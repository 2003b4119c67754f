"""``manage.py seed``: an ``admin`` superuser (password ``admin``, or
``ORDERS_ADMIN_PASSWORD``), a ``clerk`` who may fire reserve, pay and ship only,
and demo orders in several states, one of them stuck with its refund
dead-lettered. Adds no orders when there are some already."""

from __future__ import annotations

import os
from typing import Any

from django.contrib.auth.models import Permission, User
from django.core.management.base import BaseCommand

from examples.django_orders.shop.demo import DEMO, place, stuck_order
from examples.django_orders.shop.models import Order

CLERK = ["view_order", "fire_reserve_order", "fire_pay_order", "fire_ship_order"]
"""What the clerk may do."""


class Command(BaseCommand):
    help = __doc__

    def handle(self, *args: Any, **options: Any) -> None:
        password = os.environ.get("ORDERS_ADMIN_PASSWORD", "admin")
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@example.invalid", password)
        if not User.objects.filter(username="clerk").exists():
            clerk = User.objects.create_user("clerk", password=password, is_staff=True)
            clerk.user_permissions.set(Permission.objects.filter(codename__in=CLERK))
        if Order.objects.exists():
            self.stdout.write("orders exist already; no demo orders added")
            return
        for customer, total, events in DEMO:
            place(customer, total, events)
        stuck_order("Hiro Tanaka", "75.00")
        self.stdout.write(
            f"seeded {Order.objects.count()} orders; log in at /admin/ as admin or clerk "
            f"(password {password!r})"
        )
