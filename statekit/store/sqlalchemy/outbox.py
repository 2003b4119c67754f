"""The compensation outbox of `SQLAlchemyStore`: scheduling, claiming due tasks, and
recording each attempt, plus what the drain needs around a handler.

A claim is a short transaction of its own (`FOR UPDATE SKIP LOCKED` where the server
has it), committed before the handlers run, that takes up to as many tasks as the
drain has free slots (at most one per instance), each with its lease; on PostgreSQL
and SQLite it is one statement. Handlers run with no transaction open (`HandlerUnit`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    Table,
    and_,
    bindparam,
    exists,
    func,
    insert,
    literal_column,
    orm,
    select,
    update,
)
from sqlalchemy.orm import Session, object_session

from statekit.clock import Clock, SystemClock
from statekit.compensation import CompensationTask
from statekit.errors import StoreError
from statekit.store.sqlalchemy.connections import reading
from statekit.store.sqlalchemy.dialects import capabilities
from statekit.store.sqlalchemy.draining import DatabaseClock, HandlerUnit, read_options
from statekit.store.sqlalchemy.errors import wrap
from statekit.store.sqlalchemy.lives import lost_claim
from statekit.store.sqlalchemy.marking import insert_ignoring_duplicates
from statekit.store.sqlalchemy.tables import StatekitTables, UTCDateTime

__all__ = ["OutboxOperations", "compensation_due", "supports_skip_locked"]

_EXPIRY_PROBE = timedelta(seconds=1)
"""How often (in the claimer's clock) a claim also looks for leases that ran out: a
lease lasts minutes, so a second more before it is taken over costs nothing, while a
drain claiming hundreds of tasks a second skips one query per claim."""

_OPEN = ("pending", "running", "dead")
_OPEN_SQL = tuple(literal_column(f"'{status}'") for status in _OPEN)
"""`_OPEN` written into the statements run per claim and per task: a bound list
would be expanded by SQLAlchemy on every execution."""
_TASK_COLUMNS = (
    "entity_type",
    "entity_key",
    "step_seq",
    "action",
    "event",
    "max_attempts",
    "status",
    "attempts",
    "next_attempt_at",
    "last_error",
    "claim_token",
    "id",
)


@dataclass(frozen=True)
class _Claim:
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


@dataclass(frozen=True)
class _Finish:
    """The statements recording an attempt: the claim-checked UPDATE, the attempt row's
    INSERT, and the count of the instance's open tasks after a completion."""

    update: Any
    attempt: Any
    remaining: Any


def supports_skip_locked(engine: Engine) -> bool:
    """Whether the server behind `engine` has `SELECT ... FOR UPDATE SKIP LOCKED`."""
    return capabilities(engine, connect=True).skip_locked


class OutboxOperations:
    """Mixed into `SQLAlchemyStore` (through `SweepOperations`): the outbox statements."""

    engine: Engine
    writer: Engine  # `engine` for statekit's write units (see sqlite.py)
    tables: StatekitTables

    def binding(self, entity_type: str) -> Any:  # provided by SQLAlchemyStore
        raise NotImplementedError

    @cached_property
    def skip_locked(self) -> bool:
        """Whether claims use SKIP LOCKED on this store's server (detected once)."""
        return supports_skip_locked(self.engine)

    @cached_property
    def _sweep_engine(self) -> Engine:
        """The engine for sweeper transactions: READ COMMITTED on MySQL/MariaDB, so a
        claim locks only the rows it takes (REPEATABLE READ would also lock the gaps
        between them and stall other sweepers' inserts)."""
        isolation = capabilities(self.engine).claim_isolation
        if isolation is not None:
            return self.writer.execution_options(isolation_level=isolation)
        return self.writer

    @cached_property
    def _read(self) -> Mapping[str, Any]:
        """How a `HandlerUnit` reads (see `read_options`)."""
        return read_options(self.engine)

    @cached_property
    def _sweep_sessions(self) -> orm.sessionmaker[Session]:
        return orm.sessionmaker(bind=self._sweep_engine, expire_on_commit=False)

    def add_compensations(
        self, entity: object, tasks: Sequence[CompensationTask], now: datetime
    ) -> None:
        """Schedule `tasks` in the entity's transaction; existing ones are left alone."""
        session = object_session(entity)
        if session is None:
            raise StoreError("compensations are scheduled in the entity's transaction")
        self.add_compensations_on(session.connection(), tasks, now)

    def add_compensations_on(
        self, conn: Connection, tasks: Sequence[CompensationTask], now: datetime
    ) -> None:
        """Schedule `tasks` on `conn`'s transaction; existing ones are left alone."""
        if not tasks:
            return
        table = self.tables.compensations
        rows = [
            {
                "entity_type": t.entity_type,
                "entity_key": t.key,
                "step_seq": t.step_seq,
                "action": t.action,
                "event": t.event,
                "status": "pending",
                "attempts": 0,
                "max_attempts": t.max_attempts,
                "next_attempt_at": t.next_attempt_at or now,
                "created_at": now,
                "updated_at": now,
            }
            for t in tasks
        ]
        conn.execute(insert_ignoring_duplicates(table, capabilities(self.engine)), rows)

    def claim_compensations(
        self, now: datetime, limit: int, lease: timedelta
    ) -> list[CompensationTask]:
        """Claim up to `limit` due tasks (newest step first per instance, at most one
        per instance) for this sweeper: each becomes `running` with one more attempt
        and a lease, committed before any handler runs. A task whose lease expired is
        claimed again (first); this store looks for those at most once a second of
        `now`. The claim costs per batch, not per task: one statement per way of
        being due on PostgreSQL and SQLite (see `_Claim`)."""
        claim = self._claim_statements
        last = self.__dict__.get("_last_expiry_probe")
        probe = last is None or not last <= now < last + _EXPIRY_PROBE
        if probe:
            self.__dict__["_last_expiry_probe"] = now
        values = {"token": uuid.uuid4().hex, "now": now, "lease_until": now + lease}
        with wrap("claiming compensations", self.engine):
            if claim.takes:
                rows = self._take(claim.takes[0 if probe else 1 :], values, limit)
            else:
                rows = self._pick_and_take(claim, claim.queries[0 if probe else 1 :], values, limit)
        return sorted((_task(row) for row in rows), key=lambda t: (t.next_attempt_at, t.id))

    def _take(self, takes: Sequence[Any], values: dict[str, Any], limit: int) -> list[Any]:
        """Claim with one UPDATE ... RETURNING per way of being due, until `limit`."""
        rows: list[Any] = []
        engine = self._claim_engine
        with engine.connect() as conn:
            for take in takes:
                if len(rows) < limit:
                    with conn.begin():
                        rows += conn.execute(take, {**values, "limit": limit - len(rows)}).all()
        return rows

    def _pick_and_take(
        self, claim: _Claim, queries: Sequence[Any], values: dict[str, Any], limit: int
    ) -> list[Any]:
        """Claim by selecting due rows (locking them), then updating them, in one
        transaction."""
        with self._sweep_engine.begin() as conn:
            ids: list[Any] = []
            for query in queries:
                if len(ids) < limit:
                    found = conn.execute(query, {"now": values["now"], "limit": limit - len(ids)})
                    ids += found.scalars().all()
            if not ids:
                return []
            # The selected rows are locked by this transaction (SKIP LOCKED) or the
            # database's only write lock is held: one UPDATE claims them all.
            if claim.returning:
                return list(conn.execute(claim.update, {**values, "ids": ids}).all())
            conn.execute(claim.update, {**values, "ids": ids})
            return list(conn.execute(claim.read, {**values, "ids": ids}).all())

    @cached_property
    def _claim_engine(self) -> Engine:
        """The engine for one-statement claims: self-committing where the server has
        row locks (PostgreSQL: no BEGIN and COMMIT round trips), else the sweeper's."""
        if capabilities(self.engine).probe_autocommit:
            return self._sweep_engine.execution_options(isolation_level="AUTOCOMMIT")
        return self._sweep_engine

    @cached_property
    def _claim_statements(self) -> _Claim:
        """The claim's statements, built once with everything that changes bound."""
        c = self.tables.compensations
        newer = c.alias("newer")
        blocked = exists().where(
            newer.c.entity_type == c.c.entity_type,
            newer.c.entity_key == c.c.entity_key,
            newer.c.step_seq > c.c.step_seq,
            newer.c.status.in_(_OPEN_SQL),
        )
        now = bindparam("now", type_=UTCDateTime())
        # One query per way of being due (expired leases first), each an ordered range
        # of the due index (status, next_attempt_at) that stops at `limit`: their OR, or
        # a sort key the index lacks, would read and sort every due row on each claim.
        # (Ties come in index order: by id on SQLite and InnoDB, by row on PostgreSQL.)
        queries = []
        for due in reversed(compensation_due(c, now)):
            query = (
                select(c.c.id)
                .where(due, ~blocked)
                .order_by(c.c.next_attempt_at)
                .limit(bindparam("limit", type_=Integer()))
            )
            if self.skip_locked:
                query = query.with_for_update(skip_locked=True)
            queries.append(query)
        columns = [c.c[n] for n in _TASK_COLUMNS]
        take = update(c).values(
            status="running",
            attempts=c.c.attempts + 1,
            claim_token=bindparam("token"),
            lease_until=bindparam("lease_until", type_=UTCDateTime()),
            updated_at=now,
        )
        if capabilities(self.engine).one_statement_claim:
            takes = tuple(
                take.where(c.c.id.in_(query.scalar_subquery())).returning(*columns)
                for query in queries
            )
            return _Claim(takes, (), None, None, True)
        ids = c.c.id.in_(bindparam("ids", expanding=True))
        update_ = take.where(ids, c.c.status.in_(("pending", "running")))
        returning = bool(self._sweep_engine.dialect.update_returning)
        if returning:
            update_ = update_.returning(*columns)
        read = select(*columns).where(ids, c.c.claim_token == bindparam("token"))
        return _Claim((), tuple(queries), update_, read, returning)

    def complete_compensation(self, task: CompensationTask, entity: object, now: datetime) -> int:
        """Mark `task` done in the entity's transaction (with its attempt row) and
        return how many compensations of the instance are still open.

        Raises:
            ConcurrentTransitionError: the task's claim was lost (lease expired and
                another sweeper took it, or a person cancelled it); roll back.
        """
        session = object_session(entity)
        if session is None:
            raise StoreError("a compensation completes in the entity's transaction")
        conn = session.connection()
        self._finish(conn, task, now, status="done", error=None, next_attempt_at=None)
        remaining = conn.execute(
            self._finish_statements.remaining, {"type_": task.entity_type, "key_": task.key}
        ).scalar()
        return int(remaining or 0)

    def fail_compensation(
        self,
        task: CompensationTask,
        now: datetime,
        *,
        error: str,
        next_attempt_at: datetime,
        dead: bool,
    ) -> None:
        """Record a failed attempt: back to `pending` at `next_attempt_at`, or `dead`."""
        with wrap("recording a failed compensation", self.engine):
            with self._sweep_engine.begin() as conn:
                self._finish(
                    conn,
                    task,
                    now,
                    status="dead" if dead else "pending",
                    error=error,
                    next_attempt_at=next_attempt_at,
                )

    def _finish(
        self,
        conn: Connection,
        task: CompensationTask,
        now: datetime,
        *,
        status: str,
        error: str | None,
        next_attempt_at: datetime | None,
    ) -> None:
        finish = self._finish_statements
        result = conn.execute(
            finish.update,
            {
                "id_": task.id,
                "token": task.claim_token,
                "status": status,
                "error": error,
                "now": now,
                "next_attempt_at": next_attempt_at,
            },
        )
        if result.rowcount != 1:
            raise lost_claim(task)
        conn.execute(
            finish.attempt,
            {
                "compensation_id": task.id,
                "attempt": task.attempts,
                "at": now,
                "succeeded": status == "done",
                "error": error,
            },
        )

    @cached_property
    def _finish_statements(self) -> _Finish:
        """The statements recording an attempt, built once with everything bound."""
        c = self.tables.compensations
        when = UTCDateTime()
        update_ = (
            update(c)
            .where(
                c.c.id == bindparam("id_"),
                c.c.claim_token == bindparam("token"),
                c.c.status == "running",
            )
            .values(
                status=bindparam("status"),
                last_error=bindparam("error"),
                lease_until=None,
                claim_token=None,
                updated_at=bindparam("now", type_=when),
                next_attempt_at=func.coalesce(
                    bindparam("next_attempt_at", type_=when), c.c.next_attempt_at
                ),
            )
        )
        remaining = select(func.count()).where(
            c.c.entity_type == bindparam("type_"),
            c.c.entity_key == bindparam("key_"),
            c.c.status.in_(_OPEN_SQL),
        )
        return _Finish(update_, insert(self.tables.attempts), remaining)

    def compensations(
        self, entity_type: str | None = None, key: str | None = None, *, status: Sequence[str] = ()
    ) -> list[CompensationTask]:
        """Outbox rows, optionally of one instance and/or in given statuses."""
        c = self.tables.compensations
        query = select(*(c.c[n] for n in _TASK_COLUMNS)).order_by(
            c.c.entity_type, c.c.entity_key, c.c.step_seq.desc()
        )
        if entity_type is not None:
            query = query.where(c.c.entity_type == entity_type)
        if key is not None:
            query = query.where(c.c.entity_key == key)
        if status:
            query = query.where(c.c.status.in_(status))
        with reading(self.engine, "listing compensations") as conn:
            return [_task(row) for row in conn.execute(query).all()]

    def reopen_dead_compensations(self, entity: object, now: datetime, extra_attempts: int) -> int:
        """In the entity's transaction, give its dead compensations `extra_attempts`
        more tries starting now; returns how many were reopened."""
        c = self.tables.compensations
        values = {
            "status": "pending",
            "max_attempts": c.c.attempts + extra_attempts,
            "next_attempt_at": now,
            "updated_at": now,
        }
        return self._update_tasks(entity, "compensations are retried", ("dead",), values)

    def cancel_compensations(
        self, entity: object, now: datetime, *, reason: str | None = None
    ) -> int:
        """In the entity's transaction, cancel its open compensations (a person
        resolved the instance, or it left stuck); a running one loses its claim.
        `reason`, when given, is kept as the rows' `last_error`."""
        values: dict[str, Any] = {
            "status": "cancelled",
            "claim_token": None,
            "lease_until": None,
            "updated_at": now,
        }
        if reason is not None:
            values["last_error"] = reason
        return self._update_tasks(entity, "compensations are cancelled", _OPEN, values)

    def _update_tasks(
        self, entity: object, what: str, statuses: Sequence[str], values: dict[str, Any]
    ) -> int:
        """Set `values` on the entity's tasks in `statuses`, in its transaction."""
        conn, name, key = self._in_unit(entity, what)
        c = self.tables.compensations
        result = conn.execute(
            update(c)
            .where(c.c.entity_type == name, c.c.entity_key == key, c.c.status.in_(statuses))
            .values(values)
        )
        return int(result.rowcount)

    @contextmanager
    def handler_unit(self, entity_type: str, key: str) -> Iterator[HandlerUnit]:
        """The entity of one compensation, loaded for a handler (see `HandlerUnit`);
        commits what is open on a clean exit, rolls back on an exception, and turns
        backend errors into `StoreError`."""
        unit = HandlerUnit(self._sweep_sessions(), self.binding(entity_type), key, self._read)
        try:
            with wrap(f"compensating {entity_type} {key}", self.engine):
                unit.load()
                yield unit
                if not unit.abandoned:
                    unit.session.commit()
        finally:
            if not unit.abandoned:
                unit.close()

    def database_clock(self) -> Clock:
        """The clock the sweeper reads by default: the server's own time on PostgreSQL
        and MySQL/MariaDB (one clock for every sweeper, whatever its machine's clock
        says; see `DatabaseClock`); on SQLite, whose "server" is this machine, the
        system clock."""
        if capabilities(self.engine).clock_query is None:
            return SystemClock()
        clock: DatabaseClock | None = self.__dict__.get("_database_clock")
        if clock is None:  # one per store: sweepers sharing it share its readings
            clock = self.__dict__["_database_clock"] = DatabaseClock(self.engine)
        return clock

    def _in_unit(self, entity: object, what: str) -> tuple[Connection, str, str]:
        """The entity's transaction connection, machine name and key."""
        session = object_session(entity)
        if session is None:
            raise StoreError(f"{what} in the entity's transaction; it has none")
        binding = self._binding_of(entity)
        key = str(getattr(entity, binding.machine.fields.key))
        return session.connection(), binding.machine.name, key

    def _binding_of(self, entity: object) -> Any:
        for binding in self._all_bindings():
            if isinstance(entity, binding.entity_class):
                return binding
        raise StoreError(f"{type(entity).__name__} is not registered with this store")

    def _all_bindings(self) -> Sequence[Any]:  # provided by SQLAlchemyStore
        raise NotImplementedError


def _task(row: Sequence[Any]) -> CompensationTask:
    (entity_type, key, step, action, event, limit, status, attempts, due, error, token, ident) = row
    return CompensationTask(
        entity_type=entity_type,
        key=key,
        step_seq=step,
        action=action,
        event=event,
        max_attempts=limit,
        status=status,
        attempts=attempts,
        next_attempt_at=due,
        last_error=error,
        claim_token=token,
        id=ident,
    )


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
