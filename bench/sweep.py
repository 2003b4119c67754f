"""Sweep benchmark: statekit's sweeper on 1,000,000 instances, 10,000 of them overdue.

On PostgreSQL and SQLite, side by side in one run:

- raw SQL: batched `UPDATE ... WHERE id IN (SELECT ... deadline <= now LIMIT n
  [FOR UPDATE SKIP LOCKED])` that only marks the rows stuck (the reference);
- statekit: the deadline phase of `Sweeper.run_once` (claim, `@stuck` history row,
  one compensation row per instance), then the drain of those compensations as its
  own row; on PostgreSQL also one vs two sweeper processes;
- an empty poll on the full table: `Sweeper.run_once()` and statekit's overdue claim
  against the raw `SELECT ... WHERE deadline <= now LIMIT n`.

    python -m bench sweep                 # 1,000,000 rows / 10,000 overdue
    python -m bench sweep --quick         # 100,000 rows / 1,000 overdue
    python -m bench.sweep --profile postgresql   # statements and cProfile of statekit's sweep

See README.md ("The sweep benchmark") for what each row is.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import os
import pstats
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from time import perf_counter_ns
from typing import Any

from sqlalchemy import (
    Engine,
    MetaData,
    String,
    bindparam,
    create_engine,
    event,
    func,
    make_url,
    select,
    text,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bench import Case, Config, Measurement, Report, Row, Target, environment, measure, render
from statekit import CompensationContext, ManualClock, Runner, State, Sweeper, Workflow
from statekit.store.sqlalchemy import SQLAlchemyStore, StateMixin, UTCDateTime, sqlite_engine
from statekit.sweeper import SweepResult

DESCRIPTION = (
    "sweeper, 1M instances / 10k overdue: statekit vs raw-SQL batch UPDATE (PostgreSQL, SQLite)"
)

POSTGRES_URL = os.environ.get(
    "STATEKIT_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
DATABASE = "statekit_bench_sweep"
PACKAGES = ("statekit", "SQLAlchemy", "psycopg", "pydantic")

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
"""The sweepers' clock: every overdue deadline lies in the hour before it."""
EARLY = NOW - timedelta(hours=2)
"""A moment at which nothing is due yet (the empty poll)."""


def quiet() -> None:
    """statekit logs a warning per stuck instance; an application would route it to a
    handler. Give it a handler that drops it, so no run pays for writing to a terminal."""
    logger = logging.getLogger("statekit")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())


def progress(message: str) -> None:
    """A line on stderr, so a long run shows where it is."""
    print(f"[sweep {os.getloadavg()[0]:.2f}] {message}", file=sys.stderr, flush=True)


BATCH = 500
DRAIN_LIMIT = 2_000
"""The drain is timed once per database, over this many compensations at most."""
"""Instances per claim and per transaction, for statekit and raw SQL alike."""
TIMEOUT = timedelta(minutes=30)
REASON = "no progress in 'running' within 30m"


@dataclass(frozen=True)
class Size:
    """How many rows the table holds and how many of them are overdue."""

    total: int
    overdue: int

    @property
    def step(self) -> int:
        """Every `step`-th id is overdue."""
        return self.total // self.overdue

    def overdue_ids(self) -> range:
        return range(self.step, self.step * self.overdue + 1, self.step)


FULL = Size(1_000_000, 10_000)
QUICK = Size(100_000, 1_000)


# -- the machine and its table -----------------------------------------------------------


def release_slot(job: SweepJob, undo: CompensationContext) -> None:
    """Compensation of `start`: give the worker slot back."""
    job.slot = None


class SweepJobWorkflow(Workflow, name="sweep_job", compensated_state="released"):
    """queued --start--> running --finish--> done; a job in `running` for 30 minutes
    is stuck, and `start` is undone by `release_slot`."""

    queued = State(initial=True)
    running = State(timeout=TIMEOUT)
    done = State(final=True)
    released = State(final=True)

    start = queued.to(running, compensate=release_slot, compensate_attempts=3)
    finish = running.to(done)


class SweepBase(DeclarativeBase):
    metadata = MetaData()


class SweepJob(StateMixin, SweepBase):
    """A job row: the key, a worker slot and statekit's state columns."""

    __tablename__ = "sweep_jobs"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    slot: Mapped[int | None] = mapped_column()
    queue: Mapped[str] = mapped_column(String(32), default="default")


MACHINE = SweepJobWorkflow.machine
NAME = MACHINE.name
JOB_COLUMNS = (
    "id",
    "slot",
    "queue",
    "state",
    "state_version",
    "state_entered_at",
    "state_deadline_at",
    "state_definition_version",
)
HISTORY_COLUMNS = ("entity_type", "entity_key", "seq", "event", "source", "target", "at", "actor")


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def overdue_deadline(job_id: int) -> datetime:
    """The deadline of overdue job `job_id`: spread over the hour before NOW."""
    return NOW - timedelta(seconds=1 + (job_id * 7919) % 3599)


def job_rows(size: Size) -> Iterator[tuple[Any, ...]]:
    """Every job row (naive UTC datetimes, as statekit stores them): the overdue ones
    `running` since 30 minutes before their deadline; a third of the others `running`
    with a deadline up to a day ahead, a third `done`, a third `queued` (no deadline)."""
    now = _naive(NOW)
    second = timedelta(seconds=1)
    for i in range(1, size.total + 1):
        if i % size.step == 0 and i <= size.step * size.overdue:
            deadline = _naive(overdue_deadline(i))
            yield (i, i % 64, "default", "running", 1, deadline - TIMEOUT, deadline, 1)
        elif i % 3 == 0:
            deadline = now + second * (60 + i % 86_400)
            yield (i, i % 64, "default", "running", 1, deadline - TIMEOUT, deadline, 1)
        elif i % 3 == 1:
            yield (i, None, "default", "done", 2, now - second * (i % 86_400), None, 1)
        else:
            yield (i, None, "default", "queued", 0, now - second * (i % 3_600), None, 1)


def history_rows(size: Size) -> Iterator[tuple[Any, ...]]:
    """The completed `start` step of every overdue job (what its compensation undoes)."""
    for i in size.overdue_ids():
        at = _naive(overdue_deadline(i) - TIMEOUT)
        yield (NAME, str(i), 1, "start", "queued", "running", at, "loader")


# -- databases ---------------------------------------------------------------------------


@dataclass
class Database:
    """One loaded database and what the contestants share."""

    label: str
    url: str
    engine: Engine
    size: Size
    store: SQLAlchemyStore = field(init=False)

    def __post_init__(self) -> None:
        self.store = SQLAlchemyStore(self.engine, {MACHINE: SweepJob})

    @property
    def postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def sweeper(self, clock_at: datetime = NOW) -> tuple[Sweeper, Runner]:
        clock = ManualClock(clock_at)
        runner = Runner(MACHINE, self.store, clock=clock)
        return Sweeper([runner], clock=clock, batch_size=BATCH), runner


def make_engine(url: str) -> Engine:
    """statekit's SQLite configuration for SQLite files, a plain engine otherwise."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return sqlite_engine(parsed.database or "")
    return create_engine(url)


@contextmanager
def postgres_database() -> Iterator[str | None]:
    """Yield the URL of a fresh `statekit_bench_sweep` database (dropped afterwards),
    or None when the server does not answer."""
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    drop = text(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    try:
        with admin.connect() as conn:
            conn.execute(drop)
            conn.execute(text(f"CREATE DATABASE {DATABASE}"))
    except OperationalError:
        admin.dispose()
        yield None
        return
    try:
        yield make_url(POSTGRES_URL).set(database=DATABASE).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(drop)
        admin.dispose()


def create_and_load(db: Database) -> float:
    """statekit's DDL (the mixin's due index included), then every row; returns seconds."""
    started = perf_counter_ns()
    SweepBase.metadata.create_all(db.engine)
    db.store.create_tables()
    jobs = ", ".join(JOB_COLUMNS)
    history = ", ".join(HISTORY_COLUMNS)
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if db.postgres:
            copy_cursor: Any = cursor
            with copy_cursor.copy(f"COPY sweep_jobs ({jobs}) FROM STDIN") as copy:
                for row in job_rows(db.size):
                    copy.write_row(row)
            with copy_cursor.copy(f"COPY statekit_transitions ({history}) FROM STDIN") as copy:
                for row in history_rows(db.size):
                    copy.write_row(row)
            raw.commit()
            raw.driver_connection.autocommit = True  # type: ignore[union-attr]
            cursor.execute("ANALYZE")
            raw.driver_connection.autocommit = False  # type: ignore[union-attr]
        else:  # one transaction; datetimes in SQLAlchemy's SQLite text format
            marks = ", ".join("?" * len(JOB_COLUMNS))
            cursor.execute("BEGIN")
            cursor.executemany(
                f"INSERT INTO sweep_jobs ({jobs}) VALUES ({marks})",
                (_sqlite_row(row) for row in job_rows(db.size)),
            )
            marks = ", ".join("?" * len(HISTORY_COLUMNS))
            cursor.executemany(
                f"INSERT INTO statekit_transitions ({history}) VALUES ({marks})",
                (_sqlite_row(row) for row in history_rows(db.size)),
            )
            cursor.execute("COMMIT")
            cursor.execute("ANALYZE")
        cursor.close()
    finally:
        raw.close()
    return (perf_counter_ns() - started) / 1e9


def _sqlite_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v for v in row)


def reset(db: Database) -> None:
    """Put the overdue jobs back as loaded; empty the outbox and the sweeper's history."""
    ids = list(db.size.overdue_ids())
    statement = text(
        "UPDATE sweep_jobs SET state = 'running', state_version = 1, slot = :id % 64, "
        "state_entered_at = :entered, state_deadline_at = :deadline, stuck_at = NULL, "
        "stuck_reason = NULL WHERE id = :id"
    ).bindparams(
        bindparam("entered", type_=UTCDateTime()), bindparam("deadline", type_=UTCDateTime())
    )
    params = [
        {"id": i, "entered": overdue_deadline(i) - TIMEOUT, "deadline": overdue_deadline(i)}
        for i in ids
    ]
    with db.engine.begin() as conn:
        conn.execute(statement, params)
        conn.execute(text("DELETE FROM statekit_transitions WHERE seq > 1"))
        conn.execute(text("DELETE FROM statekit_compensation_attempts"))
        conn.execute(text("DELETE FROM statekit_compensations"))
    tidy(db)


def tidy(db: Database) -> None:
    """Between contestants: VACUUM on PostgreSQL (no dead index entries left for the
    next one to step over), a WAL checkpoint on SQLite."""
    if db.postgres:
        with db.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.execute(
                text(
                    "VACUUM (ANALYZE) sweep_jobs, statekit_transitions, statekit_compensations, "
                    "statekit_compensation_attempts"
                )
            )
    if not db.postgres:
        raw = db.engine.raw_connection()
        try:
            raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
        finally:
            raw.close()


@dataclass(frozen=True)
class Check:
    """What the tables hold after a sweep."""

    stuck_rows: int
    stuck_versions: int
    stuck_history: int
    stuck_history_keys: int
    compensations: int
    compensation_keys: int
    done: int
    done_single_attempt: int
    compensated_history: int
    due_left: int

    def problems(self, overdue: int, *, statekit: bool, drained: int = 0) -> list[str]:
        want = {"stuck rows": (self.stuck_rows, overdue - drained)}
        want["stuck rows at version 2"] = (self.stuck_versions, overdue - drained)
        want["due rows left"] = (self.due_left, 0)
        if statekit:
            want["@stuck history rows"] = (self.stuck_history, overdue)
            want["instances with @stuck"] = (self.stuck_history_keys, overdue)
            want["compensation rows"] = (self.compensations, overdue)
            want["instances with a compensation"] = (self.compensation_keys, overdue)
            want["compensations done"] = (self.done, drained)
            want["done after one attempt"] = (self.done_single_attempt, drained)
            want["@compensated history rows"] = (self.compensated_history, drained)
        return [f"{k}: {got} (want {exp})" for k, (got, exp) in want.items() if got != exp]


def check(db: Database) -> Check:
    t = db.store.tables.transitions
    c = db.store.tables.compensations
    jobs = SweepJob.__table__
    deadline = jobs.c.state_deadline_at
    count = func.count()
    with db.engine.connect() as conn:

        def one(query: Any) -> int:
            return int(conn.execute(query).scalar() or 0)

        stuck = jobs.c.stuck_at.is_not(None)
        return Check(
            stuck_rows=one(select(count).where(stuck)),
            stuck_versions=one(select(count).where(stuck, jobs.c.state_version == 2)),
            stuck_history=one(select(count).where(t.c.event == "@stuck")),
            stuck_history_keys=one(
                select(func.count(t.c.entity_key.distinct())).where(t.c.event == "@stuck")
            ),
            compensations=one(select(count).select_from(c)),
            compensation_keys=one(select(func.count(c.c.entity_key.distinct()))),
            done=one(select(count).where(c.c.status == "done")),
            done_single_attempt=one(select(count).where(c.c.status == "done", c.c.attempts == 1)),
            compensated_history=one(select(count).where(t.c.event == "@compensated")),
            due_left=one(select(count).where(deadline <= NOW)),
        )


# -- the contestants ---------------------------------------------------------------------


def raw_sweep(db: Database) -> int:
    """Mark every due row stuck in batches of BATCH, one transaction each."""
    lock = " FOR UPDATE SKIP LOCKED" if db.postgres else ""
    statement = text(
        "UPDATE sweep_jobs SET stuck_at = :now, stuck_reason = :reason, "
        "state_deadline_at = NULL, state_version = state_version + 1 "
        "WHERE id IN (SELECT id FROM sweep_jobs WHERE state_deadline_at <= :now "
        f"ORDER BY state_deadline_at, id LIMIT :n{lock})"
    ).bindparams(bindparam("now", type_=UTCDateTime()))
    marked = 0
    while True:
        with db.engine.begin() as conn:
            rows = conn.execute(statement, {"now": NOW, "reason": REASON, "n": BATCH}).rowcount
        marked += rows
        if rows < BATCH:
            return marked


_PG_WRITES = """
WITH due AS (
    SELECT id FROM sweep_jobs WHERE state_deadline_at <= :now
    ORDER BY state_deadline_at, id LIMIT :n FOR UPDATE SKIP LOCKED
), marked AS (
    UPDATE sweep_jobs AS j SET stuck_at = :now, stuck_reason = :reason,
        state_deadline_at = NULL, state_entered_at = :now, state_version = j.state_version + 1
    FROM due WHERE j.id = due.id RETURNING j.id, j.state_version
), history AS (
    INSERT INTO statekit_transitions (entity_type, entity_key, seq, event, source, target,
        at, actor, payload, definition_version)
    SELECT 'sweep_job', CAST(id AS VARCHAR), state_version, '@stuck', 'running', 'running',
        :now, 'statekit-sweeper', CAST(:payload AS JSON), 1 FROM marked
    RETURNING entity_key
), outbox AS (
    INSERT INTO statekit_compensations (entity_type, entity_key, step_seq, action, event,
        max_attempts, status, attempts, next_attempt_at, created_at, updated_at)
    SELECT t.entity_type, t.entity_key, t.seq, 'release_slot', t.event, 3, 'pending', 0,
        :now, :now, :now
    FROM statekit_transitions AS t JOIN history AS h ON t.entity_key = h.entity_key
    WHERE t.entity_type = 'sweep_job' AND t.event = 'start'
    ON CONFLICT DO NOTHING
)
SELECT count(*) FROM marked
"""

_SQLITE_WRITES = (
    "UPDATE sweep_jobs SET stuck_at = :now, stuck_reason = :reason, state_deadline_at = NULL, "
    "state_entered_at = :now, state_version = state_version + 1 "
    "WHERE id IN (SELECT value FROM json_each(:ids))",
    "INSERT INTO statekit_transitions (entity_type, entity_key, seq, event, source, target, "
    "at, actor, payload, definition_version) "
    "SELECT 'sweep_job', CAST(id AS TEXT), state_version, '@stuck', 'running', 'running', "
    ":now, 'statekit-sweeper', :payload, 1 FROM sweep_jobs "
    "WHERE id IN (SELECT value FROM json_each(:ids))",
    "INSERT INTO statekit_compensations (entity_type, entity_key, step_seq, action, event, "
    "max_attempts, status, attempts, next_attempt_at, created_at, updated_at) "
    "SELECT entity_type, entity_key, seq, 'release_slot', event, 3, 'pending', 0, "
    ":now, :now, :now FROM statekit_transitions WHERE entity_type = 'sweep_job' "
    "AND event = 'start' AND entity_key IN (SELECT CAST(value AS TEXT) FROM json_each(:ids)) "
    "ON CONFLICT DO NOTHING",
)


def raw_writes_sweep(db: Database) -> int:
    """statekit's writes by hand, in batches of BATCH: mark, one history row and one
    outbox row per instance, with no per-row work in Python. On PostgreSQL one
    statement per batch; on SQLite a claim and three statements."""
    now, payload = bindparam("now", type_=UTCDateTime()), json.dumps({"note": REASON})
    params = {"now": NOW, "reason": REASON, "n": BATCH, "payload": payload}
    marked = 0
    while True:
        with db.engine.begin() as conn:
            if db.postgres:
                rows = conn.execute(text(_PG_WRITES).bindparams(now), params).scalar_one()
            else:
                ids = (
                    conn.execute(
                        text(
                            "SELECT id FROM sweep_jobs WHERE state_deadline_at <= :now "
                            "ORDER BY state_deadline_at, id LIMIT :n"
                        ).bindparams(now),
                        params,
                    )
                    .scalars()
                    .all()
                )
                rows, batch = len(ids), {**params, "ids": json.dumps(ids)}
                for statement in _SQLITE_WRITES:
                    conn.execute(text(statement).bindparams(now), batch)
        marked += rows
        if rows < BATCH:
            return marked


def statekit_deadlines(sweeper: Sweeper, runner: Runner) -> SweepResult:
    """The deadline phase of `Sweeper.run_once` (its first half; the drain follows)."""
    result = SweepResult()
    sweeper._sweep_deadlines(runner, result, lambda: False)
    return result


def timed(operation: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds taken by `operation()` and its result."""
    started = perf_counter_ns()
    value = operation()
    return (perf_counter_ns() - started) / 1e9, value


@dataclass
class Worker:
    """A sweeper in its own process: `python -m bench.sweep --worker URL`."""

    process: subprocess.Popen[str]

    @classmethod
    def spawn(cls, url: str) -> Worker:
        root = Path(__file__).resolve().parent.parent
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.sweep", "--worker", url],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        worker = cls(process)
        worker.expect("ready")
        return worker

    def expect(self, word: str) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith(word):
            self.process.kill()
            raise RuntimeError(f"sweep worker said {line!r}, expected {word!r}")
        return line[len(word) :].strip()

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def result(self) -> dict[str, int]:
        data: dict[str, int] = json.loads(self.expect("done"))
        self.process.wait(timeout=60)
        return data


def sweep_in_processes(db: Database, processes: int) -> tuple[float, Counter[str]]:
    """Run `processes` sweepers at once; seconds from `go` to the last one done."""
    workers = [Worker.spawn(db.url) for _ in range(processes)]
    started = perf_counter_ns()
    for worker in workers:
        worker.go()
    results = [worker.result() for worker in workers]
    elapsed = (perf_counter_ns() - started) / 1e9
    total: Counter[str] = Counter()
    for result in results:
        total.update(result)
    return elapsed, total


def worker_main(url: str) -> int:
    """One sweeper process: warm up, say `ready`, wait for `go`, sweep, say `done`."""
    quiet()
    engine = make_engine(url)
    db = Database("worker", url, engine, FULL)
    sweeper, runner = db.sweeper()
    with db.store.overdue_batch(NAME, EARLY, BATCH):  # connect, compile the claim
        pass
    db.store.history(NAME, "0")
    print("ready", flush=True)
    sys.stdin.readline()
    cpu = time.process_time()
    result = statekit_deadlines(sweeper, runner)
    data = {**result.as_dict(), "cpu_ms": round((time.process_time() - cpu) * 1000)}
    print("done " + json.dumps(data), flush=True)
    engine.dispose()
    return 0


# -- statements and plans ----------------------------------------------------------------

_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+\"?(\w+)", re.IGNORECASE)


@contextmanager
def counting(engine: Engine) -> Iterator[Counter[str]]:
    """Count statements by verb and table, plus transactions (commit/rollback)."""
    counts: Counter[str] = Counter()

    def on_statement(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        verb = statement.split(None, 1)[0].upper()
        if verb == "BEGIN":
            return
        found = _TABLE.search(statement)
        counts[f"{verb} {found.group(1) if found else ''}".strip()] += 1

    def on_commit(conn: Any) -> None:
        counts["(commit)"] += 1

    def on_rollback(conn: Any) -> None:
        counts["(rollback)"] += 1

    hooks = (
        ("before_cursor_execute", on_statement),
        ("commit", on_commit),
        ("rollback", on_rollback),
    )
    for name, hook in hooks:
        event.listen(engine, name, hook)
    try:
        yield counts
    finally:
        for name, hook in hooks:
            event.remove(engine, name, hook)


def per_instance(counts: Counter[str], instances: int) -> str:
    statements = sum(v for k, v in counts.items() if not k.startswith("("))
    transactions = counts["(commit)"] + counts["(rollback)"]
    parts = ", ".join(f"{k} {v / instances:.2f}" for k, v in sorted(counts.items()))
    return (
        f"{statements / instances:.2f} statements + {transactions / instances:.2f} "
        f"transactions per instance ({parts})"
    )


def count_statements(db: Database) -> tuple[str, str]:
    """Statements per instance of statekit's deadline phase and of its drain, over one
    batch (untimed; also the warm-up). Leaves the data reset."""
    sweeper, runner = db.sweeper()
    instances = BATCH
    with counting(db.engine) as sweep_counts:
        result = SweepResult()  # counts a batch once it commits: stop after the first
        sweeper._sweep_deadlines(runner, result, lambda: result.claimed >= instances)
    assert result.marked_stuck == instances, result
    drained = SweepResult()
    with counting(db.engine) as drain_counts:
        sweeper._drain(drained, lambda: False)
    assert drained.compensations_run == instances, drained
    reset(db)
    return per_instance(sweep_counts, instances), per_instance(drain_counts, instances)


def explain(db: Database) -> list[str]:
    """The plans of statekit's overdue claim (as it sends it) and of the raw query."""
    captured: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if "sweep_jobs" in statement and "state_deadline_at <=" in statement:
            captured.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        with db.store.overdue_batch(NAME, NOW, BATCH):
            pass
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    statement, parameters = captured[0]
    prefix = "EXPLAIN " if db.postgres else "EXPLAIN QUERY PLAN "
    lines = []
    with db.engine.connect() as conn:
        plan = conn.exec_driver_sql(prefix + statement, parameters).all()
        if db.postgres:
            steps = [str(row[0]).strip().lstrip("-> ").split("  (")[0] for row in plan]
        else:
            steps = [str(row[-1]) for row in plan]
        lines.append(f"  statekit overdue claim: {' -> '.join(steps)}")
        conn.rollback()
    return lines


# -- the run -----------------------------------------------------------------------------


@dataclass
class Results:
    """Seconds per round of each contestant on one database."""

    rounds: dict[str, list[float]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    lost_races: int = 0
    worker_cpu: dict[int, list[float]] = field(default_factory=dict)

    instances: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, seconds: float, instances: int) -> None:
        self.rounds.setdefault(name, []).append(seconds)
        self.instances[name] = instances


RAW = "raw SQL"
WRITES = "raw SQL, statekit's writes"
STATEKIT = "statekit"
DRAIN = "statekit drain"
ONE = "statekit, 1 process"
TWO = "statekit, 2 processes"


def sweep_rounds(db: Database, rounds: int, loads: list[float]) -> Results:
    overdue = db.size.overdue
    drain_limit = min(overdue, DRAIN_LIMIT)
    results = Results()

    def verify(label: str, *, statekit: bool, drained: int = 0) -> None:
        found = check(db).problems(overdue, statekit=statekit, drained=drained)
        results.problems += [f"{db.label} {label}: {p}" for p in found]

    def run_raw() -> None:
        seconds, marked = timed(lambda: raw_sweep(db))
        results.add(RAW, seconds, marked)
        if marked != overdue:
            results.problems.append(f"{db.label} raw: marked {marked}, want {overdue}")
        verify("raw", statekit=False)
        reset(db)

    def run_raw_writes() -> None:
        seconds, marked = timed(lambda: raw_writes_sweep(db))
        results.add(WRITES, seconds, marked)
        verify("raw writes", statekit=True)
        reset(db)

    def run_statekit() -> None:
        sweeper, runner = db.sweeper()
        seconds, result = timed(lambda: statekit_deadlines(sweeper, runner))
        results.add(STATEKIT, seconds, overdue)
        results.lost_races += result.lost_races
        verify("statekit", statekit=True)
        if DRAIN not in results.rounds:  # once: the drain is slow and steady
            tidy(db)
            claims = iter(range(drain_limit // BATCH + 1))
            drained = SweepResult()
            seconds, _ = timed(
                lambda: sweeper._drain(drained, lambda: next(claims) >= drain_limit // BATCH)
            )
            results.add(DRAIN, seconds, drained.compensations_run)
            verify("statekit drain", statekit=True, drained=drained.compensations_run)
        reset(db)

    def run_processes(n: int) -> Callable[[], None]:
        def run() -> None:
            seconds, total = sweep_in_processes(db, n)
            results.add(ONE if n == 1 else TWO, seconds, total["marked_stuck"])
            results.worker_cpu.setdefault(n, []).append(total["cpu_ms"] / 1000)
            results.lost_races += total["lost_races"]
            verify(f"{n} process(es)", statekit=True)
            reset(db)

        return run

    contestants = [run_raw, run_raw_writes, run_statekit]
    if db.postgres:
        contestants += [run_processes(1), run_processes(2)]
    for i in range(rounds):
        shift = i % len(contestants)
        for contestant in contestants[shift:] + contestants[:shift]:
            contestant()
        progress(
            f"{db.label}: round {i + 1}/{rounds}: "
            + ", ".join(f"{k} {v[i]:.2f} s" for k, v in results.rounds.items() if len(v) > i)
        )
        loads.append(os.getloadavg()[0])
    return results


def poll_cases(db: Database) -> list[Case]:
    """Empty polls at EARLY, when nothing is due yet."""
    raw = text(
        "SELECT id FROM sweep_jobs WHERE state_deadline_at <= :now "
        "ORDER BY state_deadline_at, id LIMIT :n"
    ).bindparams(bindparam("now", type_=UTCDateTime()))
    sweeper, _ = db.sweeper(EARLY)

    def make(n: int) -> list[None]:
        return [None] * n

    def run_raw(items: list[None]) -> None:
        for _ in items:
            with db.engine.connect() as conn:
                conn.execute(raw, {"now": EARLY, "n": BATCH}).all()

    def run_claim(items: list[None]) -> None:
        for _ in items:
            with db.store.overdue_batch(NAME, EARLY, BATCH):
                pass

    def run_once(items: list[None]) -> None:
        for _ in items:
            sweeper.run_once()

    group = f"poll:{db.label}"
    return [
        Case(group, "raw SQL", "SELECT id ... WHERE deadline <= now LIMIT n", make, run_raw),
        Case(group, "statekit", "overdue claim (overdue_batch, nothing due)", make, run_claim),
        Case(group, "statekit", "Sweeper.run_once() (claim + outbox, nothing due)", make, run_once),
    ]


def _measurement(seconds: list[float], per: int) -> Measurement:
    samples = tuple(s * 1e9 / per for s in seconds)
    return Measurement(statistics.median(samples), samples, per)


def _rate(row: Row) -> float:
    return 1e9 / row.median_ns


def run_database(
    db: Database, config: Config, rounds: int, report: Report, loads: list[float]
) -> None:
    """Load, count statements, sweep `rounds` times, poll; add rows, targets and notes."""
    label = db.label
    progress(f"{label}: loading {db.size.total:,} rows")
    loaded = create_and_load(db)
    loads.append(os.getloadavg()[0])
    progress(f"{label}: loaded in {loaded:.1f} s; counting statements")
    sweep_stmts, drain_stmts = count_statements(db)
    results = sweep_rounds(db, rounds, loads)
    progress(f"{label}: empty polls")
    with counting(db.engine) as poll_counts:
        db.sweeper(EARLY)[0].run_once()
    cases = poll_cases(db)
    polls = measure(cases, config)
    loads.append(os.getloadavg()[0])
    overdue = db.size.overdue

    group = f"sweep:{label}"
    report.groups[group] = (
        f"Deadline sweep, {label}: {overdue:,} overdue among {db.size.total:,} "
        f"(batches of {BATCH}); median/op is per instance",
        "median / raw SQL median; >1 is slower than the raw marking",
    )
    operations = {
        RAW: ("raw SQL", "UPDATE ... WHERE id IN (SELECT due LIMIT n) per batch: marking only"),
        WRITES: ("raw SQL", "the same writes as statekit, hand-written, nothing per row in Python"),
        STATEKIT: ("statekit", "Sweeper deadline phase: claim, @stuck row, compensation row"),
        DRAIN: ("statekit", "drain (2nd half of run_once): run compensation, @compensated"),
        ONE: ("statekit", "deadline phase in 1 sweeper process"),
        TWO: ("statekit", "deadline phase in 2 sweeper processes (combined)"),
    }
    rows: dict[str, Row] = {}
    for name, seconds in results.rounds.items():
        library, operation = operations[name]
        measured = _measurement(seconds, results.instances[name])
        rows[name] = Row(group, library, operation, measured)
    for row in rows.values():
        row.ratio = row.median_ns / rows[RAW].median_ns
    report.rows += rows.values()

    poll_group = f"poll:{label}"
    report.groups[poll_group] = (
        f"Empty poll, {label}: nothing due on the {db.size.total:,}-row table",
        "median / raw SQL median",
    )
    poll_rows = [
        Row(poll_group, c.library, c.operation, m) for c, m in zip(cases, polls, strict=True)
    ]
    for row in poll_rows:
        row.ratio = row.median_ns / poll_rows[0].median_ns
    report.rows += poll_rows

    raw_rate, statekit_rate = _rate(rows[RAW]), _rate(rows[STATEKIT])
    report.targets.append(
        Target(
            f"{label}: statekit sweep throughput",
            ">= 0.5x raw SQL rows/s",
            f"{statekit_rate:,.0f} / {raw_rate:,.0f} rows/s = {statekit_rate / raw_rate:.2f}x",
            statekit_rate >= 0.5 * raw_rate,
        )
    )
    writes_rate = _rate(rows[WRITES])
    report.notes.append(
        f"{label}: the writes alone (hand-written, no Python per row) reach "
        f"{writes_rate / raw_rate:.2f}x the marking-only raw SQL; statekit reaches "
        f"{statekit_rate / writes_rate:.2f}x of those hand-written writes"
    )
    if ONE in rows:
        one, two = _rate(rows[ONE]), _rate(rows[TWO])
        report.targets.append(
            Target(
                f"{label}: two sweepers",
                ">= 1.5x one sweeper's rows/s",
                f"{two:,.0f} / {one:,.0f} rows/s = {two / one:.2f}x",
                two >= 1.5 * one,
            )
        )
    poll_ratio = poll_rows[2].median_ns / poll_rows[0].median_ns
    report.targets.append(
        Target(
            f"{label}: empty poll",
            "Sweeper.run_once() <= 2x the raw query",
            f"{poll_rows[2].median_ns / 1e6:.3f} ms / {poll_rows[0].median_ns / 1e6:.3f} ms "
            f"= {poll_ratio:.2f}x",
            poll_ratio <= 2.0,
        )
    )
    report.targets.append(
        Target(
            f"{label}: every instance marked exactly once",
            "one @stuck row, one compensation row, one run each",
            "ok" if not results.problems else "; ".join(results.problems[:5]),
            not results.problems,
        )
    )
    for n, cpu in sorted(results.worker_cpu.items()):
        report.notes.append(
            f"{label}: CPU seconds of the sweeper process(es), {n} process(es): "
            + ", ".join(f"{x:.1f}" for x in cpu)
            + f" (wall: {', '.join(f'{x:.1f}' for x in results.rounds[ONE if n == 1 else TWO])})"
        )
    throughput = ", ".join(f"{name} {_rate(row):,.0f}/s" for name, row in rows.items())
    report.notes += [
        f"{label}: rows/s (median of {rounds} rounds): {throughput}",
        f"{label}: loaded {db.size.total:,} rows in {loaded:.1f} s; "
        f"lost races {results.lost_races}",
        f"{label}: statekit deadline phase: {sweep_stmts}",
        f"{label}: statekit drain: {drain_stmts}",
        f"{label}: empty Sweeper.run_once(): {per_instance(poll_counts, 1).split(' per ')[0]}"
        f" ({', '.join(f'{k} {v}' for k, v in sorted(poll_counts.items()))})",
        *explain(db),
    ]


def run(config: Config) -> Report:
    """Both databases, one after the other (PostgreSQL is skipped if it does not answer)."""
    quick = config == Config.quick()
    size = QUICK if quick else FULL
    rounds = 2
    quiet()
    report = Report(name="sweep", groups={})
    loads: list[float] = [os.getloadavg()[0]]
    with postgres_database() as url:
        if url is None:
            report.notes.append(f"PostgreSQL skipped: nothing answers at {POSTGRES_URL}")
        else:
            engine = make_engine(url)
            try:
                run_database(
                    Database("PostgreSQL", url, engine, size), config, rounds, report, loads
                )
            finally:
                engine.dispose()
    with tempfile.TemporaryDirectory(prefix="statekit-bench-sweep-") as directory:
        url = f"sqlite+pysqlite:///{Path(directory) / 'sweep.db'}"
        engine = make_engine(url)
        try:
            run_database(Database("SQLite", url, engine, size), config, rounds, report, loads)
        finally:
            engine.dispose()
    report.environment = env = environment(PACKAGES)
    report.notes += [
        "1-minute load average: " + ", ".join(f"{x:.2f}" for x in loads),
        "versions: " + ", ".join(f"{k} {v}" for k, v in env.items()),
    ]
    return report


# -- profiling ---------------------------------------------------------------------------


def profile(backend: str, size: Size, top: int) -> None:
    """Statement counts and a cProfile of statekit's deadline phase over `size`."""
    quiet()
    with database_url(backend) as url:
        engine = make_engine(url)
        db = Database(backend, url, engine, size)
        try:
            print(f"loaded {size.total:,} rows in {create_and_load(db):.1f} s")
            sweep_stmts, drain_stmts = count_statements(db)
            print(f"deadline phase: {sweep_stmts}\ndrain: {drain_stmts}")
            seconds, marked = timed(lambda: raw_sweep(db))
            print(f"raw SQL: {marked} in {seconds:.3f} s = {marked / seconds:,.0f} rows/s")
            reset(db)
            for clock_name, timer in (("wall", time.perf_counter), ("CPU", time.process_time)):
                sweeper, runner = db.sweeper()
                profiler = cProfile.Profile(timer)
                cpu = time.process_time()
                seconds, result = timed(
                    lambda: profiler.runcall(statekit_deadlines, sweeper, runner)  # noqa: B023
                )
                cpu = time.process_time() - cpu
                print(
                    f"statekit under cProfile ({clock_name} timer): {result.marked_stuck} in "
                    f"{seconds:.3f} s wall, {cpu:.3f} s CPU = "
                    f"{result.marked_stuck / seconds:,.0f} rows/s"
                )
                for order in ("tottime", "cumulative"):
                    out = io.StringIO()
                    stats = pstats.Stats(profiler, stream=out).sort_stats(order)
                    stats.print_stats(top)
                    if order == "cumulative":
                        stats.print_stats("statekit/", top)
                    print(out.getvalue())
                reset(db)
        finally:
            engine.dispose()


@contextmanager
def database_url(backend: str) -> Iterator[str]:
    if backend == "postgresql":
        with postgres_database() as url:
            if url is None:
                raise SystemExit(f"PostgreSQL does not answer at {POSTGRES_URL}")
            yield url
        return
    with tempfile.TemporaryDirectory(prefix="statekit-bench-sweep-") as directory:
        yield f"sqlite+pysqlite:///{Path(directory) / 'sweep.db'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sweep")
    parser.add_argument("--worker", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--profile", choices=("postgresql", "sqlite"))
    parser.add_argument("--quick", action="store_true", help="100,000 rows / 1,000 overdue")
    parser.add_argument("--top", type=int, default=25, help="profile lines to print")
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    if args.profile:
        profile(args.profile, QUICK if args.quick else FULL, args.top)
        return 0
    print(render(run(Config.quick() if args.quick else Config())))
    return 0


if __name__ == "__main__":
    with suppress(BrokenPipeError):
        raise SystemExit(main())
