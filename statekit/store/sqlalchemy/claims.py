"""The statements of `SQLAlchemyStore`'s compensation outbox that run per claim and
per attempt, built once per store (`OutboxOperations`) with everything that changes
bound: the claim, one statement per way of being due where the database allows, and
the record of an attempt, one statement on PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Boolean,
    Integer,
    Table,
    Text,
    and_,
    bindparam,
    exists,
    func,
    insert,
    literal_column,
    null,
    select,
    true,
    update,
)

from statekit.compensation import TASK_COLUMNS
from statekit.store.sqlalchemy.tables import UTCDateTime

__all__ = [
    "OPEN",
    "Claim",
    "Finish",
    "claim_statements",
    "compensation_due",
    "finish_statements",
    "locked_completion",
]

OPEN = ("pending", "running", "dead")
"""The statuses of a compensation still to settle: they block older steps."""
OPEN_SQL: tuple[Any, ...] = tuple(literal_column(f"'{status}'") for status in OPEN)
"""`OPEN` written into the statements run per claim and per task: a bound list
would be expanded by SQLAlchemy on every execution."""


@dataclass(frozen=True)
class Claim:
    """A claim's statements, one per way of being due (expired leases, then pending).

    With `takes` (PostgreSQL, SQLite), each is one UPDATE whose subquery picks (and
    locks, SKIP LOCKED) up to `limit` due rows and that returns them: a claim of k
    tasks is one statement, self-committing on PostgreSQL. Otherwise `queries` pick
    the rows and `update` takes them (returning them where the server can, else
    `read` reads them back) in one transaction."""

    takes: tuple[Any, ...]
    queries: tuple[Any, ...]
    update: Any
    read: Any
    returning: bool
    single: Any = None
    """With `takes`: the take of one pending task, `LIMIT 1` written out."""


@dataclass(frozen=True)
class Finish:
    """The statements recording an attempt: the claim-checked UPDATE, the attempt row's
    INSERT, and the count of the instance's open tasks after a completion; or, with
    `combined` (PostgreSQL), all three as one statement (see `finish_statements`)."""

    update: Any
    attempt: Any
    remaining: Any
    combined: Any = None


def claim_statements(c: Table, *, skip_locked: bool, one_statement: bool, returning: bool) -> Claim:
    """The claim's statements on the outbox `c` (see `Claim`): `skip_locked` where the
    server has it, `one_statement` where an UPDATE may pick its rows with a subquery
    of its own table (`Capabilities.one_statement_claim`), `returning` where an
    UPDATE returns rows."""
    newer = c.alias("newer")
    blocked = exists().where(
        newer.c.entity_type == c.c.entity_type,
        newer.c.entity_key == c.c.entity_key,
        newer.c.step_seq > c.c.step_seq,
        newer.c.status.in_(OPEN_SQL),
    )
    now = bindparam("now", type_=UTCDateTime())

    def pick(due: Any, limit: Any) -> Any:
        """The ids of up to `limit` tasks due in the way `due`, soonest first."""
        query = select(c.c.id).where(due, ~blocked).order_by(c.c.next_attempt_at).limit(limit)
        return query.with_for_update(skip_locked=True) if skip_locked else query

    # One query per way of being due (expired leases first), each an ordered range
    # of the due index (status, next_attempt_at) that stops at `limit`: their OR, or
    # a sort key the index lacks, would read and sort every due row on each claim.
    # (Ties come in index order: by id on SQLite and InnoDB, by row on PostgreSQL.)
    pending, expired = compensation_due(c, now)
    queries = [pick(due, bindparam("limit", type_=Integer())) for due in (expired, pending)]
    columns = [c.c[n] for n in TASK_COLUMNS]
    # Literals, not SQLAlchemy's own parameters: the claim also runs as a CTE beside
    # the completion's UPDATE of the same table (`locked_completion`), whose SET names
    # the same columns.
    take = update(c).values(
        status=literal_column("'running'"),
        attempts=c.c.attempts + literal_column("1"),
        claim_token=bindparam("token"),
        lease_until=bindparam("lease_until", type_=UTCDateTime()),
        updated_at=now,
    )
    if one_statement:
        takes = tuple(
            take.where(c.c.id.in_(query.scalar_subquery())).returning(*columns) for query in queries
        )
        # One pending task, with LIMIT 1 written out: the chained claim of a
        # completion (`locked_completion`), whose text then never changes, so that the
        # server may plan the prepared statement once rather than per execution.
        one = pick(pending, literal_column("1"))
        single = take.where(c.c.id.in_(one.scalar_subquery())).returning(*columns)
        return Claim(takes, (), None, None, True, single)
    ids = c.c.id.in_(bindparam("ids", expanding=True))
    update_ = take.where(ids, c.c.status.in_(("pending", "running")))
    if returning:
        update_ = update_.returning(*columns)
    read = select(*columns).where(ids, c.c.claim_token == bindparam("token"))
    return Claim((), tuple(queries), update_, read, returning)


def finish_statements(c: Table, attempts: Table, *, combine: bool) -> Finish:
    """The statements recording an attempt at a task of `c` in `attempts` (see
    `Finish`); `combine` (PostgreSQL) builds the one-statement form too."""
    when = UTCDateTime()
    # No parameter is named after a column of the outbox, and none is SQLAlchemy's own:
    # beside this UPDATE, `locked_completion` runs a claim's UPDATE of the same table
    # in one statement, to which SQLAlchemy would add a SET of any such column.
    update_ = (
        update(c)
        .where(
            c.c.id == bindparam("id_"),
            c.c.claim_token == bindparam("held_token"),
            c.c.status == literal_column("'running'"),
        )
        .values(
            status=bindparam("new_status", type_=c.c.status.type),
            last_error=bindparam("error"),
            lease_until=null(),
            claim_token=null(),
            updated_at=bindparam("now", type_=when),
            next_attempt_at=func.coalesce(bindparam("retry_at", type_=when), c.c.next_attempt_at),
        )
    )
    remaining = select(func.count()).where(
        c.c.entity_type == bindparam("type_"),
        c.c.entity_key == bindparam("key_"),
        c.c.status.in_(OPEN_SQL),
    )
    if not combine:
        return Finish(update_, insert(attempts), remaining)
    # One statement: the UPDATE and the attempt's INSERT as data-modifying CTEs, and
    # the open tasks counted in the statement's snapshot, which still sees this
    # task open (a CTE's changes are invisible to the rest of its statement).
    combined = select(*_recorded_and_remaining(update_, c, attempts, remaining)[1])
    return Finish(update_, insert(attempts), remaining, combined)


def _recorded_and_remaining(
    update_: Any, c: Table, attempts: Table, remaining: Any
) -> tuple[Any, list[Any]]:
    """`update_` (the claim-checked UPDATE of a task) and the INSERT of its attempt
    row as data-modifying CTEs: the first (`done`, the task's id when it was
    updated), and two columns: how many attempt rows were written (1, or 0 when the
    claim was lost) and the instance's open tasks before it."""
    done = update_.returning(c.c.id).cte("done")
    row = select(
        done.c.id,
        bindparam("attempt", type_=Integer()),
        bindparam("now", type_=UTCDateTime()),
        bindparam("succeeded", type_=Boolean()),
        bindparam("error", type_=Text()),
    )
    columns = ["compensation_id", "attempt", "at", "succeeded", "error"]
    recorded = (
        insert(attempts).from_select(columns, row).returning(attempts.c.attempt).cte("recorded")
    )
    return done, [
        select(func.count()).select_from(recorded).scalar_subquery(),
        remaining.scalar_subquery(),
    ]


def locked_completion(
    finish: Finish, c: Table, attempts: Table, binding: Any, take: Any = None
) -> Any:
    """PostgreSQL: the first statement of a completion transaction, in place of the
    row's lock and the completion (`LockedCompletion`): lock the entity's row (key
    `k_`) and read its snapshot, and complete the task only if the row is still at
    version `expected_version` and stuck; returns the snapshot's columns, then the
    attempt rows written and the open tasks before the completion. With `take` (a
    claim's UPDATE ... RETURNING of the task columns, see `claim_statements`), it
    also claims, only when the task was completed, and returns the claimed task's
    columns on the same row (NULLs when none was due). The claim runs in the
    statement's snapshot, which still shows this task running: it never takes an
    older step of the same instance."""
    held = binding.locked_snapshot.cte("held")
    version = held.c[binding.columns["version"].name]
    stuck_at = held.c[binding.columns["stuck_at"].name]
    unmoved = exists().where(version == bindparam("expected_version"), stuck_at.is_not(None))
    done, counts = _recorded_and_remaining(
        finish.update.where(unmoved), c, attempts, finish.remaining
    )
    if take is None:
        return select(*held.c, *counts)
    claimed = take.where(exists(select(done.c.id))).cte("claimed")
    return select(*held.c, *counts, *claimed.c).select_from(held.outerjoin(claimed, true()))


def compensation_due(c: Table, now: Any) -> tuple[Any, Any]:
    """The two ways a compensation is due: pending and its next attempt has come, or
    running and its claim's lease has run out (its sweeper died).

    Each is a range of its own index (`ix_<prefix>compensations_due` and `_lease`),
    partial where the database allows. The statuses are literals, not parameters:
    SQLite (and a generic PostgreSQL plan) uses a partial index only when the query's
    condition visibly implies the index's."""
    return (
        and_(c.c.status == literal_column("'pending'"), c.c.next_attempt_at <= now),
        and_(c.c.status == literal_column("'running'"), c.c.lease_until <= now),
    )
