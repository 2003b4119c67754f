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
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from sqlalchemy import Connection, Engine, orm, select, update
from sqlalchemy.orm import Session, object_session

from statekit.clock import Clock, SystemClock
from statekit.compensation import TASK_COLUMNS, CompensationTask, task_of
from statekit.errors import StoreError
from statekit.store.sqlalchemy.claims import OPEN, Claim, claim_statements, compensation_due
from statekit.store.sqlalchemy.completing import CompletionOperations
from statekit.store.sqlalchemy.connections import reading
from statekit.store.sqlalchemy.dialects import capabilities
from statekit.store.sqlalchemy.draining import DatabaseClock, HandlerUnit, read_options
from statekit.store.sqlalchemy.errors import wrap
from statekit.store.sqlalchemy.marking import insert_ignoring_duplicates
from statekit.store.sqlalchemy.tables import StatekitTables

__all__ = ["OutboxOperations", "compensation_due", "supports_skip_locked"]

_EXPIRY_PROBE = timedelta(seconds=1)
"""How often (in the claimer's clock) a claim also looks for leases that ran out: a
lease lasts minutes, so a second more before it is taken over costs nothing, while a
drain claiming hundreds of tasks a second skips one query per claim."""


def supports_skip_locked(engine: Engine) -> bool:
    """Whether the server behind `engine` has `SELECT ... FOR UPDATE SKIP LOCKED`."""
    return capabilities(engine, connect=True).skip_locked


class OutboxOperations(CompletionOperations):
    """Mixed into `SQLAlchemyStore` (through `SweepOperations`): the outbox statements
    (recording attempts: `CompletionOperations`)."""

    engine: Engine
    writer: Engine  # `engine` for statekit's write units (see sqlite.py)
    tables: StatekitTables

    def binding(self, entity_type: str) -> Any:  # provided by SQLAlchemyStore
        raise NotImplementedError

    def claimed_load(self, binding: Any) -> Any:  # provided by LifeOperations
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
        being due on PostgreSQL and SQLite (see `Claim`)."""
        with wrap("claiming compensations", self.engine):
            if self._claim_statements.takes:
                with self._claim_engine.connect() as conn:
                    return self._claim_on(conn, now, limit, lease, own=True)
            with self._sweep_engine.begin() as conn:
                return self._claim_on(conn, now, limit, lease, own=False)

    def claim_compensations_in(
        self, entity: object, now: datetime, limit: int, lease: timedelta
    ) -> list[CompensationTask]:
        """`claim_compensations` in the entity's transaction (a `HandlerUnit`'s
        completion): the tasks are claimed if and only if it commits
        (`statekit.store.protocol.ChainedClaims`)."""
        conn, _, _ = self._in_unit(entity, "compensations are claimed")
        with wrap("claiming compensations", self.engine):
            return self._claim_on(conn, now, limit, lease, own=False)

    def _claim_on(
        self, conn: Connection, now: datetime, limit: int, lease: timedelta, *, own: bool
    ) -> list[CompensationTask]:
        """Claim up to `limit` due tasks on `conn`: with `own`, each statement in a
        transaction of its own; otherwise in the transaction `conn` is in."""
        claim = self._claim_statements
        probe = self._expiry_probe_due(now)
        if probe:
            self.__dict__["_last_expiry_probe"] = now
        values = {"token": uuid.uuid4().hex, "now": now, "lease_until": now + lease}
        first = 0 if probe else 1
        if claim.takes:
            rows = self._take(conn, claim.takes[first:], values, limit, own=own)
        else:
            rows = self._pick_and_take(conn, claim, claim.queries[first:], values, limit)
        return sorted((task_of(row) for row in rows), key=lambda t: (t.next_attempt_at, t.id))

    def _expiry_probe_due(self, now: datetime) -> bool:
        """Whether the next claim also looks for expired leases (see `_EXPIRY_PROBE`)."""
        last = self.__dict__.get("_last_expiry_probe")
        return last is None or not last <= now < last + _EXPIRY_PROBE

    @staticmethod
    def _take(
        conn: Connection, takes: Sequence[Any], values: dict[str, Any], limit: int, *, own: bool
    ) -> list[Any]:
        """Claim with one UPDATE ... RETURNING per way of being due, until `limit`."""
        rows: list[Any] = []
        for take in takes:
            if len(rows) < limit:
                parameters = {**values, "limit": limit - len(rows)}
                if own:
                    with conn.begin():
                        rows += conn.execute(take, parameters).all()
                else:
                    rows += conn.execute(take, parameters).all()
        return rows

    @staticmethod
    def _pick_and_take(
        conn: Connection,
        claim: Claim,
        queries: Sequence[Any],
        values: dict[str, Any],
        limit: int,
    ) -> list[Any]:
        """Claim by selecting due rows (locking them), then updating them, in the
        transaction `conn` is in."""
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
    def _claim_statements(self) -> Claim:
        """The claim's statements, built once with everything that changes bound."""
        return claim_statements(
            self.tables.compensations,
            skip_locked=self.skip_locked,
            one_statement=capabilities(self.engine).one_statement_claim,
            returning=bool(self._sweep_engine.dialect.update_returning),
        )

    def compensations(
        self, entity_type: str | None = None, key: str | None = None, *, status: Sequence[str] = ()
    ) -> list[CompensationTask]:
        """Outbox rows, optionally of one instance and/or in given statuses."""
        c = self.tables.compensations
        query = select(*(c.c[n] for n in TASK_COLUMNS)).order_by(
            c.c.entity_type, c.c.entity_key, c.c.step_seq.desc()
        )
        if entity_type is not None:
            query = query.where(c.c.entity_type == entity_type)
        if key is not None:
            query = query.where(c.c.entity_key == key)
        if status:
            query = query.where(c.c.status.in_(status))
        with reading(self.engine, "listing compensations") as conn:
            return [task_of(row) for row in conn.execute(query).all()]

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
        return self._update_tasks(entity, "compensations are cancelled", OPEN, values)

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
    def handler_unit(
        self, entity_type: str, key: str, task: CompensationTask | None = None
    ) -> Iterator[HandlerUnit]:
        """The entity of one compensation, loaded for a handler (see `HandlerUnit`);
        commits what is open on a clean exit, rolls back on an exception, and turns
        backend errors into `StoreError`. Given the `task`, its claim and step are
        read in the same query as the entity (for `claimed_step`)."""
        binding = self.binding(entity_type)
        claimed = None
        if task is not None:
            parameters = {
                "id_": task.id,
                "token": task.claim_token,
                "type_": entity_type,
                "key_": key,
                "k_": binding.coerce_key(key),
            }
            claimed = (self.claimed_load(binding), parameters, task.id)
        unit = HandlerUnit(self._sweep_sessions(), binding, key, self._read, claimed)
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
