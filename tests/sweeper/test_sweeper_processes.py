"""Sweepers as separate OS processes: concurrency, SIGKILL mid-batch, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.engine import make_url

from statekit import ManualClock, Runner, Sweeper
from statekit.store.sqlalchemy import SQLAlchemyStore
from tests.processes import ROOT, go, result, spawn, wait_ready
from tests.sql_support import engine_for
from tests.sweep_support import JobBase, JobRow, JobWorkflow, call_counts
from tests.sweep_support import calls as calls_table

pytestmark = pytest.mark.slow


@pytest.fixture
def store(database_url: str) -> Iterator[SQLAlchemyStore]:
    engine = engine_for(database_url)
    JobBase.metadata.drop_all(engine)
    JobBase.metadata.create_all(engine)
    store = SQLAlchemyStore(engine, {JobWorkflow.machine: JobRow})
    store.tables.metadata.drop_all(engine)
    store.create_tables()
    yield store
    engine.dispose()


def _overdue_jobs(store: SQLAlchemyStore, count: int) -> list[str]:
    """`count` jobs that completed `advance` and are past the deadline of `first`."""
    now = datetime.now(UTC)
    entered, deadline = now - timedelta(minutes=20), now - timedelta(minutes=10)
    keys = [f"job-{n:05d}" for n in range(count)]
    with store.engine.begin() as conn:
        conn.execute(
            insert(JobRow.__table__),
            [
                {
                    "id": key,
                    "frozen": False,
                    "state": "first",
                    "state_version": 1,
                    "state_entered_at": entered,
                    "state_deadline_at": deadline,
                    "state_definition_version": 1,
                }
                for key in keys
            ],
        )
        conn.execute(
            insert(store.tables.transitions),
            [
                {
                    "entity_type": "job",
                    "entity_key": key,
                    "seq": 1,
                    "event": "advance",
                    "source": "new",
                    "target": "first",
                    "at": entered,
                    "definition_version": 1,
                }
                for key in keys
            ],
        )
    return keys


def _assert_each_exactly_once(
    store: SQLAlchemyStore, keys: list[str], *, crashed: bool = False
) -> None:
    t = store.tables.transitions
    with store.engine.connect() as conn:
        events = conn.execute(
            select(t.c.event, func.count()).where(t.c.entity_type == "job").group_by(t.c.event)
        ).all()
        states = conn.execute(select(JobRow.state, func.count()).group_by(JobRow.state)).all()
        calls = call_counts(conn)
    assert dict(events) == {"advance": len(keys), "@stuck": len(keys), "@compensated": len(keys)}
    assert dict(states) == {"undone": len(keys)}
    assert calls == {(key, "undo_first"): 1 for key in keys}
    done = store.compensations("job", status=["done"])
    assert len(done) == len(keys)
    # A claim held by a killed sweeper counts as an attempt, so those finish on the
    # second; without a crash every compensation succeeds on its first attempt.
    assert {task.attempts for task in done} <= ({1, 2} if crashed else {1})


def _count_for(database_url: str) -> int:
    return 600 if make_url(database_url).get_backend_name() == "sqlite" else 5000


def test_two_sweeper_processes_share_the_work_and_do_it_once(
    database_url: str, store: SQLAlchemyStore
) -> None:
    keys = _overdue_jobs(store, _count_for(database_url))
    workers = [spawn("sweep", url=database_url, batch_size=50) for _ in range(2)]
    for worker in workers:
        wait_ready(worker)
    for worker in workers:
        go(worker)
    results = [result(w) for w in workers]
    assert sum(r["marked_stuck"] for r in results) == len(keys)
    assert sum(r["compensations_run"] for r in results) == len(keys)
    assert sum(r["compensated"] for r in results) == len(keys)
    _assert_each_exactly_once(store, keys)


def _killed_at_instance_250(
    database_url: str, store: SQLAlchemyStore, *, after_write: bool = False
) -> int:
    """Kill a sweeper (batches of 100) where it stops in the batch of the 250th
    instance (see `tests.workers.sweep_until_killed`); how many instances are stuck."""
    worker = spawn(
        "sweep_until_killed",
        url=database_url,
        batch_size=100,
        hang_at_instance=250,
        after_write=after_write,
    )
    wait_ready(worker)
    os.kill(worker.pid, signal.SIGKILL)
    worker.communicate(timeout=30)
    assert worker.returncode == -signal.SIGKILL
    with store.engine.connect() as conn:
        stuck = select(func.count()).select_from(JobRow).where(JobRow.stuck_at.is_not(None))
        return int(conn.execute(stuck).scalar_one())


def test_a_sweeper_killed_mid_batch_loses_and_doubles_nothing(
    database_url: str, store: SQLAlchemyStore
) -> None:
    keys = _overdue_jobs(store, 300)
    # Killed inside the batch of the 250th instance (marked stuck set-based, before the
    # batch's commit): batches 1 and 2 are committed, the third never commits.
    stuck_rows = _killed_at_instance_250(database_url, store)
    assert stuck_rows == 200  # the two committed batches, nothing of the third
    assert not store.compensations("job", status=["done"])

    # Kill the next one inside the transaction of its 30th compensation, after the
    # handler ran: that handler's call and its claim are left behind, and only that
    # task waits out a lease (the others were never claimed).
    worker = spawn("sweep_until_killed", url=database_url, batch_size=100, hang_at_compensation=30)
    wait_ready(worker)
    os.kill(worker.pid, signal.SIGKILL)
    worker.communicate(timeout=30)
    assert len(store.compensations("job", status=["running"])) == 1

    # A later run (after any claim's lease ran out) finishes everything exactly once.
    clock = ManualClock(datetime.now(UTC) + timedelta(minutes=10))
    sweeper = Sweeper([Runner(JobWorkflow.machine, store, clock=clock)], clock=clock)
    sweeper.run_once()
    _assert_each_exactly_once(store, keys, crashed=True)
    reclaimed = [t for t in store.compensations("job") if t.attempts == 2]
    assert len(reclaimed) == 1  # the killed sweeper's running task, after its lease


def test_a_sweeper_killed_after_a_self_committed_batch_loses_and_doubles_nothing(
    database_url: str, store: SQLAlchemyStore
) -> None:
    """PostgreSQL marks a batch stuck in one statement that commits itself. A sweeper
    killed once that statement has run, before it reads the answer, leaves the whole
    batch written (it never counted it); the next pass compensates every instance once."""
    if make_url(database_url).get_backend_name() != "postgresql":
        pytest.skip("only PostgreSQL's stuck mark commits itself")
    keys = _overdue_jobs(store, 300)
    stuck_rows = _killed_at_instance_250(database_url, store, after_write=True)
    assert stuck_rows == 300  # the third batch is written whole
    assert len(store.compensations("job", status=["pending"])) == 300

    clock = ManualClock(datetime.now(UTC) + timedelta(minutes=10))
    sweeper = Sweeper([Runner(JobWorkflow.machine, store, clock=clock)], clock=clock)
    result = sweeper.run_once()
    assert result.marked_stuck == 0  # nothing left to mark, nothing marked twice
    _assert_each_exactly_once(store, keys)


def test_statekit_sweep_once_as_json(database_url: str, store: SQLAlchemyStore) -> None:
    keys = _overdue_jobs(store, 25)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "statekit",
            "sweep",
            "--once",
            "--json",
            "--batch-size",
            "10",
            "-m",
            "tests.sweep_support",
        ],
        cwd=ROOT,
        env={**os.environ, "STATEKIT_DB": database_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["claimed"], result["marked_stuck"], result["compensated"]) == (25, 25, 25)
    assert "job instance(s) marked stuck" in done.stderr  # logs go to stderr, data to stdout
    _assert_each_exactly_once(store, keys)


def test_statekit_sweep_finishes_its_batch_on_sigterm(
    database_url: str, store: SQLAlchemyStore
) -> None:
    _overdue_jobs(store, 5)
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "statekit", "sweep", "--json", "--interval", "0.2"),
            *("--db", database_url, "-m", "tests.sweep_support"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first = json.loads(process.stdout.readline())
    assert first["marked_stuck"] == 5
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "finishing the current batch" in err
    for line in out.strip().splitlines():
        assert set(json.loads(line)) == set(first)  # only whole JSON passes on stdout


def test_sigterm_stops_the_drain_after_the_running_compensation(
    database_url: str, store: SQLAlchemyStore, tmp_path: Path
) -> None:
    keys = _overdue_jobs(store, 20)
    calls = tmp_path / "calls.log"
    calls.touch()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "statekit", "sweep", "--json", "--interval", "60"),
            *("--db", database_url, "-m", "tests.sweep_support"),
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "STATEKIT_TEST_CALL_LOG": str(calls),
            "STATEKIT_TEST_HANDLER_SECONDS": "0.5",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while len(calls.read_text().splitlines()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # polling another process's progress
    process.send_signal(signal.SIGTERM)
    called_at_signal = len(calls.read_text().splitlines())
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    called = len(calls.read_text().splitlines())
    assert 2 <= called_at_signal <= called <= called_at_signal + 1  # the running one ends
    (result,) = [json.loads(line) for line in out.strip().splitlines()]
    assert result["compensations_run"] == called
    # The others were never claimed: the next sweeper takes them without waiting.
    waiting = store.compensations("job", status=["pending"])
    assert len(waiting) == len(keys) - called
    assert {t.attempts for t in waiting} == {0}


def _two_step_jobs(store: SQLAlchemyStore, count: int) -> list[str]:
    """`count` jobs that completed `advance` and `continue_` and are past the deadline
    of `second`: two compensations each once marked stuck."""
    keys = _overdue_jobs(store, count)
    now = datetime.now(UTC)
    with store.engine.begin() as conn:
        conn.execute(JobRow.__table__.update().values(state="second", state_version=2))
        conn.execute(
            insert(store.tables.transitions),
            [
                {
                    "entity_type": "job",
                    "entity_key": key,
                    "seq": 2,
                    "event": "continue_",
                    "source": "first",
                    "target": "second",
                    "at": now - timedelta(minutes=15),
                    "definition_version": 1,
                }
                for key in keys
            ],
        )
    return keys


def test_two_sweepers_at_concurrency_4_run_each_compensation_once_newest_first(
    database_url: str, store: SQLAlchemyStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = 100 if make_url(database_url).get_backend_name() == "sqlite" else 400
    keys = _two_step_jobs(store, count)
    log = tmp_path / "calls.log"
    monkeypatch.setenv("STATEKIT_TEST_CALL_LOG", str(log))  # every call, committed or not
    monkeypatch.setenv("STATEKIT_TEST_HANDLER_SECONDS", "0.005")
    workers = [spawn("sweep", url=database_url, batch_size=50, concurrency=4) for _ in range(2)]
    for worker in workers:
        wait_ready(worker)
    for worker in workers:
        go(worker)
    results = [result(w) for w in workers]
    assert sum(r["compensations_run"] for r in results) == 2 * count
    assert sum(r["compensated"] for r in results) == count
    calls = log.read_text(encoding="utf-8").splitlines()
    assert sorted(calls) == sorted(f"{k} {a}" for k in keys for a in ("undo_first", "undo_second"))
    with store.engine.connect() as conn:
        assert call_counts(conn) == {(k, a): 1 for k in keys for a in ("undo_first", "undo_second")}
        rows = conn.execute(
            select(calls_table.c.job_key, calls_table.c.action).order_by(calls_table.c.id)
        ).all()
    order: dict[str, list[str]] = {}
    for key, action in rows:  # committed in this order: newest step first per job
        order.setdefault(key, []).append(action)
    assert set(map(tuple, order.values())) == {("undo_second", "undo_first")}
    done = store.compensations("job", status=["done"])
    assert len(done) == 2 * count
    assert {task.attempts for task in done} == {1}
