"""The sweeper on SQLite, PostgreSQL and MariaDB, with a controllable clock: what the
store-neutral contract (`tests/contract/sweeper_contract.py`) does not cover, such as
handlers' own SQL statements committing with their completion, and locks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from statekit import (
    Backoff,
    ConcurrentTransitionError,
    InvalidArgumentError,
    Runner,
    StatekitError,
    Sweeper,
)
from statekit.store.sqlalchemy import SQLAlchemyStore
from statekit.store.sqlalchemy.sweep import supports_skip_locked
from tests.contract.sweeper_contract import Hooks
from tests.sql_support import engine_for
from tests.sweep_env import JobEnv as Env
from tests.sweep_env import clear_job_tables, job_env
from tests.sweep_support import FAILURES, JobRow, JobWorkflow


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


def test_a_failed_attempt_rolls_back_the_statements_its_handler_ran(env: Env) -> None:
    # The contract checks the ORM side (job.undone); this is the handler's own SQL.
    env.job("flaky", "advance")
    FAILURES["flaky", "undo_first"] = 3
    env.clock.advance(minutes=11)
    for delay in (0, 30, 60, 120):  # due 30s, then 60s, then 120s after each failure
        env.clock.advance(seconds=delay)
        env.sweeper.run_once()
    [task] = env.store.compensations("job", "flaky")
    assert (task.status, task.attempts) == ("done", 4)
    assert all(
        "undo_first of flaky is down" in (a.error or "")
        for a in env.store.attempts(task.id or 0)
        if not a.succeeded
    )
    assert env.calls() == {("flaky", "undo_first"): 1}


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
