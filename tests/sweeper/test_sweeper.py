"""The sweeper on SQLite, PostgreSQL and MariaDB, with a controllable clock."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from statekit import (
    Backoff,
    CompensationTask,
    ConcurrentTransitionError,
    InvalidArgumentError,
    Listener,
    Runner,
    StatekitError,
    Sweeper,
    SweeperError,
    TransitionRecord,
)
from statekit.store.sqlalchemy import SQLAlchemyStore
from statekit.store.sqlalchemy.sweep import supports_skip_locked
from tests.sql_support import engine_for
from tests.sweep_env import JobEnv as Env
from tests.sweep_env import clear_job_tables, job_database, job_env
from tests.sweep_support import FAILURES, JobRow, JobWorkflow


class Hooks(Listener):
    def __init__(self) -> None:
        self.stuck: list[str] = []
        self.failed: list[tuple[str, int]] = []
        self.dead: list[str] = []

    def on_stuck(self, record: TransitionRecord) -> None:
        self.stuck.append(record.key)

    def on_compensation_failed(self, task: Any, error: BaseException) -> None:
        self.failed.append((task.action, task.attempts))

    def on_dead_lettered(self, task: Any, error: BaseException) -> None:
        self.dead.append(task.action)


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    with job_database(database_url) as engine:
        yield engine


@pytest.fixture
def env(engine: Engine) -> Iterator[Env]:
    backoff = Backoff(base=timedelta(seconds=30), cap=timedelta(minutes=10), jitter=0)
    env = job_env(engine, backoff, Hooks())
    yield env
    clear_job_tables(engine, env.store)


def test_deadlines_follow_the_state_and_timeout_events_fire_once(env: Env) -> None:
    env.job("a")
    start = env.clock.now()
    assert env.row("a").state_deadline_at == start + timedelta(minutes=10)
    env.clock.advance(minutes=5)
    env.jobs.fire_by_key("a", "advance")  # entering `first` replaces the deadline
    assert env.row("a").state_deadline_at == start + timedelta(minutes=15)
    env.jobs.fire_by_key("a", "continue_")
    env.jobs.fire_by_key("a", "finish")  # `done` has no timeout: deadline cleared
    assert env.row("a").state_deadline_at is None

    env.job("b")
    env.clock.advance(minutes=9)
    assert env.sweeper.run_once().claimed == 0  # b is not due yet
    env.clock.advance(minutes=1)
    result = env.sweeper.run_once()
    assert (result.claimed, result.timed_out, result.marked_stuck) == (1, 1, 0)
    [expired] = [r for r in env.store.history("job", "b") if r.event == "expire"]
    assert (expired.target, expired.actor) == ("expired", "statekit-sweeper")
    assert env.sweeper.run_once().claimed == 0  # fired once, never again
    assert env.events("b") == ["expire"]


def test_a_refused_timeout_event_marks_the_instance_stuck(env: Env) -> None:
    env.job("frozen", frozen=True)
    env.clock.advance(minutes=11)
    result = env.sweeper.run_once()
    assert (result.timed_out, result.marked_stuck) == (0, 1)
    row = env.row("frozen")
    assert row.state == "new"
    assert row.stuck_at == env.clock.now()
    assert row.state_deadline_at is None
    assert "timeout event 'expire' refused" in (row.stuck_reason or "")
    assert "the job is frozen" in (row.stuck_reason or "")
    assert env.hooks.stuck == ["frozen"]
    assert env.events("frozen") == ["@stuck"]
    assert env.sweeper.run_once().claimed == 0


def test_stuck_instances_are_compensated_newest_first_then_finish(env: Env) -> None:
    env.job("j1", "advance", "continue_")
    env.clock.advance(minutes=11)
    result = env.sweeper.run_once()
    assert (result.marked_stuck, result.compensations_run, result.compensated) == (1, 2, 1)
    row = env.row("j1")
    assert row.undone == "21"  # second step undone first
    assert row.state == "undone"
    assert row.stuck_at is None
    assert env.events("j1") == ["advance", "continue_", "@stuck", "@compensated"]
    tasks = env.store.compensations("job", "j1")
    assert [(t.step_seq, t.action, t.status, t.attempts) for t in tasks] == [
        (2, "undo_second", "done", 1),
        (1, "undo_first", "done", 1),
    ]
    assert env.calls() == {("j1", "undo_second"): 1, ("j1", "undo_first"): 1}


def test_scheduling_twice_is_harmless(env: Env) -> None:
    env.job("twice", "advance")
    tasks = [
        CompensationTask("job", "twice", 1, "undo_first", "advance", 5),
        CompensationTask("job", "twice", 1, "undo_first", "advance", 5),
    ]
    with env.store.session_unit("job", "twice") as row:
        env.store.add_compensations(row, tasks, env.clock.now())
    with env.store.session_unit("job", "twice") as row:
        env.store.add_compensations(row, tasks[:1], env.clock.now())
    assert len(env.store.compensations("job", "twice")) == 1


def test_backoff_schedule_and_attempts_recorded(env: Env) -> None:
    env.job("flaky", "advance")
    FAILURES["flaky", "undo_first"] = 3
    env.clock.advance(minutes=11)
    first = env.sweeper.run_once()
    assert (first.marked_stuck, first.compensations_failed) == (1, 1)
    failed_at = env.clock.now()
    [task] = env.store.compensations("job", "flaky")
    assert (task.status, task.attempts) == ("pending", 1)
    assert task.next_attempt_at == failed_at + timedelta(seconds=30)

    env.clock.advance(seconds=29)
    assert env.sweeper.run_once().compensations_failed == 0  # not due yet
    for delay in (1, 60, 120):  # due 30s, then 60s, then 120s after each failure
        env.clock.advance(seconds=delay)
        env.sweeper.run_once()
    [task] = env.store.compensations("job", "flaky")
    assert (task.status, task.attempts) == ("done", 4)
    attempts = env.store.attempts(task.id or 0)
    assert [(a.attempt, a.succeeded) for a in attempts] == [
        (1, False),
        (2, False),
        (3, False),
        (4, True),
    ]
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(attempts)]
    assert gaps == [timedelta(seconds=30), timedelta(seconds=60), timedelta(seconds=120)]
    assert all(
        "undo_first of flaky is down" in (a.error or "") for a in attempts if not a.succeeded
    )
    assert env.hooks.failed == [("undo_first", 1), ("undo_first", 2), ("undo_first", 3)]
    assert env.row("flaky").state == "undone"
    # A failed attempt rolls back its own writes: only the successful call is committed.
    assert env.calls() == {("flaky", "undo_first"): 1}


def test_dead_letter_then_a_person_retries(env: Env) -> None:
    env.job("dl", "advance", "continue_")
    FAILURES["dl", "undo_second"] = 3  # undo_second allows 3 attempts
    env.clock.advance(minutes=11)
    for _ in range(4):
        env.sweeper.run_once()
        env.clock.advance(minutes=10)
    second, first = env.store.compensations("job", "dl")
    assert (second.action, second.status, second.attempts) == ("undo_second", "dead", 3)
    assert (first.status, first.attempts) == ("pending", 0)  # waits behind the newer step
    assert env.hooks.dead == ["undo_second"]
    stuck = list(env.sweeper.stuck())
    assert [(s.key, [t.status for t in tasks]) for s, tasks in stuck] == [
        ("dl", ["dead", "pending"])
    ]
    assert env.row("dl").state == "second"

    record = env.sweeper.retry("job", "dl", actor="ops-ann")
    assert (record.event, record.actor) == ("@retry", "ops-ann")
    assert record.payload == {"note": "retrying 1 dead-lettered compensation(s)"}
    assert env.row("dl").stuck_at is not None  # still stuck until compensated
    result = env.sweeper.run_once()
    assert (result.compensations_run, result.compensated) == (2, 1)
    assert env.row("dl").state == "undone"
    with pytest.raises(SweeperError, match="no dead-lettered compensations") as refused:
        env.sweeper.retry("job", "dl", actor="ops-ann")
    assert (refused.value.entity_type, refused.value.key, refused.value.lever) == (
        "job",
        "dl",
        "retry",
    )
    assert refused.value.state == "undone"


def test_a_person_resolves_a_stuck_instance(env: Env) -> None:
    env.job("r", "advance")
    FAILURES["r", "undo_first"] = 99
    env.clock.advance(minutes=11)
    env.sweeper.run_once()
    record = env.sweeper.resolve("job", "r", "done", note="shipped by hand", actor="ops-bo")
    assert (record.event, record.source, record.target, record.actor) == (
        "@resolve",
        "first",
        "done",
        "ops-bo",
    )
    assert record.payload == {"note": "shipped by hand"}
    row = env.row("r")
    assert (row.state, row.stuck_at, row.stuck_reason) == ("done", None, None)
    [task] = env.store.compensations("job", "r")
    assert task.status == "cancelled"
    env.clock.advance(hours=1)
    assert env.sweeper.run_once().compensations_failed == 0  # nothing left to try
    with pytest.raises(InvalidArgumentError, match=r"no state 'nowhere' \(states: .*done"):
        env.sweeper.resolve("job", "r", "nowhere", note="x", actor="ops-bo")
    with pytest.raises(InvalidArgumentError, match="needs a note") as refused:
        env.sweeper.resolve("job", "r", "done", note=" ", actor="ops-bo")
    assert refused.value.argument == "note"
    with pytest.raises(InvalidArgumentError, match=r"no machine 'parcel' \(it has: job\)"):
        env.sweeper.resolve("parcel", "r", "done", note="x", actor="ops-bo")


def test_compensate_aborts_a_saga_on_demand(env: Env) -> None:
    env.job("saga", "advance", "continue_")
    record = env.sweeper.compensate("job", "saga", reason="customer cancelled", actor="app")
    assert (record.event, record.actor) == ("@stuck", "app")
    with pytest.raises(SweeperError, match="already stuck") as refused:
        env.sweeper.compensate("job", "saga", reason="again", actor="app")
    assert (refused.value.key, refused.value.state, refused.value.lever) == (
        "saga",
        "second",
        "compensate",
    )
    env.sweeper.run_once()
    assert env.row("saga").state == "undone"


def test_a_sweep_racing_an_application_transition(env: Env) -> None:
    # The application loaded the job before the sweep and fires after it: it loses.
    env.job("race1", "advance")
    env.clock.advance(minutes=11)
    stale = env.row("race1")
    env.sweeper.run_once()
    with pytest.raises(ConcurrentTransitionError):
        env.jobs.fire(stale, "continue_")
    # The application fires first: the instance is no longer due, the sweep skips it.
    env.job("race2", "advance")
    env.clock.advance(minutes=11)
    env.jobs.fire_by_key("race2", "continue_")
    assert env.sweeper.run_once().claimed == 0
    assert env.events("race2") == ["advance", "continue_"]
    assert env.calls().get(("race2", "undo_first")) is None


def test_skip_locked_is_detected_per_server(env: Env) -> None:
    expected = {"sqlite": False, "postgresql": True, "mysql": True, "mariadb": True}
    assert supports_skip_locked(env.engine) is expected[env.engine.dialect.name]


def test_a_locked_row_is_skipped_not_waited_for(env: Env) -> None:
    env.job("held")
    env.job("free")
    env.clock.advance(minutes=11)
    if not env.store.skip_locked:
        # SQLite has one writer at a time: a second sweeper waits for the writer up to
        # its busy timeout, then fails cleanly, and works once the writer committed.
        url = env.engine.url.render_as_string(hide_password=False)
        impatient = engine_for(url, busy_timeout_ms=100)
        store = SQLAlchemyStore(impatient, {JobWorkflow.machine: JobRow})
        other = Sweeper([Runner(JobWorkflow.machine, store, clock=env.clock)], clock=env.clock)
        writer = env.engine.execution_options(statekit_begin="IMMEDIATE")
        with Session(writer) as session, session.begin():
            session.get(JobRow, "held")  # a write transaction, from its first statement
            with pytest.raises(StatekitError, match="database is locked"):
                other.run_once()
        assert other.run_once().timed_out == 2
        impatient.dispose()
        return
    with Session(env.engine) as session, session.begin():
        session.execute(select(JobRow).where(JobRow.id == "held").with_for_update())
        result = env.sweeper.run_once()  # another transaction holds 'held'
        assert result.claimed == 1
    assert env.row("free").state == "expired"
    assert env.row("held").state == "new"
    assert env.sweeper.run_once().timed_out == 1
