"""Every query of an idle sweeper reads an index whose size follows due work, on SQLite,
PostgreSQL and MariaDB, once the database has statistics and the outbox holds 10,000
done compensations (history, not work): the plan of each statement, as sent, names
statekit's indexes and no full scan of the outbox."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, insert, text

from statekit.store.sqlalchemy import SQLAlchemyStore
from statekit.store.sqlalchemy.dialects import PARTIAL_INDEX_DIALECTS
from tests.sql_support import BACKENDS, fresh_database
from tests.sweep_support import JobRow, JobWorkflow, job_engine

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DONE_ROWS = 10_000
OPEN_INDEXES = {"ix_statekit_compensations_due", "ix_statekit_compensations_lease"}
PRIMARY_KEY = "PRIMARY KEY"
"""How `_outbox_reads` names a read of rows by their primary key."""


@pytest.fixture(params=BACKENDS)
def loaded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLAlchemyStore]:
    """A store whose outbox holds DONE_ROWS done compensations (with their attempt
    rows) and nothing due, with statistics gathered."""
    with fresh_database(request.param, tmp_path) as url:
        engine = job_engine(url)
        try:
            store = SQLAlchemyStore(engine, {JobWorkflow.machine: JobRow})
            _load(engine, store)
            yield store
        finally:
            engine.dispose()


def _load(engine: Engine, store: SQLAlchemyStore) -> None:
    c, a = store.tables.compensations, store.tables.attempts
    old = NOW - timedelta(days=30)
    done = {"status": "done", "attempts": 1, "max_attempts": 3, "step_seq": 1}
    with engine.begin() as conn:
        conn.execute(
            insert(JobRow.__table__),  # type: ignore[arg-type]
            [
                {"id": f"j{i}", "state": "first", "state_version": 1, "state_entered_at": old}
                | {"state_deadline_at": NOW + timedelta(hours=1), "frozen": False}
                for i in range(200)
            ],
        )
        conn.execute(
            insert(c),
            [
                {"id": i, "entity_type": "job", "entity_key": f"k{i}", "action": "undo_first"}
                | {"event": "advance", "next_attempt_at": old, "created_at": old}
                | {"updated_at": old, **done}
                for i in range(1, DONE_ROWS + 1)
            ],
        )
        conn.execute(
            insert(a),
            [
                {"compensation_id": i, "attempt": 1, "at": old, "succeeded": True}
                for i in range(1, DONE_ROWS + 1)
            ],
        )
    with engine.connect() as conn:
        name = engine.dialect.name
        if name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
        elif name == "sqlite":
            conn.execute(text("ANALYZE"))
            conn.commit()
        else:
            for table in ("jobs", c.name, a.name):
                conn.execute(text(f"ANALYZE TABLE {table}")).all()


def _sent(
    engine: Engine, operation: Any, verbs: tuple[str, ...] = ("SELECT", "(SELECT", "WITH")
) -> list[tuple[str, Any]]:
    """The statements starting with one of `verbs` (reads by default) that
    `operation()` sends, with their parameters."""
    sent: list[tuple[str, Any]] = []

    def record(conn: object, cursor: object, statement: str, params: Any, *_: object) -> None:
        if statement.lstrip().upper().startswith(verbs):
            sent.append((statement, params))

    event.listen(engine, "before_cursor_execute", record)
    try:
        operation()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return sent


def _plan(engine: Engine, statement: str, params: Any) -> list[tuple[Any, ...]]:
    name = engine.dialect.name
    prefix = "EXPLAIN QUERY PLAN " if name == "sqlite" else "EXPLAIN "
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(prefix + statement.replace(" FOR UPDATE SKIP LOCKED", ""), params)
        return [tuple(row) for row in cursor.fetchall()]
    finally:
        raw.close()


def _outbox_reads(engine: Engine, plan: list[tuple[Any, ...]]) -> list[str]:
    """How each step of `plan` reads statekit_compensations: the index name, or
    "FULL SCAN"."""
    name = engine.dialect.name
    found = []
    if name in ("mysql", "mariadb"):  # id, select_type, table, type, possible_keys, key, ...
        for row in plan:
            if row[2] in ("statekit_compensations", "newer"):
                found.append("FULL SCAN" if row[3] == "ALL" or row[5] is None else str(row[5]))
        return found
    for row in plan:
        line = str(row[-1] if name == "sqlite" else row[0])
        if name == "sqlite":
            read = re.search(r"(?:SCAN|SEARCH) statekit_compensations(?: AS \w+)?(.*)", line)
        else:
            read = re.search(r"Scan(.*) on statekit_compensations", line)
        if read is None:
            continue
        if "USING INTEGER PRIMARY KEY" in read.group(1):  # SQLite's rowid
            found.append(PRIMARY_KEY)
            continue
        index = re.search(r"USING (?:COVERING )?INDEX (\w+)|using (\w+)", read.group(1))
        found.append("FULL SCAN" if index is None else index.group(1) or index.group(2))
    return [
        PRIMARY_KEY if read in ("PRIMARY", "statekit_compensations_pkey") else read
        for read in found
    ]


def test_the_idle_poll_reads_the_due_indexes(loaded: SQLAlchemyStore) -> None:
    engine = loaded.engine
    assert loaded.due(["job"], NOW) == set()
    (probe,) = _sent(engine, lambda: loaded.due(["job"], NOW))
    plan = _plan(engine, *probe)
    reads = _outbox_reads(engine, plan)
    assert len(reads) == 2, (reads, plan)
    assert set(reads) <= OPEN_INDEXES, (reads, plan)
    if engine.dialect.name in PARTIAL_INDEX_DIALECTS:  # partial: one per way of being due
        assert sorted(reads) == sorted(OPEN_INDEXES), (reads, plan)
    flat = " ".join(" ".join(map(str, row)) for row in plan)
    assert "ix_jobs_statekit_due" in flat, plan


def test_an_empty_claim_reads_the_due_indexes(loaded: SQLAlchemyStore) -> None:
    """One statement per way of being due (an UPDATE that picks its rows by a subquery
    on PostgreSQL and SQLite, a SELECT on MariaDB); nothing claimed. The UPDATE finds
    the picked rows by primary key; the pick reads a due index."""
    engine = loaded.engine
    queries = _sent(
        engine,
        lambda: loaded.claim_compensations(NOW, 1, timedelta(minutes=5)),
        ("SELECT", "UPDATE"),
    )
    assert len(queries) == 2
    for statement, params in queries:
        plan = _plan(engine, statement, params)
        reads = [read for read in _outbox_reads(engine, plan) if read != PRIMARY_KEY]
        assert reads, plan
        assert "FULL SCAN" not in reads, (reads, plan)
        assert reads[0] in OPEN_INDEXES, (reads, plan)


def test_the_idle_poll_is_compiled_once(loaded: SQLAlchemyStore) -> None:
    """The time changes every pass; the statement does not (SQLAlchemy's cache hits)."""
    hits: list[Any] = []

    def record(
        conn: object, cursor: object, statement: str, params: Any, context: Any, *_: object
    ) -> None:
        if "EXISTS" in statement:  # not SQLite's BEGIN
            hits.append(context.cache_hit)

    loaded.due(["job"], NOW)
    event.listen(loaded.engine, "after_cursor_execute", record)
    try:
        for minute in range(3):
            assert loaded.due(["job"], NOW + timedelta(minutes=minute)) == set()
    finally:
        event.remove(loaded.engine, "after_cursor_execute", record)
    assert [str(hit) for hit in hits] == ["CacheStats.CACHE_HIT"] * 3


def test_an_empty_overdue_claim_reads_the_deadline_index(loaded: SQLAlchemyStore) -> None:
    engine = loaded.engine

    def claim() -> None:
        with loaded.overdue_batch("job", NOW, 100) as batch:
            assert batch.snapshots == []

    claim()
    (query,) = _sent(engine, claim)
    plan = _plan(engine, *query)
    assert "ix_jobs_statekit_due" in " ".join(" ".join(map(str, row)) for row in plan), plan
