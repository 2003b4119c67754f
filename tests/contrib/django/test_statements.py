"""DjangoStore's direct statements (`store.statements`): the row it loads is the
row the ORM loads, value for value and type for type, on every backend; models the
statements cannot serve exactly go through the QuerySet API."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

import pytest
from django.db import models, transaction
from django.test.utils import isolate_apps

from models.order import OrderWorkflow
from statekit import ConcurrentTransitionError, Runner
from statekit.contrib.django.models import StateModel, Transition
from statekit.contrib.django.store import DjangoStore
from statekit.contrib.django.store.statements import direct, load_locked
from statekit.engine import Machine
from tests.contrib.django.conftest import empty_tables
from tests.contrib.django.testapp.models import Order


@pytest.fixture
def runner(alias: str) -> Iterator[Runner]:
    yield Runner(OrderWorkflow.machine, DjangoStore({OrderWorkflow.machine: Order}, using=alias))
    empty_tables(alias)


def _values(order: Order) -> dict[str, tuple[Any, type]]:
    return {
        f.attname: (getattr(order, f.attname), type(getattr(order, f.attname)))
        for f in Order._meta.concrete_fields
    }


def test_the_loaded_row_is_the_orms_value_for_value(alias: str, runner: Runner) -> None:
    order = Order(id="direct-1", total=Decimal("12.50"), card_authorized=False, quantity=3)
    runner.start(order)
    runner.fire_by_key("direct-1", "reserve")
    with transaction.atomic(using=alias):
        loaded = load_locked(alias, Order, "direct-1")
        assert loaded is not None
        assert load_locked(alias, Order, "no-such-order") is None
    expected = Order.objects.using(alias).get(pk="direct-1")
    assert _values(loaded) == _values(expected)
    assert loaded.state == "stock_reserved"
    assert loaded.state_entered_at is not None
    assert loaded.state_entered_at.tzinfo is not None
    assert loaded._state.db == alias
    assert not loaded._state.adding


@isolate_apps("tests.contrib.django.testapp")
def test_models_the_statements_cannot_serve_exactly_use_the_orm() -> None:
    class Visible(models.Manager[Any]):
        def get_queryset(self) -> models.QuerySet[Any]:
            return super().get_queryset().filter(quantity__gt=0)

    class HiddenOrder(StateModel):
        __statekit_machine__: ClassVar[Machine] = OrderWorkflow.machine

        quantity = models.IntegerField(default=1)
        objects = Visible()

        class Meta:
            app_label = "testapp"

    class SpecialOrder(Order):
        note = models.TextField(default="")

        class Meta:
            app_label = "testapp"

    assert direct(Order)
    assert not direct(HiddenOrder)  # the default manager hides rows
    assert not direct(SpecialOrder)  # its rows span two tables


def _taken_seq(alias: str, runner: Runner, key: str) -> None:
    """Order `key` in `stock_reserved` at version 1, with a stray history row at seq 2
    so that the next transition's INSERT collides after its UPDATE matched."""
    runner.start(Order(id=key))
    runner.fire_by_key(key, "reserve")
    Transition.objects.using(alias).create(
        entity_type="order",
        entity_key=key,
        seq=2,
        event="stray",
        source="x",
        target="y",
        at=datetime.now(UTC),
    )


def test_a_collision_in_fire_by_key_rolls_the_whole_unit_back(alias: str, runner: Runner) -> None:
    _taken_seq(alias, runner, "collide-1")
    with pytest.raises(ConcurrentTransitionError) as caught:
        runner.fire_by_key("collide-1", "pay", amount="10", reference="r")
    assert (caught.value.key, caught.value.event, caught.value.expected_version) == (
        "collide-1",
        "pay",
        1,
    )
    assert runner.store.load("order", "collide-1").version == 1  # the UPDATE rolled back
    # and the connection is usable: inside a caller's block, the unit is its savepoint
    with transaction.atomic(using=alias):
        with pytest.raises(ConcurrentTransitionError):
            runner.fire_by_key("collide-1", "pay", amount="10", reference="r")
        assert Order.objects.using(alias).get(pk="collide-1").state_version == 1
    Transition.objects.using(alias).filter(event="stray").delete()
    assert runner.fire_by_key("collide-1", "pay", amount="10", reference="r").seq == 2
