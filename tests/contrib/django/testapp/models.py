"""Rows of the contract suites' machines: orders (`models.order`) and jobs
(`tests.contract.jobs`), with string keys (the contracts' keys are arbitrary strings)."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from django.db import models

from models.order import OrderWorkflow
from statekit.contrib.django.fields import ExactCharField
from statekit.contrib.django.models import StateModel
from statekit.engine import Machine
from tests.contract.jobs import JobWorkflow


class Order(StateModel):
    """An order with the attributes of `models.order.Order` and a string key."""

    __statekit_machine__: ClassVar[Machine] = OrderWorkflow.machine

    id = ExactCharField(primary_key=True, max_length=36)
    total = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal(10))
    sku = models.CharField(max_length=32, default="SKU-1")
    quantity = models.IntegerField(default=1)
    in_stock = models.IntegerField(default=10)
    card_authorized = models.BooleanField(default=True)
    credit_approved = models.BooleanField(default=False)
    paid_amount = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal(0))

    class Meta:
        app_label = "testapp"


class Job(StateModel):
    """A job of `tests.contract.jobs.JobWorkflow`."""

    __statekit_machine__: ClassVar[Machine] = JobWorkflow.machine

    id = ExactCharField(primary_key=True, max_length=36)
    frozen = models.BooleanField(default=False)
    undone = models.TextField(null=True)

    class Meta:
        app_label = "testapp"
