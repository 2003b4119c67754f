"""The contract every `Store` honours, written once and run against each backend.

Subclass `StoreContract` in a `test_store_<backend>.py` module with a class whose name
starts with `Test`, and provide the fixtures below. The tests use only the `Store`
protocol (`create`, `load`, `apply`, `history`, `find_overdue`), the compiled machine
and a `Runner`; nothing here knows how a backend keeps its data.

Fixtures:
    store (required): a fresh, empty `Store` for each test, able to persist instances
        of the `machine` fixture.
    clock: the `ManualClock` the runner reads; defaults to a new `ManualClock()`.
    machine: the compiled machine under test; defaults to the order example
        (`models.order.OrderWorkflow.machine`).
    new_entity: a factory `new_entity(key) -> entity` returning a new, unstarted entity
        with that key. Keys are arbitrary strings of up to 36 characters ("o1",
        "early", UUIDs), so a SQL table needs a string key column. The entity has the
        attributes
        `models.order.Order` has (`total` 10, `quantity` 1, `in_stock` 10,
        `card_authorized` True, `paid_amount` 0) and the state attributes named by
        `machine.fields`; defaults to a plain `models.order.Order`. A backend that
        needs mapped rows overrides it. Keys that differ only in case ("ABC", "abc")
        name different entities.
    remove_entity (required): `remove_entity(key)` deletes the entity with that key the
        way the application would, behind statekit's back (its history stays where
        the backend keeps it), so that a later entity can reuse the key.

The tests that call `store.apply` directly stage the plan on the entity first
(`machine.stage`), exactly as `Runner.fire` does, and pass the entity along.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from models.order import OrderWorkflow
from statekit import (
    ConcurrentTransitionError,
    InstanceNotFoundError,
    InvalidArgumentError,
    InvalidArgumentTypeError,
    Listener,
    Machine,
    ManualClock,
    Plan,
    ProtectedStateError,
    Runner,
    Store,
    TransitionRecord,
)
from tests.support import new_order

NewEntity = Callable[[str], Any]
RemoveEntity = Callable[[str], None]

PAYMENT = {"amount": "10", "reference": "r-1"}
UUID_KEYS = ("8a0e3c1c-54b6-4d5f-9b7e-2f1d3c4b5a69", "0f9e8d7c-6b5a-4a39-8271-605f4e3d2c1b")


def stage_and_apply(
    machine: Machine,
    store: Store,
    entity: object,
    plan: Plan,
    after_commit: Callable[[TransitionRecord], None] | None = None,
) -> TransitionRecord:
    """Apply `plan` through `store` the way `Runner.fire` does: stage, write, or restore."""
    restore = machine.stage(entity, plan)
    try:
        return store.apply(plan, entity=entity, after_commit=after_commit)
    except BaseException:
        restore()
        raise


def start_all(runner: Runner, new_entity: NewEntity, *keys: str) -> list[Any]:
    """Start and store a new entity for each key."""
    entities = [new_entity(key) for key in keys]
    for entity in entities:
        runner.start(entity)
    return entities


class Worker(threading.Thread):
    """Runs `work` on a thread of its own; `finish` waits and re-raises its error."""

    def __init__(self, work: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self.work = work
        self.failed: BaseException | None = None

    def run(self) -> None:
        try:
            self.work()
        except BaseException as exc:
            self.failed = exc

    def finish(self) -> None:
        self.join(60)
        assert not self.is_alive(), "the thread did not finish"
        if self.failed is not None:
            raise self.failed


class StoreContract:
    """Behaviour shared by every store; see the module docstring for the fixtures."""

    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock()

    @pytest.fixture
    def machine(self) -> Machine:
        return OrderWorkflow.machine

    @pytest.fixture
    def new_entity(self) -> NewEntity:
        return new_order

    @pytest.fixture
    def runner(self, machine: Machine, store: Store, clock: ManualClock) -> Runner:
        return Runner(machine, store, clock=clock)

    @pytest.fixture
    def started(self, runner: Runner, new_entity: NewEntity) -> Any:
        """A stored order in its initial state, key "o1"."""
        entity = new_entity("o1")
        runner.start(entity)
        return entity

    # -- create and load -------------------------------------------------------------

    def test_is_a_store(self, store: Store) -> None:
        assert isinstance(store, Store)

    def test_create_then_load(
        self, store: Store, runner: Runner, new_entity: NewEntity, clock: ManualClock
    ) -> None:
        entity = new_entity("o1")
        snapshot = runner.start(entity)
        assert store.load("order", "o1") == snapshot
        assert (snapshot.state, snapshot.version, snapshot.key) == ("pending", 0, "o1")
        assert snapshot.entered_at == clock.now()
        assert snapshot.deadline_at == clock.now() + timedelta(days=1)
        assert snapshot.stuck_at is None
        assert snapshot.definition_version == 1
        assert store.history("order", "o1") == []

    def test_load_of_a_missing_instance(self, store: Store, started: Any) -> None:
        with pytest.raises(InstanceNotFoundError) as caught:
            store.load("order", "missing")
        assert (caught.value.entity_type, caught.value.key) == ("order", "missing")

    def test_duplicate_create_is_refused(
        self, store: Store, runner: Runner, machine: Machine, new_entity: NewEntity
    ) -> None:
        first = new_entity("o1")
        runner.start(first)
        runner.fire(first, "reserve")
        twin = new_entity("o1")
        snapshot = machine.start(twin)
        with pytest.raises(ConcurrentTransitionError) as caught:
            store.create(snapshot, entity=twin)
        assert (caught.value.expected_version, caught.value.actual_version) == (0, 1)
        assert store.load("order", "o1").version == 1
        assert store.load("order", "o1").state == "stock_reserved"

    def test_start_many_refuses_a_key_or_an_entity_twice_and_stores_none(
        self, store: Store, runner: Runner, new_entity: NewEntity
    ) -> None:
        first = new_entity("m1")
        before = getattr(first, "state", None)
        for batch in (
            [first, new_entity("m2"), new_entity("m1")],  # one key twice
            [first, new_entity("m2"), first],  # one object twice
        ):
            with pytest.raises(InvalidArgumentError, match="twice in one start_many") as caught:
                runner.start_many(batch)
            assert caught.value.argument == "entities"
            assert getattr(first, "state", None) == before  # left as it was
            for key in ("m1", "m2"):
                with pytest.raises(InstanceNotFoundError):
                    store.load("order", key)
        assert [s.key for s in runner.start_many(e for e in [first])] == ["m1"]

    def test_start_refuses_what_cannot_be_an_entity(
        self, runner: Runner, new_entity: NewEntity
    ) -> None:
        for value in ("o1", 7, None, {"id": "o1"}, ["o1"]):
            with pytest.raises(InvalidArgumentTypeError) as caught:
                runner.start(value)
            assert caught.value.argument == "entity"
        with pytest.raises(InvalidArgumentTypeError) as listed:
            runner.start_many(new_entity("o1"))  # type: ignore[arg-type]
        assert listed.value.argument == "entities"
        with pytest.raises(InvalidArgumentTypeError):
            runner.start_many("o1")

    # -- apply -----------------------------------------------------------------------

    def test_apply_writes_state_version_and_one_history_row(
        self, store: Store, runner: Runner, started: Any, clock: ManualClock
    ) -> None:
        at = clock.advance(minutes=5)
        record = runner.fire(started, "reserve", actor="ann", correlation_id="c-1")
        assert record == TransitionRecord(
            entity_type="order",
            key="o1",
            seq=1,
            event="reserve",
            source="pending",
            target="stock_reserved",
            at=at,
            actor="ann",
            correlation_id="c-1",
            definition_version=1,
        )
        loaded = store.load("order", "o1")
        assert (loaded.state, loaded.version, loaded.entered_at) == ("stock_reserved", 1, at)
        assert loaded.deadline_at == at + timedelta(minutes=30)
        assert store.history("order", "o1") == [record]

    def test_apply_compares_and_sets_the_version(
        self, store: Store, machine: Machine, started: Any, clock: ManualClock
    ) -> None:
        now = clock.now()
        cancel = machine.decide(started, "cancel", now=now)
        reserve = machine.decide(started, "reserve", now=now)
        first = stage_and_apply(machine, store, started, cancel)
        assert first.target == "cancelled"
        with pytest.raises(ConcurrentTransitionError) as caught:
            stage_and_apply(machine, store, started, reserve)
        err = caught.value
        assert (err.expected_version, err.actual_version) == (0, 1)
        assert (err.entity_type, err.key, err.event) == ("order", "o1", "reserve")
        assert store.load("order", "o1").state == "cancelled"
        assert store.history("order", "o1") == [first]

    def test_a_fire_from_a_state_changed_outside_a_transition_is_refused(
        self, store: Store, runner: Runner, started: Any, clock: ManualClock
    ) -> None:
        """`entity.state = "paid"` and then `ship` would skip reserve and pay: the
        store refuses it, names both states and writes nothing."""
        setattr(started, runner.machine.fields.state, "paid")
        with pytest.raises(ProtectedStateError) as caught:
            runner.fire(started, "ship", carrier="DHL", tracking_number="1Z")
        err = caught.value
        assert (err.entity_type, err.key, err.event) == ("order", "o1", "ship")
        assert (err.state, err.stored_state) == ("paid", "pending")
        assert "the entity has 'paid', the store 'pending'" in str(err)
        loaded = store.load("order", "o1")
        assert (loaded.state, loaded.version) == ("pending", 0)
        assert store.history("order", "o1") == []
        assert getattr(started, runner.machine.fields.state) == "paid"  # as it was given

    def test_a_duplicate_start_says_the_instance_is_already_stored(
        self, store: Store, runner: Runner, machine: Machine, new_entity: NewEntity
    ) -> None:
        runner.start(new_entity("o1"))
        twin = new_entity("o1")
        with pytest.raises(ConcurrentTransitionError) as caught:
            store.create(machine.start(twin), entity=twin)
        assert str(caught.value) == (
            "cannot start order o1: it is already stored (at version 0); another start won"
        )

    def test_apply_to_a_missing_instance(
        self, store: Store, machine: Machine, new_entity: NewEntity, clock: ManualClock
    ) -> None:
        ghost = new_entity("ghost")
        machine.start(ghost)
        plan = machine.decide(ghost, "cancel", now=clock.now())
        with pytest.raises(InstanceNotFoundError):
            stage_and_apply(machine, store, ghost, plan)
        assert store.history("order", "ghost") == []

    def test_a_stuck_plan_is_stored_as_stuck(
        self, store: Store, machine: Machine, started: Any, clock: ManualClock
    ) -> None:
        plan = machine.decide(started, "reserve", now=clock.now())
        plan.stuck_reason = "payment never arrived"
        stage_and_apply(machine, store, started, plan)
        loaded = store.load("order", "o1")
        assert (loaded.stuck_at, loaded.stuck_reason) == (clock.now(), "payment never arrived")

    # -- after commit ----------------------------------------------------------------

    def test_after_commit_runs_once_with_the_record(
        self, store: Store, machine: Machine, started: Any, clock: ManualClock
    ) -> None:
        calls: list[TransitionRecord] = []
        plan = machine.decide(started, "reserve", now=clock.now())
        record = stage_and_apply(machine, store, started, plan, after_commit=calls.append)
        assert calls == [record]

    def test_after_commit_does_not_run_when_nothing_was_written(
        self, store: Store, machine: Machine, started: Any, clock: ManualClock
    ) -> None:
        calls: list[TransitionRecord] = []
        now = clock.now()
        cancel = machine.decide(started, "cancel", now=now)
        reserve = machine.decide(started, "reserve", now=now)
        stage_and_apply(machine, store, started, cancel)
        with pytest.raises(ConcurrentTransitionError):
            stage_and_apply(machine, store, started, reserve, after_commit=calls.append)
        assert calls == []

    # -- history ---------------------------------------------------------------------

    def test_history_is_ordered_and_numbered_from_one(
        self, store: Store, runner: Runner, started: Any, clock: ManualClock
    ) -> None:
        records = [runner.fire(started, "reserve")]
        clock.advance(minutes=1)
        records.append(runner.fire(started, "pay", **PAYMENT))
        clock.advance(hours=3)
        records.append(runner.fire(started, "ship", carrier="DHL", tracking_number="1Z"))
        records.append(runner.fire(started, "deliver"))
        history = list(store.history("order", "o1"))
        assert history == records
        assert [r.seq for r in history] == [1, 2, 3, 4]
        assert [(r.source, r.target) for r in history] == [
            ("pending", "stock_reserved"),
            ("stock_reserved", "paid"),
            ("paid", "shipped"),
            ("shipped", "delivered"),
        ]
        assert history[1].payload == {"amount": "10", "method": "card", "reference": "r-1"}
        assert history[2].payload == {"carrier": "DHL", "tracking_number": "1Z"}
        assert history[0].payload is None
        assert store.load("order", "o1").version == 4

    def test_history_of_an_unknown_instance_is_empty(self, store: Store, started: Any) -> None:
        assert list(store.history("order", "nobody")) == []

    def test_history_is_per_instance(
        self, store: Store, runner: Runner, new_entity: NewEntity
    ) -> None:
        one, two = start_all(runner, new_entity, "o1", "o2")
        runner.fire(one, "reserve")
        runner.fire(two, "cancel")
        runner.fire(one, "cancel")
        assert [r.event for r in store.history("order", "o1")] == ["reserve", "cancel"]
        assert [r.event for r in store.history("order", "o2")] == ["cancel"]
        assert [r.seq for r in store.history("order", "o2")] == [1]

    # -- idempotency keys ------------------------------------------------------------

    def test_history_finds_a_record_by_idempotency_key(
        self, store: Store, runner: Runner, started: Any
    ) -> None:
        runner.fire(started, "reserve")
        record = runner.fire(started, "cancel", idempotency_key="cancel-1")
        assert record.idempotency_key == "cancel-1"
        assert list(store.history("order", "o1", idempotency_key="cancel-1")) == [record]
        assert list(store.history("order", "o1", idempotency_key="other")) == []
        assert list(store.history("order", "o2", idempotency_key="cancel-1")) == []

    def test_a_recorded_idempotency_key_cannot_be_applied_again(
        self, store: Store, runner: Runner, machine: Machine, started: Any, clock: ManualClock
    ) -> None:
        first = runner.fire(started, "reserve", idempotency_key="k-1")
        plan = machine.decide(started, "cancel", now=clock.now(), idempotency_key="k-1")
        with pytest.raises(ConcurrentTransitionError):
            stage_and_apply(machine, store, started, plan)
        assert store.load("order", "o1").version == 1
        assert list(store.history("order", "o1")) == [first]
        assert started.state == "stock_reserved"

    def test_idempotency_keys_are_scoped_to_the_instance(
        self, store: Store, runner: Runner, new_entity: NewEntity
    ) -> None:
        one, two = start_all(runner, new_entity, "o1", "o2")
        runner.fire(one, "reserve", idempotency_key="same")
        record = runner.fire(two, "reserve", idempotency_key="same")
        assert not record.replayed
        assert list(store.history("order", "o2", idempotency_key="same")) == [record]

    def test_runner_replays_a_repeated_idempotency_key(
        self, store: Store, runner: Runner, started: Any
    ) -> None:
        first = runner.fire(started, "reserve", idempotency_key="k-1")
        again = runner.fire(started, "reserve", idempotency_key="k-1")
        assert again == first
        assert again.replayed
        assert not first.replayed
        assert store.load("order", "o1").version == 1
        assert len(store.history("order", "o1")) == 1

    # -- units of work ---------------------------------------------------------------

    def test_transaction_yields_the_instance_and_commits_what_is_fired_in_it(
        self, store: Store, runner: Runner, started: Any
    ) -> None:
        with store.transaction("order", "o1") as entity:
            assert runner.machine.key_of(entity) == "o1"
            assert runner.machine.state_of(entity) == "pending"
            runner.fire(entity, "reserve")
            runner.fire(entity, "cancel")
        loaded = store.load("order", "o1")
        assert (loaded.state, loaded.version) == ("cancelled", 2)
        assert [r.seq for r in store.history("order", "o1")] == [1, 2]

    def test_transaction_that_raises_leaves_nothing_and_runs_no_callback(
        self, store: Store, machine: Machine, clock: ManualClock, started: Any
    ) -> None:
        seen: list[str] = []

        class Seen(Listener):
            def on_transition(self, record: TransitionRecord, entity: object) -> None:
                seen.append(record.event)

        runner = Runner(machine, store, clock=clock, listeners=[Seen()])
        seen_inside: list[list[str]] = []

        def unit_that_fails() -> None:
            with store.transaction("order", "o1") as entity:
                runner.fire(entity, "reserve", idempotency_key="k-1")
                seen_inside.append(list(seen))
                raise RuntimeError("caller's own work failed")

        with pytest.raises(RuntimeError, match="caller's own work failed"):
            unit_that_fails()
        assert seen_inside == [[]]  # no callback before the unit commits
        loaded = store.load("order", "o1")
        assert (loaded.state, loaded.version) == ("pending", 0)
        assert list(store.history("order", "o1")) == []
        assert list(store.history("order", "o1", idempotency_key="k-1")) == []
        assert seen == []
        with store.transaction("order", "o1") as entity:  # and the instance still works
            runner.fire(entity, "reserve", idempotency_key="k-1")
        assert seen == ["reserve"]
        assert store.load("order", "o1").version == 1

    def test_two_threads_with_a_unit_each_on_one_key_keep_their_units_apart(
        self, store: Store, machine: Machine, clock: ManualClock, started: Any
    ) -> None:
        """The first unit fires and rolls back; the second, opened on the same key from
        another thread meanwhile, waits (a database's lock) or loses no write, and
        commits its own transition with its own after-commit work."""
        seen: list[tuple[str, int]] = []

        class Seen(Listener):
            def on_transition(self, record: TransitionRecord, entity: object) -> None:
                seen.append((record.event, threading.get_ident()))

        runner = Runner(machine, store, clock=clock, listeners=[Seen()])
        first_fired = threading.Event()
        second: list[int] = []

        def second_unit() -> None:
            second.append(threading.get_ident())
            first_fired.wait(5)
            with store.transaction("order", "o1") as entity:
                runner.fire(entity, "reserve")

        worker = Worker(second_unit)

        def first_unit() -> None:
            with store.transaction("order", "o1") as entity:
                worker.start()
                runner.fire(entity, "reserve")
                first_fired.set()
                time.sleep(0.3)  # the second unit is opening, or waiting to
                raise RuntimeError("first unit fails")

        with pytest.raises(RuntimeError, match="first unit fails"):
            first_unit()
        worker.finish()
        assert [(r.seq, r.event) for r in store.history("order", "o1")] == [(1, "reserve")]
        assert store.load("order", "o1").version == 1
        assert seen == [("reserve", second[0])]

    def test_a_units_entity_fired_from_another_thread_does_not_join_the_unit(
        self, store: Store, runner: Runner, started: Any
    ) -> None:
        """A unit belongs to the thread running its block: another thread's fire on
        its entity is an independent writer, which the unit's rollback leaves alone."""
        fired = threading.Event()
        workers: list[Worker] = []

        def unit_that_fails() -> None:
            with store.transaction("order", "o1") as entity:

                def elsewhere() -> None:
                    fired.set()
                    runner.fire(entity, "reserve")

                workers.append(Worker(elsewhere))
                workers[0].start()
                fired.wait(5)
                time.sleep(0.3)  # the other thread writes, or waits for our lock
                raise RuntimeError("the unit fails")

        with pytest.raises(RuntimeError, match="the unit fails"):
            unit_that_fails()
        workers[0].finish()
        assert [r.event for r in store.history("order", "o1")] == ["reserve"]
        assert store.load("order", "o1").version == 1

    def test_fire_by_key(self, store: Store, runner: Runner, started: Any) -> None:
        record = runner.fire_by_key("o1", "reserve", actor="ann")
        assert (record.seq, record.target, record.actor) == (1, "stock_reserved", "ann")
        assert store.load("order", "o1").version == 1
        with pytest.raises(InstanceNotFoundError):
            runner.fire_by_key("missing", "reserve")

    # -- overdue instances -----------------------------------------------------------

    def test_find_overdue(
        self, store: Store, runner: Runner, new_entity: NewEntity, clock: ManualClock
    ) -> None:
        t0 = clock.now()
        early, late, reserved, shipped, stuck = (
            new_entity(k) for k in ("early", "late", "reserved", "shipped", "stuck")
        )
        runner.start(early)  # due at t0 + 1 day
        runner.start(stuck)
        clock.advance(hours=1)
        runner.start(late)  # due at t0 + 1 day 1 hour
        runner.start(reserved)
        runner.start(shipped)
        clock.advance(hours=1)
        runner.fire(reserved, "reserve")  # due at t0 + 2h30m
        for event, payload in (
            ("reserve", {}),
            ("pay", PAYMENT),
            ("ship", {"carrier": "x", "tracking_number": "1"}),
        ):
            runner.fire(shipped, event, **payload)  # no deadline once shipped
        plan = runner.machine.decide(stuck, "reserve", now=clock.now())
        plan.stuck_reason = "payment never arrived"  # due at t0 + 2h30m, but stuck
        stage_and_apply(runner.machine, store, stuck, plan)

        now = t0 + timedelta(days=1)
        due = store.find_overdue("order", now, 10)
        assert [s.key for s in due] == ["reserved", "early"]
        assert [s.deadline_at for s in due] == [
            t0 + timedelta(hours=2, minutes=30),
            t0 + timedelta(days=1),
        ]
        assert due[0] == store.load("order", "reserved")
        assert [s.key for s in store.find_overdue("order", now, 1)] == ["reserved"]
        assert [s.key for s in store.find_overdue("order", now - timedelta(seconds=1), 10)] == [
            "reserved"
        ]
        later = store.find_overdue("order", t0 + timedelta(days=30), 10)
        assert [s.key for s in later] == ["reserved", "early", "late"]
        assert list(store.find_overdue("order", t0, 10)) == []

    # -- keys ------------------------------------------------------------------------

    def test_uuid_like_string_keys(
        self, store: Store, runner: Runner, new_entity: NewEntity
    ) -> None:
        one, _ = start_all(runner, new_entity, *UUID_KEYS)
        runner.fire(one, "reserve")
        record = runner.fire(one, "cancel", idempotency_key="x")
        assert record.key == UUID_KEYS[0]
        assert store.load("order", UUID_KEYS[0]).state == "cancelled"
        assert store.load("order", UUID_KEYS[1]).state == "pending"
        assert [r.seq for r in store.history("order", UUID_KEYS[0])] == [1, 2]
        assert list(store.history("order", UUID_KEYS[0], idempotency_key="x")) == [record]
        assert list(store.history("order", UUID_KEYS[1])) == []

    # -- reused keys -----------------------------------------------------------------

    def _old_life(self, runner: Runner, new_entity: NewEntity) -> list[TransitionRecord]:
        """An instance "o1" that reserved (idempotency key k-1) and then cancelled (k-2)."""
        old = new_entity("o1")
        runner.start(old)
        return [
            runner.fire(old, "reserve", idempotency_key="k-1"),
            runner.fire(old, "cancel", idempotency_key="k-2"),
        ]

    def _new_life_works(self, store: Store, runner: Runner) -> None:
        """The second "o1" fires as a new instance: the old keys are not replayed."""
        assert list(store.history("order", "o1")) == []
        assert list(store.history("order", "o1", idempotency_key="k-1")) == []
        first = runner.fire_by_key("o1", "reserve", idempotency_key="k-1")
        assert not first.replayed
        assert (first.seq, first.source, first.target) == (1, "pending", "stock_reserved")
        with store.transaction("order", "o1") as entity:
            second = runner.fire(entity, "pay", idempotency_key="k-2", **PAYMENT)
        assert not second.replayed
        assert (second.seq, second.target) == (2, "paid")
        loaded = store.load("order", "o1")
        assert (loaded.state, loaded.version) == ("paid", 2)
        assert list(store.history("order", "o1")) == [first, second]
        assert list(store.history("order", "o1", idempotency_key="k-2")) == [second]

    def test_a_key_reused_after_the_entity_was_removed_starts_clean(
        self,
        store: Store,
        runner: Runner,
        new_entity: NewEntity,
        remove_entity: RemoveEntity,
    ) -> None:
        old_life = self._old_life(runner, new_entity)
        remove_entity("o1")
        assert list(store.history("order", "o1")) == old_life  # kept until the key is reused
        runner.start(new_entity("o1"))
        self._new_life_works(store, runner)
        retired: Any = store
        assert list(retired.retired_history("order", "o1")) == old_life

    def test_delete_removes_the_instance_and_its_history(
        self, store: Store, runner: Runner, new_entity: NewEntity
    ) -> None:
        self._old_life(runner, new_entity)
        started_o2 = start_all(runner, new_entity, "o2")[0]
        kept = runner.fire(started_o2, "reserve", idempotency_key="k-1")
        deleting: Any = store
        deleting.delete("order", "o1")
        with pytest.raises(InstanceNotFoundError):
            store.load("order", "o1")
        assert list(store.history("order", "o1")) == []
        assert list(deleting.retired_history("order", "o1")) == []
        with pytest.raises(InstanceNotFoundError) as caught:
            deleting.delete("order", "o1")
        assert (caught.value.entity_type, caught.value.key) == ("order", "o1")
        assert list(store.history("order", "o2")) == [kept]  # other instances untouched
        runner.start(new_entity("o1"))
        self._new_life_works(store, runner)

    def test_delete_keeping_history_retires_it(
        self, store: Store, runner: Runner, new_entity: NewEntity
    ) -> None:
        old_life = self._old_life(runner, new_entity)
        deleting: Any = store
        deleting.delete("order", "o1", keep_history=True)
        with pytest.raises(InstanceNotFoundError):
            store.load("order", "o1")
        assert list(store.history("order", "o1")) == []
        assert list(deleting.retired_history("order", "o1")) == old_life
        runner.start(new_entity("o1"))
        self._new_life_works(store, runner)
        assert list(deleting.retired_history("order", "o1")) == old_life

    def test_keys_that_differ_only_in_case_are_different_instances(
        self, store: Store, runner: Runner, new_entity: NewEntity
    ) -> None:
        upper, _ = start_all(runner, new_entity, "ABC", "abc")
        reserved = runner.fire(upper, "reserve", idempotency_key="k")
        cancelled = runner.fire_by_key("abc", "cancel", idempotency_key="k")
        assert not cancelled.replayed
        assert (cancelled.key, cancelled.seq, cancelled.target) == ("abc", 1, "cancelled")
        assert store.load("order", "ABC").state == "stock_reserved"
        assert store.load("order", "abc").state == "cancelled"
        assert list(store.history("order", "ABC")) == [reserved]
        assert list(store.history("order", "abc")) == [cancelled]
        assert list(store.history("order", "abc", idempotency_key="k")) == [cancelled]
        assert list(store.history("order", "aBc")) == []

    @pytest.mark.parametrize("key", ["a\x00b", "a\ud800b"])
    def test_a_key_no_database_holds_names_no_instance(
        self, store: Store, started: Any, key: str
    ) -> None:
        """A NUL (PostgreSQL refuses it in text) or a lone surrogate (no driver encodes
        it) is no stored key: every read answers as for a missing instance."""
        with pytest.raises(InstanceNotFoundError):
            store.load("order", key)
        assert list(store.history("order", key)) == []
        assert list(store.history("order", key, idempotency_key="k")) == []
        assert store.recorded("order", key, "k") is None
        with pytest.raises(InstanceNotFoundError):
            with store.transaction("order", key):
                pass
        deleting: Any = store
        with pytest.raises(InstanceNotFoundError):
            deleting.delete("order", key)
        assert store.load("order", "o1").state == "pending"
