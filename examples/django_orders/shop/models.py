"""`Order`: the order machine of `models/order.py` on a Django model. The machine
(`OrderWorkflow`) is the one the SQLAlchemy examples use, unchanged; `StateModel`
adds statekit's state columns."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import ClassVar

from django.db import models

from models.order import OrderWorkflow
from statekit.contrib.django.models import StateModel
from statekit.contrib.django.permissions import statekit_permissions
from statekit.engine import Machine


class Order(StateModel):
    """A customer's order: the fields the order machine's handlers read and write."""

    __statekit_machine__: ClassVar[Machine] = OrderWorkflow.machine

    customer: models.CharField[str, str] = models.CharField(max_length=100)
    total: models.DecimalField[Decimal, Decimal] = models.DecimalField(
        max_digits=12, decimal_places=2
    )
    sku: models.CharField[str, str] = models.CharField(max_length=32, default="SKU-1")
    quantity: models.IntegerField[int, int] = models.IntegerField(default=1)
    in_stock: models.IntegerField[int, int] = models.IntegerField(default=10)
    card_authorized: models.BooleanField[bool, bool] = models.BooleanField(default=True)
    credit_approved: models.BooleanField[bool, bool] = models.BooleanField(default=False)
    paid_amount: models.DecimalField[Decimal, Decimal] = models.DecimalField(
        max_digits=12, decimal_places=2, default=Decimal(0)
    )
    created_at: models.DateTimeField[datetime, datetime] = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "shop"
        ordering = ("-id",)
        permissions = tuple(statekit_permissions(OrderWorkflow, "order"))

    def __str__(self) -> str:
        return f"Order {self.pk} ({self.customer})"
