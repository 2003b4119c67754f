"""A stuck mark leaves `state_entered_at` alone: the instance never left its state.

Every path that marks an instance stuck in place is covered, on SQLite, PostgreSQL
and MariaDB: the sweeper's set-based batch marking, `Sweeper.compensate` (one
instance in its own transaction) and `Sweeper.retry` (`@retry`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, update

from statekit import ManualClock, MemoryStore, Runner, Sweeper
from statekit.cli import cli
from statekit.store.sqlalchemy import SQLAlchemyStore
from tests.sweep_support import FAILURES, JobRow, JobWorkflow, clear_jobs, job_engine, start_job


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    engine = job_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: Engine) -> Iterator[SQLAlchemyStore]:
    FAILURES.clear()
    yield SQLAlchemyStore(engine, {JobWorkflow.machine: JobRow})
    clear_jobs(engine)


def _started(store: SQLAlchemyStore, runner: Runner, key: str, *events: str) -> None:
    start_job(store.engine, runner, key, *events)


def test_batch_marking_keeps_the_entry_time(store: SQLAlchemyStore) -> None:
    clock = ManualClock()
    runner = Runner(JobWorkflow.machine, store, clock=clock)
    _started(store, runner, "b-1", "advance")
    _started(store, runner, "b-2", "advance")
    entered = clock.now()
    clock.advance(minutes=11)
    for key in ("b-1", "b-2"):  # their compensations fail, so they stay stuck in `first`
        FAILURES[key, "undo_first"] = 5

    result = Sweeper([runner], clock=clock, batch_size=10).run_once()

    assert result.marked_stuck == 2
    for key in ("b-1", "b-2"):
        snapshot = store.load("job", key)
        assert snapshot.stuck_at is not None
        assert snapshot.entered_at == entered, key
        assert [r.event for r in store.history("job", key)][:2] == ["advance", "@stuck"]


def test_compensate_and_retry_keep_the_entry_time(store: SQLAlchemyStore) -> None:
    clock = ManualClock()
    runner = Runner(JobWorkflow.machine, store, clock=clock)
    _started(store, runner, "c-1", "advance")
    entered = clock.now()
    clock.advance(minutes=3)
    sweeper = Sweeper([runner], clock=clock)

    sweeper.compensate("job", "c-1", reason="customer cancelled", actor="ops")
    assert store.load("job", "c-1").entered_at == entered

    with store.engine.begin() as conn:  # its compensation used up its attempts
        conn.execute(update(store.tables.compensations).values(status="dead"))
    clock.advance(minutes=3)
    record = sweeper.retry("job", "c-1", actor="ops")
    assert record.event == "@retry"
    snapshot = store.load("job", "c-1")
    assert snapshot.entered_at == entered
    assert snapshot.stuck_at is not None


def test_a_real_move_still_sets_the_entry_time(store: SQLAlchemyStore) -> None:
    clock = ManualClock()
    runner = Runner(JobWorkflow.machine, store, clock=clock)
    _started(store, runner, "r-1", "advance")
    clock.advance(minutes=3)
    sweeper = Sweeper([runner], clock=clock)
    sweeper.compensate("job", "r-1", reason="customer cancelled", actor="ops")
    clock.advance(minutes=3)
    sweeper.resolve("job", "r-1", "done", note="settled by phone", actor="ops")
    assert store.load("job", "r-1").entered_at == clock.now()


def test_the_memory_store_keeps_the_entry_time_too() -> None:
    clock = ManualClock()
    store = MemoryStore()
    runner = Runner(JobWorkflow.machine, store, clock=clock)
    job = JobRow(id="m-1")
    runner.start(job)
    entered = clock.now()
    clock.advance(minutes=2)
    plan = JobWorkflow.machine.system_plan(
        job, "@stuck", "new", now=clock.now(), actor="ops", stuck_reason="parked"
    )
    JobWorkflow.machine.stage(job, plan)
    store.apply(plan, entity=job)
    assert store.load("job", "m-1").entered_at == entered
    assert job.state_entered_at == entered


def test_stats_count_a_stay_from_its_real_entry_across_a_stuck_mark(
    store: SQLAlchemyStore,
) -> None:
    clock = ManualClock()
    start = clock.now()
    runner = Runner(JobWorkflow.machine, store, clock=clock)
    _started(store, runner, "s-1", "advance")  # enters `first` at start
    _started(store, runner, "s-2", "advance")  # enters `first` at start, stays there
    FAILURES["s-1", "undo_first"] = FAILURES["s-2", "undo_first"] = 5
    clock.advance(minutes=11)
    assert Sweeper([runner], clock=clock).run_once().marked_stuck == 2
    clock.advance(minutes=9)
    runner.fire_by_key("s-1", "continue_")  # leaves `first` 20 minutes after entering it
    clock.advance(minutes=10)

    result = CliRunner().invoke(
        cli,
        ["stats", "--json", "--machine", "job", "--since", "1h", "-m", "tests.sweep_support"],
        env={
            "STATEKIT_DB": store.engine.url.render_as_string(hide_password=False),
            "STATEKIT_NOW": clock.now().isoformat(),
        },
    )

    assert result.exit_code == 0, result.output
    [job] = json.loads(result.output)["machines"]
    first = next(s for s in job["states"] if s["state"] == "first")
    assert (first["now"], first["stuck"], first["left"]) == (1, 1, 1)
    assert first["median_seconds"] == 20 * 60  # one stay, not two split by the mark
    assert first["waiting_median_seconds"] == (clock.now() - start).total_seconds()


def test_the_batch_log_counts_the_compensations_it_scheduled(
    store: SQLAlchemyStore, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    runner = Runner(JobWorkflow.machine, store, clock=clock)
    for key in ("n-1", "n-2", "n-3"):
        _started(store, runner, key, "advance")
        FAILURES[key, "undo_first"] = 5
    clock.advance(minutes=11)
    with caplog.at_level(logging.INFO, logger="statekit.sweeper"):
        Sweeper([runner], clock=clock).run_once()
    assert "3 job instance(s) marked stuck, 3 compensation(s) scheduled" in caplog.messages
