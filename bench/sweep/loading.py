"""The sweep benchmark's database: created and loaded, put back between contestants,
and checked after each sweep."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from time import perf_counter_ns
from typing import Any

from sqlalchemy import Engine, bindparam, func, insert, select, text

from bench._databases import Databases
from bench.sweep.schema import (
    EARLY,
    HISTORY_COLUMNS,
    JOB_COLUMNS,
    NAME,
    NOW,
    TIMEOUT,
    Database,
    SweepBase,
    SweepJob,
    history_rows,
    job_rows,
    overdue_deadline,
)
from statekit.store.sqlalchemy import UTCDateTime
from statekit.store.sqlalchemy.tables import StatekitTables

DATABASE_PREFIX = "statekit_bench"
"""The PostgreSQL database is `statekit_bench_sweep`, the SQLite file `sweep.db`."""
LOAD_CHUNK = 10_000
"""Rows per `executemany` call when loading SQLite (the rows are generated as they go)."""


@contextmanager
def scratch_database(dialect: str) -> Iterator[str]:
    """Yield the URL of a fresh, empty database on `dialect` (removed afterwards)."""
    with Databases(dialect, DATABASE_PREFIX) as databases:
        yield databases.make("sweep").url


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
            for chunk in _chunks(_sqlite_row(row) for row in job_rows(db.size)):
                cursor.executemany(f"INSERT INTO sweep_jobs ({jobs}) VALUES ({marks})", chunk)
            marks = ", ".join("?" * len(HISTORY_COLUMNS))
            for chunk in _chunks(_sqlite_row(row) for row in history_rows(db.size)):
                cursor.executemany(
                    f"INSERT INTO statekit_transitions ({history}) VALUES ({marks})", chunk
                )
            cursor.execute("COMMIT")
            cursor.execute("ANALYZE")
        cursor.close()
    finally:
        raw.close()
    return (perf_counter_ns() - started) / 1e9


def _chunks(rows: Iterable[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    """`rows` as lists of up to LOAD_CHUNK rows (`itertools.batched` from Python 3.12)."""
    it = iter(rows)
    while chunk := list(islice(it, LOAD_CHUNK)):
        yield chunk


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


def load_done_outbox(engine: Engine, tables: StatekitTables, done: int) -> None:
    """Add `done` done compensations settled a month before EARLY, with one attempt row
    each (an outbox that has grown with history), then gather statistics (`ANALYZE`),
    as applications do."""
    c, a = tables.compensations, tables.attempts
    old = EARLY - timedelta(days=30)
    with engine.connect() as conn:
        first = int(conn.execute(select(func.coalesce(func.max(c.c.id), 0))).scalar() or 0)
    row = {"entity_type": NAME, "step_seq": 1, "action": "release_slot", "event": "start"}
    row |= {"status": "done", "attempts": 1, "max_attempts": 3, "next_attempt_at": old}
    row |= {"created_at": old, "updated_at": old}
    with engine.begin() as conn:
        for start in range(first, first + done, 10_000):
            ids = range(start + 1, min(start + 10_000, first + done) + 1)
            conn.execute(insert(c), [{"id": i, "entity_key": f"old-{i}", **row} for i in ids])
            attempt = {"attempt": 1, "at": old, "succeeded": True}
            conn.execute(insert(a), [{"compensation_id": i, **attempt} for i in ids])
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
        else:
            conn.execute(text("ANALYZE"))
            conn.commit()
