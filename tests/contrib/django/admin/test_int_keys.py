"""`DjangoStore` on a model with an integer primary key (the example project's
`BigAutoField`): a key no row can hold (past 64 bits, not a number) names no instance
on every path, as a missing one does. On SQLite `fire_by_key`'s locked load raised the
driver's raw `OverflowError` past 2**63."""

from __future__ import annotations

from decimal import Decimal

import pytest

from examples.django_orders.shop.models import Order
from statekit import InstanceNotFoundError
from statekit.contrib.django.hosting import host

pytestmark = pytest.mark.usefixtures("database")


@pytest.mark.parametrize("key", [2**63, -(2**63) - 1, 10**30, "12abc"])
def test_a_key_no_row_can_hold_names_no_instance(key: object) -> None:
    runner = host().runner_for(Order)
    order = Order(customer="Ada", total=Decimal("89.00"))
    runner.start(order)
    with pytest.raises(InstanceNotFoundError, match=f"order {key} not found"):
        runner.fire_by_key(key, "reserve")
    with pytest.raises(InstanceNotFoundError):
        runner.store.load("order", str(key))
    with pytest.raises(InstanceNotFoundError):
        with runner.store.transaction("order", str(key)):  # type: ignore[attr-defined]
            pass
    assert runner.store.history("order", str(key)) == []
    assert runner.fire_by_key(order.pk, "reserve").target == "stock_reserved"
