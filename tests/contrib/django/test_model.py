"""`StateModel`'s protected state and the `pre_transition`/`post_transition` signals."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import transaction

from models.order import OrderWorkflow
from statekit import (
    ConcurrentTransitionError,
    Runner,
    StatekitError,
    StoreError,
    Sweeper,
    TransitionRecord,
)
from statekit.contrib.django.mixin import STATE_COLUMNS, ProtectedStateError
from statekit.contrib.django.signals import post_transition, pre_transition
from statekit.contrib.django.store import DjangoStore
from tests.contrib.django.conftest import empty_tables
from tests.contrib.django.testapp.models import Order


@pytest.fixture
def runner(alias: str) -> Iterator[Runner]:
    yield Runner(OrderWorkflow.machine, DjangoStore({OrderWorkflow.machine: Order}, using=alias))
    empty_tables(alias)


@pytest.fixture
def order(runner: Runner) -> Order:
    order = Order(id="o1")
    runner.start(order)
    return order


# -- the protected state ------------------------------------------------------------


def test_saving_a_state_changed_outside_a_transition_is_refused(alias: str, order: Order) -> None:
    loaded = Order.objects.using(alias).get(pk="o1")
    loaded.state = "shipped"
    loaded.sku = "SKU-2"
    with pytest.raises(ProtectedStateError) as caught:
        loaded.save(using=alias)
    assert isinstance(caught.value, StatekitError)
    assert str(caught.value) == (
        "Order o1: state changed outside a transition (state 'pending' -> 'shipped'); "
        "the state is written only by firing an event through a statekit Runner"
    )
    stored = Order.objects.using(alias).get(pk="o1")
    assert (stored.state, stored.sku) == ("pending", "SKU-1")


def test_a_new_object_saved_over_an_existing_row_cannot_write_its_state(
    alias: str, runner: Runner, order: Order
) -> None:
    """`Order(pk=existing).save()` is an UPDATE in Django: it wrote the state columns
    with no transition and no history. Its state is refused as a changed one; with the
    row's own state, only the other fields are saved."""
    runner.fire(order, "reserve")
    stranger = Order(id="o1", state="shipped", state_version=1, sku="SKU-2")
    with pytest.raises(
        ProtectedStateError, match=r"outside a transition \(state 'stock_reserved' -> 'shipped'\)"
    ):
        stranger.save(using=alias)
    stored = Order.objects.using(alias).get(pk="o1")
    assert (stored.state, stored.state_version, stored.sku) == ("stock_reserved", 1, "SKU-1")
    assert [r.event for r in runner.history(order)] == ["reserve"]

    same = Order(id="o1", sku="SKU-3", **{n: getattr(stored, n) for n in STATE_COLUMNS})
    same.save(using=alias)
    stored = Order.objects.using(alias).get(pk="o1")
    assert (stored.state, stored.state_version, stored.sku) == ("stock_reserved", 1, "SKU-3")
    Order(id="o2", sku="SKU-4").save(using=alias)  # a new row is inserted as before
    assert Order.objects.using(alias).get(pk="o2").sku == "SKU-4"


def test_save_never_writes_the_state_columns_back(alias: str, runner: Runner, order: Order) -> None:
    """A stale object saved after a transition elsewhere keeps the newer state."""
    stale = Order.objects.using(alias).get(pk="o1")
    runner.fire(order, "reserve")
    stale.sku = "SKU-2"
    stale.save(using=alias)
    stored = Order.objects.using(alias).get(pk="o1")
    assert (stored.state, stored.state_version, stored.sku) == ("stock_reserved", 1, "SKU-2")


def test_an_object_saves_normally_after_its_own_transitions(
    alias: str, runner: Runner, order: Order
) -> None:
    runner.fire(order, "reserve")
    order.quantity = 3
    order.save(using=alias)
    stored = Order.objects.using(alias).get(pk="o1")
    assert (stored.state, stored.quantity) == ("stock_reserved", 3)
    stored.refresh_from_db(using=alias)
    stored.save(using=alias)  # refreshed: nothing changed outside a transition


# -- signals ------------------------------------------------------------------------


class Heard:
    """A receiver that records what it heard, and whether a transaction was open."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.calls: list[tuple[type, Any, TransitionRecord, bool]] = []

    def __call__(self, sender: type, instance: Any, record: TransitionRecord, **kw: Any) -> None:
        in_block = transaction.get_connection(self.alias).in_atomic_block
        self.calls.append((sender, instance, record, in_block))


@pytest.fixture
def heard(alias: str) -> Iterator[tuple[Heard, Heard]]:
    before, after = Heard(alias), Heard(alias)
    pre_transition.connect(before)
    post_transition.connect(after)
    yield before, after
    pre_transition.disconnect(before)
    post_transition.disconnect(after)


def test_pre_runs_in_the_transaction_and_post_after_the_commit(
    alias: str, runner: Runner, order: Order, heard: tuple[Heard, Heard]
) -> None:
    before, after = heard
    with transaction.atomic(using=alias):
        record = runner.fire(order, "reserve", actor="ann")
        assert [(c[0], c[1], c[2], c[3]) for c in before.calls] == [(Order, order, record, True)]
        assert after.calls == []  # not before the caller's block commits
    assert [(c[0], c[1], c[2], c[3]) for c in after.calls] == [(Order, order, record, False)]
    assert record.actor == "ann"


def test_no_post_transition_for_a_rolled_back_transition(
    alias: str, runner: Runner, order: Order, heard: tuple[Heard, Heard]
) -> None:
    _, after = heard

    def callers_block_fails() -> None:
        with transaction.atomic(using=alias):
            runner.fire(order, "reserve")
            raise RuntimeError("caller fails")

    with pytest.raises(RuntimeError, match="caller fails"):
        callers_block_fails()
    assert after.calls == []
    assert Order.objects.using(alias).get(pk="o1").state_version == 0


def test_an_object_fired_on_in_a_rolled_back_block_must_be_reloaded(
    alias: str, runner: Runner, order: Order
) -> None:
    """Django does not put objects back when a block rolls back: the object keeps the
    state it was given, ahead of the row. A fire from it is refused and says so;
    `refresh_from_db` makes it right."""
    with pytest.raises(RuntimeError), transaction.atomic(using=alias):  # noqa: PT012
        runner.fire(order, "reserve")
        raise RuntimeError("caller fails")
    assert (order.state, order.state_version) == ("stock_reserved", 1)
    with pytest.raises(ConcurrentTransitionError, match="ahead of the store") as caught:
        runner.fire(order, "pay", amount="10", reference="r-1")
    assert (caught.value.expected_version, caught.value.actual_version) == (1, 0)
    order.refresh_from_db(using=alias)
    assert runner.fire(order, "reserve").seq == 1


def test_a_pre_transition_receiver_that_raises_stops_the_transition(
    alias: str, runner: Runner, order: Order
) -> None:
    def refuse(**kwargs: Any) -> None:
        raise RuntimeError("not today")

    pre_transition.connect(refuse)
    try:
        with pytest.raises(RuntimeError, match="not today"):
            runner.fire(order, "reserve")
    finally:
        pre_transition.disconnect(refuse)
    assert order.state == "pending"
    assert Order.objects.using(alias).get(pk="o1").state_version == 0
    assert list(runner.store.history("order", "o1")) == []


# -- what actions change ------------------------------------------------------------


def test_the_fields_actions_change_are_written_with_the_transition(
    alias: str, runner: Runner, order: Order
) -> None:
    """`reserve` takes stock and `pay` records the payment: a fire outside any unit
    writes those fields in its compare-and-set UPDATE, as a Session's flush would."""
    runner.fire(order, "reserve")
    runner.fire(order, "pay", amount="10", reference="r-1")
    stored = Order.objects.using(alias).get(pk="o1")
    assert (stored.state, stored.in_stock, stored.paid_amount) == ("paid", 9, 10)


def test_fields_an_action_changed_roll_back_with_a_lost_race(
    alias: str, runner: Runner, order: Order
) -> None:
    stale = Order.objects.using(alias).get(pk="o1")
    runner.fire(order, "cancel")
    with pytest.raises(ConcurrentTransitionError):
        runner.fire(stale, "reserve")
    assert stale.in_stock == 10  # the Runner restored the object
    stored = Order.objects.using(alias).get(pk="o1")
    assert (stored.state, stored.in_stock) == ("cancelled", 10)


def test_a_field_changed_by_the_caller_before_a_fire_is_written_with_it(
    alias: str, runner: Runner, order: Order
) -> None:
    order.sku = "SKU-9"
    runner.fire(order, "reserve")
    stored = Order.objects.using(alias).get(pk="o1")
    assert (stored.state, stored.sku) == ("stock_reserved", "SKU-9")


# -- the store's bindings -----------------------------------------------------------


def test_the_default_store_serves_every_installed_model_that_names_a_machine(alias: str) -> None:
    store = DjangoStore(using=alias)
    assert sorted(store.machines()) == ["job", "order"]
    with pytest.raises(StoreError) as caught:
        store.load("invoice", "1")
    assert str(caught.value) == "unknown machine 'invoice'; known: job, order"


def test_an_instance_without_a_model_row_is_refused(alias: str) -> None:
    from tests.support import new_order

    store = DjangoStore({OrderWorkflow.machine: Order}, using=alias)
    plain = new_order("p1")
    with pytest.raises(StoreError) as caught:
        Runner(OrderWorkflow.machine, store).start(plain)
    assert str(caught.value) == (
        "DjangoStore stores order p1 as a model row: pass the model instance "
        "(got models.order.Order)"
    )
    assert plain.state is None


def test_the_sweepers_stuck_marks_send_the_signals_too(
    alias: str, runner: Runner, order: Order, heard: tuple[Heard, Heard]
) -> None:
    runner.fire(order, "reserve", actor="ann")
    past = datetime.now(UTC) - timedelta(hours=1)  # stock_reserved's 30 minutes are up
    Order.objects.using(alias).filter(pk="o1").update(state_deadline_at=past)
    before, after = heard
    before.calls.clear()
    after.calls.clear()
    assert Sweeper([runner]).run_once().marked_stuck == 1  # then compensated, same pass
    assert Order.objects.using(alias).get(pk="o1").state == "cancelled"
    for calls, in_block in ((before.calls, True), (after.calls, False)):
        assert [(c[0], c[2].event, c[2].seq, c[3]) for c in calls] == [
            (Order, "@stuck", 2, in_block),
            (Order, "@compensated", 3, in_block),
        ]
