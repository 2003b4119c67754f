"""Edges of the sweeper and the compensation rules that the database scenarios miss."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from statekit import (
    Backoff,
    DefinitionError,
    InvalidArgumentError,
    Listener,
    MachineSpec,
    ManualClock,
    MemoryStore,
    Runner,
    Snapshot,
    Sweeper,
    SweepResult,
    TransitionRecord,
)
from statekit.definition import StateSpec, TransitionSpec
from statekit.engine import Machine
from statekit.store.sqlalchemy import SQLAlchemyStore, sqlite_engine
from tests.sweep_support import FAILURES, JobBase, JobRow, JobWorkflow


@pytest.fixture
def store(tmp_path: object) -> Iterator[SQLAlchemyStore]:
    engine = sqlite_engine(f"{tmp_path}/edges.db")
    JobBase.metadata.create_all(engine)
    store = SQLAlchemyStore(engine, {JobWorkflow.machine: JobRow})
    store.create_tables()
    FAILURES.clear()
    yield store
    engine.dispose()


def _job(store: SQLAlchemyStore, runner: Runner, key: str, *events: str) -> None:
    with Session(store.engine, expire_on_commit=False) as session, session.begin():
        row = JobRow(id=key)
        session.add(row)
        runner.start(row)
    for event in events:
        runner.fire_by_key(key, event)


def test_sweeper_construction_is_checked(store: SQLAlchemyStore) -> None:
    runner = Runner(JobWorkflow.machine, store)
    with pytest.raises(ValueError, match="at least one Runner"):
        Sweeper([])
    with pytest.raises(ValueError, match="share one store"):
        Sweeper([runner, Runner(JobWorkflow.machine, MemoryStore())])
    with pytest.raises(ValueError, match="batch_size"):
        Sweeper([runner], batch_size=0)
    with pytest.raises(InvalidArgumentError, match=r"no machine 'order' \(it has: job\)") as no:
        Sweeper([runner]).resolve("order", "1", "done", note="x", actor="me")
    assert (no.value.argument, no.value.value) == ("entity_type", "order")


def test_backoff_grows_and_is_capped() -> None:
    backoff = Backoff(base=timedelta(seconds=10), cap=timedelta(seconds=60), jitter=0)
    assert [backoff.delay(n).total_seconds() for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 60, 60]
    jittered = Backoff(base=timedelta(seconds=10), jitter=0.5)
    assert all(10 <= jittered.delay(1).total_seconds() <= 15 for _ in range(50))
    assert SweepResult(claimed=2).as_dict()["claimed"] == 2


def test_run_forever_stops_between_passes(store: SQLAlchemyStore) -> None:
    clock = ManualClock()
    runner = Runner(JobWorkflow.machine, store, clock=clock)
    _job(store, runner, "a")
    clock.advance(minutes=11)
    sweeper = Sweeper([runner], clock=clock)
    stop = threading.Event()
    passes: list[SweepResult] = []

    def on_pass(result: SweepResult) -> None:
        passes.append(result)
        stop.set()

    sweeper.run_forever(0.01, stop, on_pass=on_pass)
    assert [p.timed_out for p in passes] == [1]


def test_a_deadline_in_a_state_without_timeout_marks_the_instance_stuck(
    store: SQLAlchemyStore,
) -> None:
    clock = ManualClock()
    runner = Runner(JobWorkflow.machine, store, clock=clock)
    _job(store, runner, "d", "advance", "continue_", "finish")
    with store.engine.begin() as conn:  # e.g. left over from an older definition
        conn.execute(update(JobRow).values(state_deadline_at=clock.now()))
    result = Sweeper([runner], clock=clock).run_once()
    assert result.marked_stuck == 1
    [stuck] = [r for r in store.history("job", "d") if r.event == "@stuck"]
    assert stuck.payload == {"note": "deadline passed in 'done', which declares no timeout"}


def test_failing_listeners_are_logged_not_raised(
    store: SQLAlchemyStore, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Listener):
        def on_stuck(self, record: TransitionRecord) -> None:
            raise RuntimeError("pager is down")

    clock = ManualClock()
    runner = Runner(JobWorkflow.machine, store, clock=clock)
    _job(store, runner, "l", "advance")
    clock.advance(minutes=11)
    with caplog.at_level(logging.ERROR, logger="statekit.sweeper"):
        result = Sweeper([runner], clock=clock, listeners=[Broken()]).run_once()
    assert result.marked_stuck == 1
    assert any("failed in on_stuck" in r.getMessage() for r in caplog.records)


def test_a_compensation_without_its_step_is_recorded_as_failed(store: SQLAlchemyStore) -> None:
    clock = ManualClock()
    runner = Runner(JobWorkflow.machine, store, clock=clock)
    _job(store, runner, "s", "advance")
    sweeper = Sweeper([runner], clock=clock, batch_size=1)
    sweeper.compensate("job", "s", reason="customer cancelled", actor="me")
    with store.engine.begin() as conn:  # lose the history row the step refers to
        conn.execute(store.tables.transitions.delete())
    sweeper.run_once()
    [task] = store.compensations("job", "s")
    assert task.status == "pending"
    assert "cannot compensate step 1 of job s: no such step" in (task.last_error or "")


def test_compensations_of_a_machine_the_sweeper_does_not_run_are_left(
    store: SQLAlchemyStore, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    runner = Runner(JobWorkflow.machine, store, clock=clock)
    _job(store, runner, "o", "advance")
    clock.advance(minutes=11)
    Sweeper([runner], clock=clock).compensate("job", "o", reason="test", actor="me")
    other = Sweeper([runner], clock=clock)
    other.runners.clear()  # a sweeper deployed without the job machine
    with caplog.at_level(logging.ERROR, logger="statekit.sweeper"):
        other.drain.run(SweepResult(), lambda: False)
    assert any("no runner for job" in r.getMessage() for r in caplog.records)


def test_compensated_state_must_be_a_declared_final_state() -> None:
    states = (StateSpec(name="a", initial=True), StateSpec(name="b", final=True))
    go = (TransitionSpec(event="go", sources=("a",), target="b"),)
    with pytest.raises(DefinitionError, match="'nowhere' is not a declared state"):
        Machine(MachineSpec(name="m", states=states, transitions=go, compensated_state="nowhere"))
    with pytest.raises(DefinitionError, match="'a' must be a final state"):
        Machine(MachineSpec(name="m", states=states, transitions=go, compensated_state="a"))


def test_system_plans_need_a_declared_target_and_unknown_steps_have_no_compensation() -> None:
    machine = JobWorkflow.machine
    snapshot = Snapshot("job", "k", "first", 1)
    with pytest.raises(ValueError, match="no state 'limbo'"):
        machine.system_plan(snapshot, "@resolve", "limbo", now=ManualClock().now(), actor="me")
    assert machine.compensation_of("first", "continue_", "second") == ("undo_second", 3)
    assert machine.compensation_of("second", "finish", "done") is None


def test_a_step_has_one_compensation_whether_scheduled_alone_or_in_a_batch() -> None:
    def cheap(entity: object, ctx: object) -> bool:
        return True

    def refund(entity: object, undo: object) -> None: ...

    def void(entity: object, undo: object) -> None: ...

    states = (StateSpec(name="a", initial=True), StateSpec(name="b", final=True))
    pay = (
        TransitionSpec(
            event="pay",
            sources=("a",),
            target="b",
            guards=("cheap",),
            compensation="refund",
            compensation_attempts=2,
        ),
        TransitionSpec(
            event="pay", sources=("a",), target="b", compensation="void", compensation_attempts=4
        ),
    )
    machine = Machine(
        MachineSpec(name="m", states=states, transitions=pay),
        handlers={"cheap": cheap, "refund": refund, "void": void},
    )
    # The history row cannot tell the branches apart: the first declared one counts.
    assert machine.compensation_of("a", "pay", "b") == ("refund", 2)
    assert machine.compensated_steps == {("refund", 2): (("a", "pay", "b"),)}
