"""The units of work of `SQLAlchemyStore`: one class per way a transition is written.

- `SessionUnit`: a Session's transaction, the caller's (a fire on an entity in a
  Session) or one statekit opened (`transaction` for a class with relationships, the
  sweeper's `session_unit`). After-commit work waits for that Session's commit; a
  half-written transition makes the Session refuse to commit (see `halfway.py`).
- `RowUnit`: the light unit of `transaction` for a class of plain columns: one
  connection, the entity loaded detached (see `rows.py`), changed columns written
  back before its own commit. Half-written: its end refuses to commit.
- `DriverUnit`: `Runner.fire_by_key` (`SQLAlchemyStore.firing`) on the DBAPI
  connection (`driver.py`), one transition. Half-written: it rolls back.
- `OwnUnit`: a fire on a detached entity: statekit's own transaction on `writer` (or
  the driver path's), committed before `apply` returns. Half-written cannot happen:
  the transaction rolls back.

A unit that holds a loaded entity is found from the entity (`unit_holding`): it is
kept in the entity's `InstanceState.info`, SQLAlchemy's per-instance dict for user
data, from the load until the unit closes, and only for the thread that opened it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from sqlalchemy import Connection, Row, Select
from sqlalchemy.orm import Session, sessionmaker

from statekit.entity import StateWriter
from statekit.errors import InstanceNotFoundError, StoreError
from statekit.records import Plan, TransitionRecord
from statekit.store.protocol import AfterCommit
from statekit.store.sqlalchemy.binding import EntityBinding
from statekit.store.sqlalchemy.driver import (
    DriverConnection,
    DriverFiring,
    apply_detached,
    driver_connection,
)
from statekit.store.sqlalchemy.errors import store_failure, wrap
from statekit.store.sqlalchemy.halfway import HalfWritten, refuse_commit
from statekit.store.sqlalchemy.orm import has_pending_changes, instance_info, mapped_state
from statekit.store.sqlalchemy.sessions import (
    defer,
    is_mapped,
    mark_persisted,
    running_after_commit,
)
from statekit.store.sqlalchemy.writeback import folded_changes, guard_session_unit, note_written
from statekit.store.sqlalchemy.writes import Writes

__all__ = [
    "UNIT",
    "DriverUnit",
    "OwnUnit",
    "RowUnit",
    "SessionUnit",
    "WriteUnit",
    "Writes",
    "unit_holding",
]

UNIT = "statekit_unit"
"""The key of an open unit in its entity's `InstanceState.info` (row and driver units)
or in its Session's `info` (statekit's own Session units)."""

Callback = Callable[[], None]


class WriteUnit:
    """A unit of work of `SQLAlchemyStore` (the `Unit` of `statekit.store.protocol`).
    A plain base class rather than an ABC: `apply` checks it on every fire, and an
    ABC's `isinstance` costs more."""

    entity: object

    def state_writer(self) -> StateWriter | None:
        """How the `Runner` sets the entity's state attributes: through the ORM."""
        return None

    def write(
        self,
        entity: object | None,
        binding: EntityBinding,
        plan: Plan,
        record: TransitionRecord,
        after_commit: AfterCommit | None,
    ) -> None:
        """Write `plan`'s transition of `entity` in this unit's transaction, with its
        half-written policy; `after_commit(record)` runs once that transaction commits."""
        raise NotImplementedError  # pragma: no cover - every unit class writes

    def read(self, query: Select[Any]) -> Row[Any] | None:
        """The first row of `query` in this unit's transaction."""
        raise NotImplementedError  # pragma: no cover - units with reads_inside override

    reads_inside = False
    """Whether `read` sees the unit's own writes (else the store reads outside)."""


class SessionUnit(WriteUnit):
    """A Session's transaction: the caller's, or one statekit opened (`open`), which
    commits on its block's clean exit and then runs its after-commit list."""

    reads_inside = True

    def __init__(
        self,
        writes: Writes,
        session: Session,
        entity: object,
        binding: EntityBinding,
        committed: list[Callback] | None = None,
    ) -> None:
        self.writes = writes
        self.session = session
        self.entity = entity
        self.binding = binding  # the entity's
        self.committed = committed  # None: the caller's Session

    def state_writer(self) -> StateWriter | None:
        """Straight into the instance dict, as for a light unit (see
        `rows.loaded_values_writer`): `write` puts the same values in the row in the
        Session's transaction, so they are what the row holds and the Session has
        nothing to flush for them. The entity's attributes are loaded: the `Runner`
        reads them first. Through the ORM when the class listens to them."""
        return self.binding.write_state

    def sharing(self, entity: object, binding: EntityBinding) -> SessionUnit:
        """This unit for another `entity` of its Session: the same transaction and
        after-commit list, `entity`'s own state writer."""
        if entity is self.entity:
            return self
        return SessionUnit(self.writes, self.session, entity, binding, self.committed)

    @classmethod
    @contextmanager
    def open(
        cls, writes: Writes, sessions: sessionmaker[Session], binding: EntityBinding, key: str
    ) -> Iterator[Any]:
        """Load one entity in a new Session and transaction and yield it (it finds
        this unit through its Session); commit on a clean exit, roll back on an
        exception, and turn backend errors into `StoreError`."""
        entity_type = binding.machine.name
        with wrap(f"transaction on {entity_type} {key}", sessions.kw["bind"]):
            with sessions() as session:
                session.begin()
                entity = session.get(binding.entity_class, binding.coerce_key(key))
                if entity is None:
                    raise InstanceNotFoundError(entity_type=entity_type, key=key)
                unit = cls(writes, session, entity, binding, [])
                session.info[UNIT] = unit
                guard_session_unit(session, binding, entity, key)
                yield entity
                session.commit()
        for callback in unit.committed:  # only reached after a successful commit
            callback()

    def write(
        self,
        entity: object | None,
        binding: EntityBinding,
        plan: Plan,
        record: TransitionRecord,
        after_commit: AfterCommit | None,
    ) -> None:
        session = self.session
        try:  # the Session's connection (no flush: `connection()` never autoflushes)
            conn = session.connection()
        except Exception as error:
            failure = store_failure(error, "connecting", self.writes.engine, plan)
            if failure is None:
                raise
            raise failure from error
        driver = self.writes.on_driver(conn, binding)
        # The entity's other changed columns go into the same UPDATE where they can:
        # the Session's flush then has nothing to send for the row.
        folded = (
            () if driver is None or entity is None else folded_changes(session, entity, binding)
        )
        try:
            self.writes.write(conn, binding, plan, record, driver, folded)
        except HalfWritten as half:
            refuse_commit(session, half.reason)
            raise half.error from half.__cause__
        finally:
            if driver is not None:
                driver.close()
        if self.committed is not None:  # statekit's own Session: its write-back checks
            note_written(session, entity, plan.expected_version + 1)
        if after_commit is not None:
            self.after_commit(partial(after_commit, record))
        if entity is not None and has_pending_changes(entity):  # set through the ORM
            mark_persisted(entity, binding, also=[name for name, _ in folded])

    def after_commit(self, callback: Callback) -> None:
        """Run `callback` once the Session commits (never if it rolls back)."""
        if self.committed is not None:
            self.committed.append(callback)
        else:
            defer(self.session, callback)

    def read(self, query: Select[Any]) -> Row[Any] | None:
        with self.session.no_autoflush, wrap("reading the idempotency key", self.writes.engine):
            return self.session.connection().execute(query).first()


class _HeldUnit(WriteUnit):
    """A unit that loaded its entity itself and is found from it (`unit_holding`)."""

    def __init__(self, writes: Writes, binding: EntityBinding, entity: object) -> None:
        self.writes = writes
        self.binding = binding
        self.entity = entity
        self.thread = threading.get_ident()
        self.committed: list[Callback] = []

    def state_writer(self) -> StateWriter | None:
        """Straight into the loaded values (see `rows.loaded_values_writer`)."""
        return self.binding.write_state

    def _hold(self) -> dict[str, Any]:
        """Put the unit in its entity's info (`unit_holding`); returns that dict, from
        which the unit's block pops it when it ends."""
        info = instance_info(self.entity)
        if info is None:  # pragma: no cover - the unit loaded a mapped instance
            raise StoreError(f"{type(self.entity).__name__} is not mapped")
        info[UNIT] = self
        return info

    def _run_committed(self) -> None:
        for callback in self.committed:  # only reached once the commit succeeded
            callback()


class RowUnit(_HeldUnit):
    """The light unit of `transaction`: one connection and a detached entity."""

    reads_inside = True

    def __init__(
        self, writes: Writes, binding: EntityBinding, conn: Connection, entity: object
    ) -> None:
        super().__init__(writes, binding, entity)
        self.conn = conn
        self.half_written: str | None = None  # why the unit must not commit

    @classmethod
    @contextmanager
    def open(cls, writes: Writes, binding: EntityBinding, key: str) -> Iterator[Any]:
        """Load the row of `key` and yield its entity (which finds this unit, see
        `unit_holding`); on a clean exit write back the columns the block changed and
        commit, then run the after-commit list.

        Raises:
            InstanceNotFoundError: no row has this key.
            StoreError: the commit failed or was refused (a half-written transition).
        """
        loader = binding.rows
        if loader is None:  # pragma: no cover - the store checks first
            raise StoreError(f"{binding.machine.name} has no light unit")
        entity_type = binding.machine.name
        with wrap(f"transaction on {entity_type} {key}", writes.engine):
            with writes.writer.connect() as conn, conn.begin():
                row = conn.execute(loader.load, {"key_": binding.coerce_key(key)}).first()
                if row is None:
                    raise InstanceNotFoundError(entity_type=entity_type, key=key)
                unit = cls(writes, binding, conn, loader.instance(row))
                info = unit._hold()
                try:
                    yield unit.entity
                    if unit.half_written is not None:
                        raise StoreError(f"commit refused: {unit.half_written}")
                    loader.write_changes(conn, unit.entity, binding, key)
                finally:
                    del info[UNIT]
        unit._run_committed()

    def write(
        self,
        entity: object | None,
        binding: EntityBinding,
        plan: Plan,
        record: TransitionRecord,
        after_commit: AfterCommit | None,
    ) -> None:
        try:
            self.writes.write(self.conn, binding, plan, record)
        except HalfWritten as half:
            self.half_written = half.reason  # the block may catch it: its end won't commit
            raise half.error from half.__cause__
        if after_commit is not None:
            self.committed.append(partial(after_commit, record))
        if entity is not None and has_pending_changes(entity):  # set through the ORM
            mark_persisted(entity, binding)

    def read(self, query: Select[Any]) -> Row[Any] | None:
        with wrap("reading the idempotency key", self.writes.engine):
            return self.conn.execute(query).first()


class DriverUnit(_HeldUnit):
    """`firing`: one transition on a pooled DBAPI connection (`driver.py`); a failed
    write leaves it only a rollback, and on PostgreSQL the write commits by itself."""

    def __init__(
        self, writes: Writes, binding: EntityBinding, conn: DriverConnection, entity: object
    ) -> None:
        super().__init__(writes, binding, entity)
        self.conn = conn

    @classmethod
    @contextmanager
    def open(cls, writes: Writes, firing: DriverFiring, key: str) -> Iterator[Any]:
        """Load the row of `key` on the DBAPI connection and yield its entity (see
        `RowUnit.open`); commit on a clean exit (see `driver.py`), then run the
        after-commit list.

        Raises:
            InstanceNotFoundError: no row has this key.
            StoreError: the database failed (ConcurrentTransitionError for a lost race).
        """
        binding = firing.binding
        with wrap(f"transaction on {binding.machine.name} {key}", writes.engine):
            with driver_connection(writes.engine, firing, key) as conn:
                unit = cls(writes, binding, conn, conn.entity)
                info = unit._hold()
                try:
                    yield unit.entity
                finally:
                    del info[UNIT]
        unit._run_committed()

    @staticmethod
    def alone(
        writes: Writes,
        firing: DriverFiring,
        plan: Plan,
        record: TransitionRecord,
    ) -> None:
        """Write a detached entity's transition in a DBAPI transaction of its own."""
        version_of = partial(writes.version_of, firing.binding, plan.key or "")
        with wrap("storing", writes.engine, plan=plan, version_of=version_of):  # BEGIN, COMMIT
            apply_detached(writes.engine, firing, plan, record, version_of)

    def write(
        self,
        entity: object | None,
        binding: EntityBinding,
        plan: Plan,
        record: TransitionRecord,
        after_commit: AfterCommit | None,
    ) -> None:
        self.conn.apply(plan, record, partial(self.writes.version_of, binding, plan.key or ""))
        if after_commit is not None:
            self.committed.append(partial(after_commit, record))
        if entity is not None:
            mark_persisted(entity, binding, everything=True)


class OwnUnit(WriteUnit):
    """A detached entity's transition in statekit's own transaction, on the DBAPI
    connection where the driver path may run (`firing`), else on `writer`; committed
    before `write` returns, then `after_commit` runs."""

    def __init__(self, writes: Writes, entity: object | None, firing: DriverFiring | None) -> None:
        self.writes = writes
        self.entity = entity
        self.firing = firing

    def write(
        self,
        entity: object | None,
        binding: EntityBinding,
        plan: Plan,
        record: TransitionRecord,
        after_commit: AfterCommit | None,
    ) -> None:
        writes = self.writes
        if self.firing is not None:
            DriverUnit.alone(writes, self.firing, plan, record)
        else:
            version_of = partial(writes.version_of, binding, plan.key or "")
            try:
                with (
                    wrap("storing", writes.engine, plan=plan, version_of=version_of),
                    writes.writer.connect() as conn,
                    conn.begin(),
                ):
                    writes.write(conn, binding, plan, record)
            except HalfWritten as half:  # the transaction rolled back: nothing was written
                raise half.error from half.__cause__
        if after_commit is not None:
            after_commit(record)
        if entity is not None and is_mapped(entity):
            mark_persisted(entity, binding)


def unit_holding(writes: Writes, entity: object, binding: EntityBinding) -> WriteUnit | None:
    """The unit of work `entity` (of `binding`'s class) is in, for this thread: the
    row or driver unit that loaded it, else a unit over the Session it belongs to
    (statekit's own, or the caller's), else None (a detached entity: `apply` writes
    it in an `OwnUnit`)."""
    state = mapped_state(entity)
    if state is None:
        return None
    held: _HeldUnit | None = state.info.get(UNIT)
    if held is not None:
        # Another thread's fire on a unit's entity is an independent writer: the
        # unit's connection belongs to the thread running its block.
        return held if held.thread == threading.get_ident() else None
    session = state.session
    if session is None or running_after_commit(session):
        return None
    own: SessionUnit | None = session.info.get(UNIT)
    if own is not None:
        return own.sharing(entity, binding)
    return SessionUnit(writes, session, entity, binding)
