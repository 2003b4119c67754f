"""The sweeper's side of `SQLAlchemyStore`: claiming overdue rows and the outbox.

Claims use `FOR UPDATE SKIP LOCKED` where the server has it (PostgreSQL, MySQL 8,
MariaDB 10.6+), detected once per store from the dialect and server version, so
concurrent sweepers take disjoint rows; elsewhere (SQLite) the write transaction and
compare-and-set updates keep them apart. Compensation handlers never run inside a
claim transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    Table,
    and_,
    bindparam,
    exists,
    func,
    insert,
    literal,
    literal_column,
    or_,
    orm,
    select,
    union_all,
    update,
)
from sqlalchemy.orm import Session, object_session

from statekit.compensation import CompensationTask
from statekit.errors import InstanceNotFoundError, StoreError
from statekit.records import Snapshot, TransitionRecord
from statekit.store.sqlalchemy.connections import failures, reading
from statekit.store.sqlalchemy.history import record_columns
from statekit.store.sqlalchemy.history import record_of as _record
from statekit.store.sqlalchemy.lives import lost_claim
from statekit.store.sqlalchemy.marking import DueBatch, MarkStatements, insert_ignoring_duplicates
from statekit.store.sqlalchemy.tables import StatekitTables, UTCDateTime
from statekit.store.sqlalchemy.writeback import guard_session_unit
from statekit.sweeper import COMPENSATIONS_DUE

UNIT_CALLBACKS = "statekit_unit_callbacks"
"""`Session.info` key of the after-commit callbacks of statekit's own units of work."""

__all__ = [
    "DueBatch",
    "SweepOperations",
    "supports_skip_locked",
    "unit_of_work",
]

_OPEN = ("pending", "running", "dead")
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


def supports_skip_locked(engine: Engine) -> bool:
    """Whether the server behind `engine` has `SELECT ... FOR UPDATE SKIP LOCKED`."""
    dialect = engine.dialect
    if dialect.name == "postgresql":
        return True
    if dialect.name not in {"mysql", "mariadb"}:
        return False
    if dialect.server_version_info is None:
        with reading(engine, "reading the server version"):
            pass  # the first connection reads the server version
    version = tuple(dialect.server_version_info or ())
    if getattr(dialect, "is_mariadb", False):
        return version >= (10, 6)
    return version >= (8, 0, 1)


class SweepOperations:
    """Mixed into `SQLAlchemyStore`; the statements the `Sweeper` needs."""

    engine: Engine
    writer: Engine  # `engine` for statekit's write units (see sqlite.py)
    tables: StatekitTables
    sessionmaker: orm.sessionmaker[Session]

    def binding(self, entity_type: str) -> Any:  # provided by SQLAlchemyStore
        raise NotImplementedError

    @cached_property
    def skip_locked(self) -> bool:
        """Whether claims use SKIP LOCKED on this store's server (detected once)."""
        return supports_skip_locked(self.engine)

    def _mark_statements(self, binding: Any) -> MarkStatements:
        """The set-based marking statements of `binding`'s machine (built once)."""
        built: dict[str, MarkStatements] = self.__dict__.setdefault("_marking", {})
        name = binding.machine.name
        if name not in built:
            built[name] = MarkStatements(binding, self.tables, self.engine.dialect.name)
        return built[name]

    @cached_property
    def _sweep_engine(self) -> Engine:
        """The engine for sweeper transactions: READ COMMITTED on MySQL/MariaDB, so a
        claim locks only the rows it takes (REPEATABLE READ would also lock the gaps
        between them and stall other sweepers' inserts)."""
        if self.engine.dialect.name in {"mysql", "mariadb"}:
            return self.writer.execution_options(isolation_level="READ COMMITTED")
        return self.writer

    @cached_property
    def _sweep_sessions(self) -> orm.sessionmaker[Session]:
        return orm.sessionmaker(bind=self._sweep_engine, expire_on_commit=False)

    def steps(self, entity: object) -> list[TransitionRecord]:
        """The entity's history, oldest first, read in the entity's own transaction."""
        conn, name, key = self._in_unit(entity, "steps are read")
        t = self.tables.transitions
        rows = conn.execute(
            select(*record_columns(t))
            .where(t.c.entity_type == name, t.c.entity_key == key)
            .order_by(t.c.seq)
        )
        return [_record(name, key, row) for row in rows]

    # -- overdue instances -----------------------------------------------------------

    @contextmanager
    def overdue_batch(self, entity_type: str, now: datetime, limit: int) -> Iterator[DueBatch]:
        """Claim up to `limit` instances whose deadline has passed, in one transaction
        that commits on a clean exit; work done through the yielded `DueBatch` (and
        transitions fired on entities it loads) joins that transaction.

        Stuck instances have no deadline, so the due index alone covers the claim.
        """
        binding = self.binding(entity_type)
        cols = binding.columns
        query: Select[Any] = (
            binding.snapshot_select()
            .where(cols["deadline_at"] <= now)
            .order_by(cols["deadline_at"], binding.key)
            .limit(limit)
        )
        if self.skip_locked:
            query = query.with_for_update(skip_locked=True)
        try:
            with self._sweep_sessions() as session:
                session.begin()
                rows = session.connection().execute(query).all()
                snapshots = [binding.snapshot(row) for row in rows]
                yield DueBatch(self._mark_statements(binding), session, snapshots)
                session.commit()
        except failures(self.engine) as exc:
            raise StoreError(f"sweeping {entity_type} failed: {exc}") from exc

    def due(self, entity_types: Sequence[str], now: datetime) -> set[str]:
        """Which of `entity_types` have an overdue instance, plus `"@compensations"`
        when a compensation is due: one cheap, non-locking query, so an idle sweeper
        costs about one indexed lookup per pass."""
        parameters: dict[str, Any] = {}
        if self.engine.dialect.name == "postgresql":
            # Inline `now`: the generic plan of a prepared `deadline <= $1` may scan the
            # whole table when nothing is due; with the value the due index answers.
            stamp = now.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")
            probe = self._due_probe(entity_types, literal_column(f"TIMESTAMP '{stamp}'"))
        else:  # built once: an idle sweeper polls often, and building it costs more
            cache: dict[tuple[str, ...], Any] = self.__dict__.setdefault("_due_probes", {})
            key = tuple(entity_types)
            if key not in cache:
                cache[key] = self._due_probe(key, bindparam("now", type_=UTCDateTime()))
            probe, parameters = cache[key], {"now": now}
        try:
            with self._probe_engine.connect() as conn:
                return {row[0] for row in conn.execute(probe, parameters)}
        except failures(self.engine) as exc:
            raise StoreError(f"checking for due work failed: {exc}") from exc

    def _due_probe(self, entity_types: Sequence[str], moment: Any) -> Any:
        """The UNION ALL of one EXISTS per machine and per way a compensation is due."""
        probes = [
            select(literal(name)).where(
                exists().where(self.binding(name).columns["deadline_at"] <= moment)
            )
            for name in entity_types
        ]
        # One EXISTS per way of being due, so each can use the outbox's due index.
        probes += [
            select(literal(COMPENSATIONS_DUE)).where(exists().where(condition))
            for condition in _compensation_due(self.tables.compensations, moment)
        ]
        return union_all(*probes)

    @cached_property
    def _probe_engine(self) -> Engine:
        if self.engine.dialect.name == "sqlite":
            return self.engine
        return self.engine.execution_options(isolation_level="AUTOCOMMIT")

    def stuck(self, entity_type: str) -> list[Snapshot]:
        """Snapshots of the stuck instances of `entity_type`, oldest first."""
        binding = self.binding(entity_type)
        cols = binding.columns
        query = (
            binding.snapshot_select()
            .where(cols["stuck_at"].is_not(None))
            .order_by(cols["stuck_at"], binding.key)
        )
        with reading(self.engine, f"listing stuck {entity_type} instances") as conn:
            rows = conn.execute(query).all()
        return [binding.snapshot(row) for row in rows]

    # -- the compensation outbox -----------------------------------------------------

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
        conn.execute(insert_ignoring_duplicates(table, self.engine.dialect.name), rows)

    def claim_compensations(
        self, now: datetime, limit: int, lease: timedelta
    ) -> list[CompensationTask]:
        """Claim due tasks (newest step first per instance) for this sweeper: each
        becomes `running` with one more attempt and a lease, committed before any
        handler runs. A task whose lease expired is claimed again."""
        c = self.tables.compensations
        newer = c.alias("newer")
        blocked = exists().where(
            newer.c.entity_type == c.c.entity_type,
            newer.c.entity_key == c.c.entity_key,
            newer.c.step_seq > c.c.step_seq,
            newer.c.status.in_(_OPEN),
        )
        due = or_(*_compensation_due(c, now))
        query = (
            select(c.c.id).where(due, ~blocked).order_by(c.c.next_attempt_at, c.c.id).limit(limit)
        )
        if self.skip_locked:
            query = query.with_for_update(skip_locked=True)
        token = uuid.uuid4().hex
        try:
            with self._sweep_engine.begin() as conn:
                ids = [row[0] for row in conn.execute(query).all()]
                if not ids:
                    return []
                # The selected rows are locked by this transaction (SKIP LOCKED) or the
                # database's only write lock is held (SQLite): one UPDATE claims them all.
                conn.execute(
                    update(c)
                    .where(c.c.id.in_(ids), c.c.status.in_(("pending", "running")))
                    .values(
                        status="running",
                        attempts=c.c.attempts + 1,
                        claim_token=token,
                        lease_until=now + lease,
                        updated_at=now,
                    )
                )
                rows = conn.execute(
                    select(*(c.c[n] for n in _TASK_COLUMNS))
                    .where(c.c.id.in_(ids), c.c.claim_token == token)
                    .order_by(c.c.next_attempt_at, c.c.id)
                ).all()
        except failures(self.engine) as exc:
            raise StoreError(f"claiming compensations failed: {exc}") from exc
        return [_task(row) for row in rows]

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
        c = self.tables.compensations
        remaining = conn.execute(
            select(func.count()).where(
                c.c.entity_type == task.entity_type,
                c.c.entity_key == task.key,
                c.c.status.in_(_OPEN),
            )
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
        try:
            with self._sweep_engine.begin() as conn:
                self._finish(
                    conn,
                    task,
                    now,
                    status="dead" if dead else "pending",
                    error=error,
                    next_attempt_at=next_attempt_at,
                )
        except failures(self.engine) as exc:
            raise StoreError(f"recording a failed compensation failed: {exc}") from exc

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
        c = self.tables.compensations
        values: dict[str, Any] = {
            "status": status,
            "last_error": error,
            "lease_until": None,
            "claim_token": None,
            "updated_at": now,
        }
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        result = conn.execute(
            update(c)
            .where(c.c.id == task.id, c.c.claim_token == task.claim_token, c.c.status == "running")
            .values(values)
        )
        if result.rowcount != 1:
            raise lost_claim(task)
        conn.execute(
            insert(self.tables.attempts).values(
                compensation_id=task.id,
                attempt=task.attempts,
                at=now,
                succeeded=status == "done",
                error=error,
            )
        )

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

    def compensation_attempts(self, task_id: int) -> list[tuple[int, datetime, bool, str | None]]:
        """(attempt, at, succeeded, error) of every attempt at one compensation."""
        a = self.tables.attempts
        query = (
            select(a.c.attempt, a.c.at, a.c.succeeded, a.c.error)
            .where(a.c.compensation_id == task_id)
            .order_by(a.c.attempt)
        )
        with reading(self.engine, f"listing attempts of compensation {task_id}") as conn:
            return [(r[0], r[1], bool(r[2]), r[3]) for r in conn.execute(query).all()]

    def reopen_dead_compensations(self, entity: object, now: datetime, extra_attempts: int) -> int:
        """In the entity's transaction, give its dead compensations `extra_attempts`
        more tries starting now; returns how many were reopened."""
        conn, name, key = self._in_unit(entity, "compensations are retried")
        c = self.tables.compensations
        result = conn.execute(
            update(c)
            .where(
                c.c.entity_type == name,
                c.c.entity_key == key,
                c.c.status == "dead",
            )
            .values(
                status="pending",
                max_attempts=c.c.attempts + extra_attempts,
                next_attempt_at=now,
                updated_at=now,
            )
        )
        return int(result.rowcount)

    def cancel_compensations(self, entity: object, now: datetime) -> int:
        """In the entity's transaction, cancel its open compensations (a person
        resolved the instance); a running one loses its claim."""
        conn, name, key = self._in_unit(entity, "compensations are cancelled")
        c = self.tables.compensations
        result = conn.execute(
            update(c)
            .where(
                c.c.entity_type == name,
                c.c.entity_key == key,
                c.c.status.in_(_OPEN),
            )
            .values(status="cancelled", claim_token=None, lease_until=None, updated_at=now)
        )
        return int(result.rowcount)

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


@contextmanager
def unit_of_work(sessions: orm.sessionmaker[Session], binding: Any, key: str) -> Iterator[Any]:
    """Load one entity in a new Session and transaction; commit on a clean exit, roll
    back on an exception, and turn backend errors into `StoreError`."""
    entity_type = binding.machine.name
    committed: list[Callable[[], None]] = []
    try:
        with sessions() as session:
            session.info[UNIT_CALLBACKS] = committed
            session.begin()
            entity = session.get(binding.entity_class, binding.coerce_key(key))
            if entity is None:
                raise InstanceNotFoundError(entity_type=entity_type, key=key)
            guard_session_unit(session, binding, entity, key)
            yield entity
            session.commit()
    except failures(sessions.kw["bind"]) as exc:
        raise StoreError(f"transaction on {entity_type} {key} failed: {exc}") from exc
    for callback in committed:  # only reached after a successful commit
        callback()


def _compensation_due(c: Table, now: Any) -> tuple[Any, Any]:
    """The two ways a compensation is due: pending and its next attempt has come, or
    running and its claim's lease has run out (its sweeper died)."""
    return (
        and_(c.c.status == "pending", c.c.next_attempt_at <= now),
        and_(c.c.status == "running", c.c.lease_until <= now),
    )
