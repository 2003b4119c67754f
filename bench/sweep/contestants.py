"""The sweep benchmark's contestants in this process: the raw-SQL marking, statekit's
writes by hand, and statekit's deadline phase."""

from __future__ import annotations

import json
from collections.abc import Callable
from time import perf_counter_ns
from typing import Any

from sqlalchemy import bindparam, text

from bench.sweep.schema import BATCH, NOW, REASON, Database
from statekit import Runner, Sweeper
from statekit.store.sqlalchemy import UTCDateTime
from statekit.sweeper import SweepResult


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
                rows: int = conn.execute(text(_PG_WRITES).bindparams(now), params).scalar_one()
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
    sweeper.deadlines.sweep(runner, result, lambda: False)
    return result


def timed(operation: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds taken by `operation()` and its result."""
    started = perf_counter_ns()
    value = operation()
    return (perf_counter_ns() - started) / 1e9, value
