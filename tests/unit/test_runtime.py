"""`Runner` over a `MemoryStore`: persistence, idempotency, stale objects, after-commit work."""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from models.order import Order, OrderWorkflow
from statekit import (
    ConcurrentTransitionError,
    Context,
    IdempotencyConflictError,
    Listener,
    Machine,
    ManualClock,
    MemoryStore,
    Plan,
    Runner,
    State,
    StoreError,
    TransitionNotAllowedError,
    TransitionRecord,
    Workflow,
    retry_on_conflict,
)
from statekit.store.base import AfterCommit
from statekit.store.protocol import Unit
from tests.support import Thing, attributes, new_order, one_step, state_attributes

PAYMENT = {"amount": "10", "reference": "r-1"}


class Recorder(Listener):
    """A listener that remembers what it was told."""

    def __init__(self) -> None:
        self.seen: list[tuple[TransitionRecord, object]] = []

    def on_transition(self, record: TransitionRecord, entity: object) -> None:
        self.seen.append((record, entity))


class Broken(Listener):
    """A listener that always fails."""

    def on_transition(self, record: TransitionRecord, entity: object) -> None:
        raise RuntimeError("listener down")


EFFECTS: list[tuple[str, str]] = []


def notify(order: Order, ctx: Context) -> None:
    """Effect: note the state the order is in when the effect runs."""
    EFFECTS.append((ctx.event, order.state or ""))


class Notifying(Workflow, name="order"):
    """The order machine's reserve/cancel part, with an after-commit effect."""

    pending = State(initial=True, timeout=timedelta(days=1))
    stock_reserved = State(timeout=timedelta(minutes=30))
    cancelled = State(final=True)

    reserve = pending.to(stock_reserved, action="take_stock", effect=notify)
    cancel = (pending | stock_reserved).to(cancelled, effect=notify)

    @staticmethod
    def take_stock(order: Order, ctx: Context) -> None:
        order.in_stock -= order.quantity


@pytest.fixture(autouse=True)
def _clear_effects() -> None:
    EFFECTS.clear()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def runner(store: MemoryStore, clock: ManualClock, recorder: Recorder) -> Runner:
    return Runner(Notifying.machine, store, clock=clock, listeners=[recorder])


@pytest.fixture
def order(runner: Runner) -> Order:
    """A started order, key "o1"."""
    entity = new_order()
    runner.start(entity)
    return entity


# -- start, fire, history --------------------------------------------------------------


def test_start_fire_and_history(
    runner: Runner, store: MemoryStore, clock: ManualClock, order: Order
) -> None:
    assert store.load("order", "o1").state == "pending"
    at = clock.advance(minutes=3)
    first = runner.fire(order, "reserve", actor="ann", correlation_id="c")
    second = runner.fire(order, "cancel")
    assert runner.history(order) == [first, second]
    assert [r.seq for r in runner.history(order)] == [1, 2]
    assert (first.at, first.actor, first.correlation_id) == (at, "ann", "c")
    assert (order.state, order.state_version, order.in_stock) == ("cancelled", 2, 9)
    assert store.load("order", "o1").version == order.state_version == len(runner.history(order))


def test_runner_reads_its_own_clock(store: MemoryStore) -> None:
    clock = ManualClock()
    clock.advance(days=3)
    runner = Runner(OrderWorkflow.machine, store, clock=clock)
    order = new_order()
    assert runner.start(order).entered_at == clock.now()
    assert Runner(OrderWorkflow.machine, store).clock is OrderWorkflow.machine.clock


def test_the_non_raising_pair_delegates_to_the_machine(runner: Runner, order: Order) -> None:
    assert runner.allowed_events(order) == ("reserve", "cancel")
    assert runner.can_fire(order, "reserve") is True
    assert runner.can_fire(order, "teleport") is False
    assert runner.can_fire(new_order("o2"), "reserve") is False


def test_can_fire_reads_the_runners_clock(store: MemoryStore) -> None:
    def in_the_future(entity: object, ctx: Context) -> bool | str:
        return ctx.now.year >= 2100 or f"it is only {ctx.now.year}"

    class Future(Workflow):
        a = State(initial=True)
        b = State(final=True)
        go = a.to(b, guard=in_the_future)

    clock = ManualClock(datetime(2100, 1, 1, tzinfo=UTC))
    runner = Runner(Future.machine, store, clock=clock)
    thing = Thing(key="f1")
    runner.start(thing)
    assert Future.machine.can_fire(thing, "go") is False  # the machine's wall clock
    assert runner.can_fire(thing, "go") is True
    assert runner.fire(thing, "go").target == "b"


def test_start_without_a_key_is_a_store_error(runner: Runner) -> None:
    order = new_order(key="")
    with pytest.raises(StoreError, match="without a key"):
        runner.start(order)


def test_starting_a_stored_instance_again_is_refused_and_changes_nothing(
    runner: Runner, store: MemoryStore, order: Order, clock: ManualClock
) -> None:
    runner.fire(order, "reserve")
    clock.advance(hours=1)
    before = attributes(order)
    with pytest.raises(ConcurrentTransitionError):
        runner.start(order)
    assert attributes(order) == before
    assert store.load("order", "o1").version == 1


def test_a_refused_event_writes_nothing(
    runner: Runner, store: MemoryStore, order: Order, recorder: Recorder
) -> None:
    runner.fire(order, "cancel")
    before = attributes(order)
    with pytest.raises(TransitionNotAllowedError):
        runner.fire(order, "reserve")
    assert attributes(order) == before
    assert len(store.history("order", "o1")) == 1
    assert len(recorder.seen) == 1


# -- idempotency -----------------------------------------------------------------------


def test_a_repeated_idempotency_key_replays_and_changes_nothing(
    runner: Runner, store: MemoryStore, order: Order, recorder: Recorder, clock: ManualClock
) -> None:
    first = runner.fire(order, "reserve", idempotency_key="k-1")
    clock.advance(minutes=1)
    before, snapshot = attributes(order), store.load("order", "o1")
    again = runner.fire(order, "reserve", idempotency_key="k-1")
    assert again == first
    assert again.replayed is True
    assert first.replayed is False
    assert attributes(order) == before
    assert store.load("order", "o1") == snapshot
    assert store.history("order", "o1") == [first]
    assert EFFECTS == [("reserve", "stock_reserved")]
    assert len(recorder.seen) == 1


def test_the_same_key_for_another_event_is_a_conflict(
    runner: Runner, store: MemoryStore, order: Order
) -> None:
    runner.fire(order, "reserve", idempotency_key="k-1")
    before = attributes(order)
    with pytest.raises(IdempotencyConflictError) as caught:
        runner.fire(order, "cancel", idempotency_key="k-1")
    err = caught.value
    assert (err.idempotency_key, err.recorded_event, err.event) == ("k-1", "reserve", "cancel")
    assert (err.key, err.state) == ("o1", "stock_reserved")
    assert str(err) == (
        "idempotency key 'k-1' on order o1 was already used for 'reserve'; "
        "cannot reuse it for 'cancel'"
    )
    assert attributes(order) == before
    assert len(store.history("order", "o1")) == 1


class RacingStore(MemoryStore):
    """A store in which another writer gets in first, once, just before `apply`. The
    rival runs on a thread of its own, as another writer would (a fire on the same
    instance from the thread that is applying it is refused as nested)."""

    def __init__(self) -> None:
        super().__init__()
        self.rival: Callable[[], object] | None = None

    def apply(
        self,
        plan: Plan,
        *,
        entity: object | None = None,
        unit: Unit | None = None,
        after_commit: AfterCommit | None = None,
    ) -> TransitionRecord:
        rival, self.rival = self.rival, None
        if rival is not None:
            in_thread(rival)
        return super().apply(plan, entity=entity, unit=unit, after_commit=after_commit)


def in_thread(work: Callable[[], object]) -> None:
    """Run `work` on another thread and wait for it; re-raise what it raised."""
    failed: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]


@pytest.mark.parametrize(
    ("rival_event", "rival_key", "outcome"),
    [
        ("reserve", "k-1", "replayed"),
        ("cancel", "k-1", IdempotencyConflictError),
        ("reserve", "other", ConcurrentTransitionError),
    ],
)
def test_losing_a_race_to_the_same_idempotency_key(
    clock: ManualClock, rival_event: str, rival_key: str, outcome: object
) -> None:
    store = RacingStore()
    runner = Runner(Notifying.machine, store, clock=clock)
    mine = new_order()
    runner.start(mine)
    theirs = copy.deepcopy(mine)
    store.rival = lambda: runner.fire(theirs, rival_event, idempotency_key=rival_key)
    before = attributes(mine)
    if outcome == "replayed":
        record = runner.fire(mine, "reserve", idempotency_key="k-1")
        assert record.replayed is True
        assert record == store.history("order", "o1")[0]
    else:
        assert isinstance(outcome, type)
        with pytest.raises(outcome):
            runner.fire(mine, "reserve", idempotency_key="k-1")
    assert attributes(mine) == before
    assert len(store.history("order", "o1")) == 1
    assert EFFECTS == [(rival_event, theirs.state)]


# -- stale objects ---------------------------------------------------------------------


def test_a_stale_object_loses_and_is_restored_unchanged(
    runner: Runner, store: MemoryStore, order: Order, recorder: Recorder
) -> None:
    other = copy.deepcopy(order)  # another object for the same stored instance
    runner.fire(other, "cancel")
    before = attributes(order)
    with pytest.raises(ConcurrentTransitionError) as caught:
        runner.fire(order, "reserve")
    err = caught.value
    assert (err.expected_version, err.actual_version) == (0, 1)
    assert (err.entity_type, err.key, err.event) == ("order", "o1", "reserve")
    assert "expected version 0 but the store has 1" in str(err)
    assert attributes(order) == before
    assert order.in_stock == 10  # the action's change was undone
    assert store.load("order", "o1").state == "cancelled"
    assert EFFECTS == [("cancel", "cancelled")]
    assert [r.event for r, _ in recorder.seen] == ["cancel"]


# -- after-commit work -----------------------------------------------------------------


class FailingStore(MemoryStore):
    """A store whose writes fail."""

    def apply(
        self,
        plan: Plan,
        *,
        entity: object | None = None,
        unit: Unit | None = None,
        after_commit: AfterCommit | None = None,
    ) -> TransitionRecord:
        raise StoreError("disk full")


class WritingUnit:
    """A unit whose entity's state attributes are set by its store's writer."""

    def __init__(self, entity: object, write: Callable[..., None]) -> None:
        self.entity = entity
        self.write = write

    def state_writer(self) -> Callable[..., None]:
        return self.write


class WritingStore(MemoryStore):
    """A store that sets state attributes itself (see `Unit.state_writer`), recording
    each call; `fail` makes its writes fail after that."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.fail = fail
        self.writes: list[tuple[Any, ...]] = []

    def unit_of(self, entity_type: str, key: str, entity: object) -> WritingUnit:
        names = OrderWorkflow.machine.fields.state_attributes()

        def write(target: object, *values: Any) -> None:
            self.writes.append(values[:2])
            for name, value in zip(names, values, strict=True):
                setattr(target, name, value)

        return WritingUnit(entity, write)

    def apply(
        self,
        plan: Plan,
        *,
        entity: object | None = None,
        unit: Unit | None = None,
        after_commit: AfterCommit | None = None,
    ) -> TransitionRecord:
        if self.fail:
            raise StoreError("disk full")
        return super().apply(plan, entity=entity, after_commit=after_commit)  # not in a unit


@pytest.mark.parametrize("fail", [False, True], ids=["applied", "failed"])
def test_a_store_may_set_the_state_attributes_itself(clock: ManualClock, fail: bool) -> None:
    machine, thing = one_step()
    store = WritingStore(fail=fail)
    runner = Runner(machine, store, clock=clock)
    store.create(machine.snapshot(thing), entity=thing)
    before = attributes(thing)
    if fail:
        with pytest.raises(StoreError, match="disk full"):
            runner.fire(thing, "go")
        assert store.writes == [("b", 1), ("a", 0)]  # moved, then put back the same way
        assert attributes(thing) == before
    else:
        runner.fire(thing, "go")
        assert store.writes == [("b", 1)]
        assert (thing.state, thing.state_version) == ("b", 1)


def test_effects_and_listeners_run_only_after_the_write(clock: ManualClock) -> None:
    store = FailingStore()
    recorder = Recorder()
    runner = Runner(Notifying.machine, store, clock=clock, listeners=[recorder])
    order = new_order()
    runner.start(order)
    before = attributes(order)
    with pytest.raises(StoreError, match="disk full"):
        runner.fire(order, "reserve")
    assert EFFECTS == []
    assert recorder.seen == []
    assert attributes(order) == before


def test_a_failed_write_removes_state_attributes_it_added(clock: ManualClock) -> None:
    store = FailingStore()
    runner = Runner(OrderWorkflow.machine, store, clock=clock)
    partial = SimpleNamespace(id="p1", state="pending", state_version=0)
    with pytest.raises(StoreError, match="disk full"):
        runner.fire(partial, "cancel")
    assert vars(partial) == {"id": "p1", "state": "pending", "state_version": 0}


def test_effects_see_the_committed_state(
    runner: Runner, store: MemoryStore, order: Order, recorder: Recorder
) -> None:
    versions: list[int] = []
    original = recorder.on_transition

    def check(record: TransitionRecord, entity: object) -> None:
        versions.append(store.load("order", "o1").version)
        original(record, entity)

    recorder.on_transition = check  # type: ignore[method-assign]
    record = runner.fire(order, "reserve")
    assert EFFECTS == [("reserve", "stock_reserved")]
    assert versions == [1]
    assert recorder.seen == [(record, order)]


def test_listener_failures_are_logged_and_do_not_stop_others(
    store: MemoryStore, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    broken = Broken()
    runner = Runner(Notifying.machine, store, clock=clock, listeners=[broken, recorder])
    order = new_order()
    runner.start(order)
    with caplog.at_level(logging.ERROR, logger="statekit"):
        record = runner.fire(order, "reserve")
    assert recorder.seen == [(record, order)]
    assert order.state == "stock_reserved"
    [log] = caplog.records
    assert log.getMessage() == f"listener {broken!r} failed on order o1 (reserve)"
    assert log.event == "reserve"  # type: ignore[attr-defined]
    assert log.exc_info is not None
    assert str(log.exc_info[1]) == "listener down"


def test_the_base_listener_does_nothing(runner: Runner, order: Order) -> None:
    record = runner.fire(order, "reserve")
    before = state_attributes(order)
    assert Listener().on_transition(record, order) is None
    assert state_attributes(order) == before


# -- fire_by_key and retries -----------------------------------------------------------


def test_fire_by_key_reloads_and_retries_a_lost_race(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = RacingStore()
    runner = Runner(OrderWorkflow.machine, store, clock=clock)
    lost, won = new_order("o1"), new_order("o2")
    runner.start(lost)
    runner.start(won)
    lost_rival, won_rival = copy.deepcopy(lost), copy.deepcopy(won)

    store.rival = lambda: runner.fire(lost_rival, "reserve")
    with pytest.raises(ConcurrentTransitionError):
        runner.fire_by_key("o1", "cancel")
    assert store.load("order", "o1").state == "stock_reserved"

    store.rival = lambda: runner.fire(won_rival, "reserve")
    with caplog.at_level(logging.INFO, logger="statekit"):
        record = runner.fire_by_key("o2", "cancel", retries=1)
    assert (record.seq, record.source, record.target) == (2, "stock_reserved", "cancelled")
    assert [r.getMessage() for r in caplog.records] == [
        "retrying after a lost race on order o2 (attempt 2 of 2)"
    ]
    assert won.state == "pending"  # the stale object is not the one reloaded


def test_retry_on_conflict() -> None:
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(len(attempts) + 1)
        if len(attempts) < 3:
            raise ConcurrentTransitionError(
                entity_type="order", key="o1", event="pay", expected_version=1, actual_version=2
            )
        return "done"

    assert retry_on_conflict(flaky, attempts=3) == "done"
    assert attempts == [1, 2, 3]
    attempts.clear()
    with pytest.raises(ConcurrentTransitionError):
        retry_on_conflict(flaky, attempts=2)
    assert attempts == [1, 2]
    with pytest.raises(ValueError, match="at least 1"):
        retry_on_conflict(flaky, attempts=0)


def test_a_plain_machine_runner_with_real_order_model(store: MemoryStore) -> None:
    machine: Machine = OrderWorkflow.machine
    runner = Runner(machine, store, clock=ManualClock())
    order = new_order()
    runner.start(order)
    runner.fire(order, "reserve")
    record = runner.fire(order, "pay", **PAYMENT)
    assert record.payload == {"amount": "10", "method": "card", "reference": "r-1"}
    assert order.paid_amount == 10
    payload: dict[str, Any] = {"carrier": "DHL", "tracking_number": "1Z"}
    assert runner.fire(order, "ship", **payload).target == "shipped"
