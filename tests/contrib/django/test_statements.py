"""DjangoStore's direct statements (`store.statements`): the row it loads is the
row the ORM loads, value for value and type for type, on every backend; models the
statements cannot serve exactly go through the QuerySet API."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

import pytest
from django.db import connections, models, transaction
from django.test.utils import CaptureQueriesContext, isolate_apps

from models.order import OrderWorkflow
from statekit import ConcurrentTransitionError, ProtectedStateError, Runner
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
    _stray(alias, key, 2)


def _stray(alias: str, key: str, seq: int, idempotency_key: str | None = None) -> None:
    """A history row of order `key` that no transition wrote."""
    Transition.objects.using(alias).create(
        entity_type="order",
        entity_key=key,
        seq=seq,
        event="stray",
        source="x",
        target="y",
        at=datetime.now(UTC),
        idempotency_key=idempotency_key,
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


_CONTROL = {"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"}


def _sent(alias: str, work: Callable[[], object]) -> list[str]:
    """The statements `work` sends on `alias` but transaction control, each cut to
    its first three words."""
    with CaptureQueriesContext(connections[alias]) as captured:
        work()
    sent = [" ".join(query["sql"].split()[:3]) for query in captured.captured_queries]
    return [sql for sql in sent if sql.split()[0] not in _CONTROL]


def _history(alias: str, key: str) -> list[tuple[int, str, str | None]]:
    rows = Transition.objects.using(alias).filter(entity_type="order", entity_key=key)
    return list(rows.order_by("seq").values_list("seq", "event", "idempotency_key"))


def test_a_fire_writes_in_one_statement_on_postgresql(alias: str, runner: Runner) -> None:
    """On PostgreSQL the compare-and-set and the history INSERT are one statement (a
    data-modifying CTE whose INSERT takes a row only if the UPDATE matched);
    elsewhere they are two. The locked load comes first on every database."""
    quote = connections[alias].ops.quote_name
    table, history = quote(Order._meta.db_table), quote(Transition._meta.db_table)
    runner.start(Order(id="one-1"))
    sent = _sent(alias, lambda: runner.fire_by_key("one-1", "reserve"))
    assert sent[0].startswith(f"SELECT {table}.")  # the locked load
    if connections[alias].vendor == "postgresql":
        assert sent[1:] == ["WITH statekit_moved AS"]
    else:
        assert sent[1:] == [f"UPDATE {table} SET", f"INSERT INTO {history}"]
    assert _history(alias, "one-1")[-1] == (1, "reserve", None)
    stored = Order.objects.using(alias).get(pk="one-1")
    assert (stored.state, stored.state_version) == ("stock_reserved", 1)


def test_a_lost_race_writes_nothing(alias: str, runner: Runner) -> None:
    """The row moved on after the object was read: the one statement matches no row,
    inserts no history row, and the error names the version read back."""
    runner.start(Order(id="race-1"))
    stale = Order.objects.using(alias).get(pk="race-1")
    runner.fire_by_key("race-1", "reserve")
    before = _history(alias, "race-1")
    with pytest.raises(ConcurrentTransitionError) as caught:
        runner.fire(stale, "cancel")
    err = caught.value
    assert (err.key, err.event, err.expected_version, err.actual_version) == (
        "race-1",
        "cancel",
        0,
        1,
    )
    assert _history(alias, "race-1") == before
    assert Order.objects.using(alias).get(pk="race-1").state == "stock_reserved"


def test_a_state_changed_outside_a_transition_writes_nothing(alias: str, runner: Runner) -> None:
    runner.start(Order(id="outside-1"))
    order = Order.objects.using(alias).get(pk="outside-1")
    Order.objects.using(alias).filter(pk="outside-1").update(state="paid")  # same version
    with pytest.raises(ProtectedStateError) as caught:
        runner.fire(order, "reserve")
    assert (caught.value.state, caught.value.stored_state) == ("pending", "paid")
    stored = Order.objects.using(alias).get(pk="outside-1")
    assert (stored.state, stored.state_version) == ("paid", 0)
    assert _history(alias, "outside-1") == []


def test_an_idempotency_key_collision_writes_nothing(alias: str, runner: Runner) -> None:
    """A history row already holds the idempotency key: the INSERT fails, and with it
    the UPDATE of the same statement (or the same block)."""
    runner.start(Order(id="idem-1"))
    _stray(alias, "idem-1", 7, "k-1")
    order = Order.objects.using(alias).get(pk="idem-1")
    plan = OrderWorkflow.machine.decide(
        order, "reserve", now=datetime.now(UTC), idempotency_key="k-1"
    )
    OrderWorkflow.machine.stage(order, plan)
    with pytest.raises(ConcurrentTransitionError) as caught:
        runner.store.apply(plan, entity=order)
    assert (caught.value.key, caught.value.event, caught.value.expected_version) == (
        "idem-1",
        "reserve",
        0,
    )
    stored = Order.objects.using(alias).get(pk="idem-1")
    assert (stored.state, stored.state_version) == ("pending", 0)
    assert _history(alias, "idem-1") == [(7, "stray", "k-1")]
