"""The long-running sweeper survives database failures and stops between instances.

`run_forever` logs a failed pass, waits (doubling) and goes on, and gives up only
after `max_failures` failed passes in a row; `statekit sweep` does the same in a
real process whose PostgreSQL database is taken away and given back. A stop
request is honoured after the instance in progress, not after the whole batch.
"""

from __future__ import annotations

import json
import logging
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from sqlalchemy import Engine, create_engine, select, text

from statekit import ManualClock, Runner, StoreError, Sweeper
from statekit.store.sqlalchemy import SQLAlchemyStore
from tests.conftest import POSTGRES_URL
from tests.processes import ROOT
from tests.sql_support import fresh_database
from tests.sweep_support import (
    JobBase,
    JobRow,
    JobWorkflow,
    clear_jobs,
    job_engine,
    start_entity,
    start_job,
)
from tests.tick_support import EXPIRING, Tick, TickBase, TickWorkflow

STOP = threading.Event()
EXPIRED: list[str] = []


def count_and_maybe_stop(tick: Tick) -> None:
    """The third tick asks the sweeper to stop while it is being expired."""
    EXPIRED.append(tick.id)
    if len(EXPIRED) == 3:
        STOP.set()


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    engine = job_engine(database_url, TickBase.metadata)
    yield engine
    engine.dispose()


def test_a_stop_request_ends_the_pass_after_the_instance_in_progress(engine: Engine) -> None:
    STOP.clear()
    EXPIRED.clear()
    EXPIRING.append(count_and_maybe_stop)
    clock = ManualClock()
    store = SQLAlchemyStore(engine, {TickWorkflow.machine: Tick})
    runner = Runner(TickWorkflow.machine, store, clock=clock)
    keys = [f"t-{i:02d}" for i in range(10)]
    for key in keys:
        start_entity(engine, runner, Tick(id=key))
    clock.advance(minutes=2)
    sweeper = Sweeper([runner], clock=clock, batch_size=100)
    try:
        first = sweeper.run_once(STOP.is_set)
        with engine.connect() as conn:
            states = dict(conn.execute(select(Tick.id, Tick.state)).all())
        assert (first.claimed, first.timed_out) == (3, 3)
        assert [k for k in keys if states[k] == "expired"] == keys[:3]  # committed
        STOP.clear()
        rest = sweeper.run_once(STOP.is_set)
        assert (rest.claimed, rest.timed_out) == (7, 7)
    finally:
        EXPIRING.clear()
        clear_jobs(engine, TickBase.metadata)


@pytest.fixture
def broken_sqlite(tmp_path: Path) -> Iterator[tuple[Engine, Sweeper]]:
    """A SQLite job database with one overdue job whose outbox table has gone."""
    engine = job_engine(f"sqlite+pysqlite:///{tmp_path}/jobs.db")
    clock = ManualClock()
    store = SQLAlchemyStore(engine, {JobWorkflow.machine: JobRow})
    runner = Runner(JobWorkflow.machine, store, clock=clock)
    start_job(engine, runner, "j-1")
    clock.advance(minutes=11)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE statekit_compensations RENAME TO away"))
    yield engine, Sweeper([runner], clock=clock)
    engine.dispose()


class Repair(logging.Handler):
    """Gives the table back after the sweeper logged `after` failed passes."""

    def __init__(self, engine: Engine, after: int) -> None:
        super().__init__()
        self.engine, self.after, self.failures = engine, after, 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("sweeper pass failed"):
            self.failures += 1
            if self.failures == self.after:
                with self.engine.begin() as conn:
                    conn.execute(text("ALTER TABLE away RENAME TO statekit_compensations"))


def test_run_forever_backs_off_and_goes_on_after_failed_passes(
    broken_sqlite: tuple[Engine, Sweeper],
) -> None:
    engine, sweeper = broken_sqlite
    repair = Repair(engine, after=3)
    log = logging.getLogger("statekit.sweeper")
    log.addHandler(repair)
    stop = threading.Event()
    passes: list[int] = []

    def on_pass(result: Any) -> None:
        passes.append(result.timed_out)
        stop.set()

    try:
        sweeper.run_forever(0.01, stop, on_pass=on_pass, max_failures=5)
    finally:
        log.removeHandler(repair)
    assert repair.failures == 3
    assert passes == [1]
    with engine.connect() as conn:
        assert conn.execute(select(JobRow.state)).scalar() == "expired"


def test_run_forever_gives_up_after_max_failures_in_a_row(
    broken_sqlite: tuple[Engine, Sweeper], caplog: pytest.LogCaptureFixture
) -> None:
    _, sweeper = broken_sqlite
    with (
        caplog.at_level(logging.ERROR, logger="statekit.sweeper"),
        pytest.raises(StoreError, match="no such table"),
    ):
        sweeper.run_forever(0.01, threading.Event(), max_failures=3)
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("sweeper pass failed") for m in messages) == 2
    assert "3 sweeper passes in a row failed; giving up" in messages


class Lines:
    """The lines a process writes to one stream, read by a thread."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.stream:
            self.lines.put(line)
        self.lines.put("")  # end of stream

    def wait_for(self, wanted: str, timeout: float = 60) -> str:
        """The next line containing `wanted`; fail if the stream ends first."""
        while True:
            line = self.lines.get(timeout=timeout)
            self.seen.append(line)
            if not line:
                pytest.fail(f"stream ended before {wanted!r}: {''.join(self.seen)}")
            if wanted in line:
                return line

    def close(self) -> None:
        self.reader.join(timeout=30)
        self.stream.close()

    def seen_all(self) -> list[str]:
        """Every line, once the stream has ended."""
        while (line := self.lines.get(timeout=60)) != "":
            self.seen.append(line)
        return [line for line in self.seen if line]


class SweepProcess:
    """`statekit sweep --json OPTIONS -m MODULE` on database `url`."""

    def __init__(
        self, url: str, *options: str, module: str = "tests.sweep_support", tick_seconds: float = 0
    ) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "statekit", "sweep", "--json", *options, "-m", module],
            cwd=ROOT,
            env={
                "STATEKIT_DB": url,
                "PATH": "/usr/bin:/bin",
                "STATEKIT_TEST_TICK_SECONDS": str(tick_seconds),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self.out, self.err = Lines(self.process.stdout), Lines(self.process.stderr)

    def finish(self, sent: int | None = None) -> int:
        """Send signal `sent` (if any) and return the exit code."""
        if sent is not None and self.process.poll() is None:
            self.process.send_signal(sent)
        try:
            return self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.out.close()
            self.err.close()


def _take_away(admin: Engine, name: str, allowed: bool) -> None:
    """Refuse new connections to database `name` and end its sessions, or allow again."""
    with admin.connect() as conn:
        conn.execute(text(f"ALTER DATABASE {name} ALLOW_CONNECTIONS {str(allowed).lower()}"))
        if not allowed:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )


@pytest.fixture
def postgres_jobs(tmp_path: Path) -> Iterator[tuple[str, Engine, Runner]]:
    with fresh_database("postgresql", tmp_path) as url:
        engine = job_engine(url)
        runner = Runner(
            JobWorkflow.machine,
            SQLAlchemyStore(engine, {JobWorkflow.machine: JobRow}),
            clock=ManualClock(),  # 2026-01-01: its deadlines have passed by the real clock
        )
        admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        yield url, engine, runner
        _take_away(admin, engine.url.database or "", allowed=True)
        admin.dispose()
        engine.dispose()


@pytest.mark.slow
def test_statekit_sweep_survives_its_database_going_away(
    postgres_jobs: tuple[str, Engine, Runner],
) -> None:
    url, engine, runner = postgres_jobs
    name = engine.url.database or ""
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    start_job(engine, runner, "before")
    sweep = SweepProcess(url, "--interval", "0.2")
    try:
        assert json.loads(sweep.out.wait_for('"timed_out": 1'))["timed_out"] == 1
        _take_away(admin, name, allowed=False)
        sweep.err.wait_for("sweeper pass failed (1 in a row)")
        sweep.err.wait_for("sweeper pass failed (2 in a row)")
        _take_away(admin, name, allowed=True)
        engine.dispose()  # the test's own pooled connections were ended too
        start_job(engine, runner, "after")
        assert json.loads(sweep.out.wait_for('"timed_out": 1'))["timed_out"] == 1
        assert sweep.process.poll() is None
    finally:
        code = sweep.finish(signal.SIGTERM)
        admin.dispose()
    assert code == 0, "".join(sweep.err.seen)
    with engine.connect() as conn:
        states = dict(conn.execute(select(JobRow.id, JobRow.state)).all())
    assert states == {"before": "expired", "after": "expired"}


@pytest.mark.slow
def test_statekit_sweep_exits_1_after_max_failures(
    postgres_jobs: tuple[str, Engine, Runner],
) -> None:
    url, engine, _ = postgres_jobs
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    _take_away(admin, engine.url.database or "", allowed=False)
    admin.dispose()
    sweep = SweepProcess(url, "--interval", "0.1", "--max-failures", "3")
    try:
        sweep.err.wait_for("3 sweeper passes in a row failed; giving up")
    finally:
        code = sweep.finish()
    assert code == 1


def test_a_broken_machine_does_not_stop_the_others_or_the_drain(engine: Engine) -> None:
    """The ticks table lacks a statekit column (a migration not run): sweeping tick
    fails, the pass still times out and compensates jobs, then raises tick's error."""
    JobBase.metadata.create_all(engine)
    clock = ManualClock()
    store = SQLAlchemyStore(engine, {TickWorkflow.machine: Tick, JobWorkflow.machine: JobRow})
    ticks = Runner(TickWorkflow.machine, store, clock=clock)
    jobs = Runner(JobWorkflow.machine, store, clock=clock)
    start_entity(engine, ticks, Tick(id="t-1"))
    start_job(engine, jobs, "j-new")
    start_job(engine, jobs, "j-first", "advance")
    clock.advance(minutes=11)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE ticks RENAME COLUMN stuck_reason TO stuck_why"))
    try:
        with pytest.raises(StoreError, match="sweeping tick failed"):
            Sweeper([ticks, jobs], clock=clock).run_once()
        with engine.connect() as conn:
            states = dict(conn.execute(select(JobRow.id, JobRow.state)).all())
        assert states == {"j-new": "expired", "j-first": "undone"}
    finally:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE ticks RENAME COLUMN stuck_why TO stuck_reason"))
        clear_jobs(engine, TickBase.metadata)
        clear_jobs(engine)


@pytest.mark.slow
def test_sigterm_stops_statekit_sweep_after_the_instance_in_progress(engine: Engine) -> None:
    store = SQLAlchemyStore(engine, {TickWorkflow.machine: Tick})
    runner = Runner(TickWorkflow.machine, store, clock=ManualClock())  # long overdue
    keys = [f"slow-{i:02d}" for i in range(10)]
    for key in keys:
        start_entity(engine, runner, Tick(id=key))
    url = engine.url.render_as_string(hide_password=False)
    sweep = SweepProcess(url, "--interval", "0.2", module="tests.tick_support", tick_seconds=0.5)
    try:
        sweep.err.wait_for("expiring slow-00")  # the first instance is in progress
        code = sweep.finish(signal.SIGTERM)
        with engine.connect() as conn:
            states = dict(conn.execute(select(Tick.id, Tick.state)).all())
        assert code == 0, "".join(sweep.err.seen)
        assert [k for k in keys if states[k] == "expired"] == ["slow-00"]
        assert [json.loads(line)["timed_out"] for line in sweep.out.seen_all()] == [1]
    finally:
        clear_jobs(engine, TickBase.metadata)
