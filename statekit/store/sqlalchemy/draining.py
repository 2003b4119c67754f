"""What the compensation drain needs around a handler: a unit of work that holds no
transaction (so no row lock and no SQLite write lock) while the handler runs, and a
clock that reads the database server's time."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from statekit.clock import ServerClock
from statekit.errors import InstanceNotFoundError, InvalidArgumentError
from statekit.records import Snapshot
from statekit.store.sqlalchemy.dialects import capabilities, clocked
from statekit.store.sqlalchemy.errors import wrap
from statekit.store.sqlalchemy.lives import CLAIM_READ
from statekit.store.sqlalchemy.sqlite import BEGIN_OPTION

__all__ = ["DatabaseClock", "HandlerUnit", "read_options"]


class DatabaseClock(ServerClock):
    """A `ServerClock` that reads the time of `engine`'s server (PostgreSQL, MySQL,
    MariaDB), once per `resync` interval."""

    def __init__(self, engine: Engine, *, resync: timedelta = timedelta(seconds=30)) -> None:
        query = capabilities(engine).clock_query
        if query is None:
            raise InvalidArgumentError(
                "engine",
                engine,
                f"a database clock reads the server's time on {clocked()}",
                message=(
                    f"no database clock for {engine.dialect.name}: a DatabaseClock reads the "
                    f"server's time on {clocked()}; on {engine.dialect.name} use the "
                    "system clock (statekit.SystemClock)"
                ),
            )
        super().__init__(resync=resync)
        self._query = text(query)
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")

    def read_server_time(self) -> datetime:
        """The server's current time, read on a connection of its own."""
        with wrap("reading the database's clock", self._engine):
            with self._engine.connect() as conn:
                value: datetime = conn.execute(self._query).scalar_one()
        return value


def read_options(engine: Engine) -> Mapping[str, Any]:
    """The execution options of a `HandlerUnit`'s read transaction, which only reads
    (the entity, then the claim with its step) and holds no lock: self-committing on
    PostgreSQL, where READ COMMITTED gives each statement its own snapshot anyway and
    psycopg switches autocommit without a round trip (so no BEGIN and COMMIT); a
    deferred BEGIN on SQLite (a reader, not the write lock); elsewhere the sweeper's
    own transaction (switching MySQL's autocommit costs round trips of its own)."""
    name = capabilities(engine).name
    if name == "postgresql":
        return {"isolation_level": "AUTOCOMMIT"}
    if name == "sqlite":
        return {BEGIN_OPTION: "DEFERRED"}
    return {}


class HandlerUnit:
    """One compensation's entity in a Session whose transactions are open only while
    statekit checks and completes, never while the handler runs:

    `load` (read transaction) -> `release` -> handler -> `relock` (completion
    transaction: the row is locked and re-read) -> commit or `discard`.

    ORM changes the handler makes to the entity (and objects it adds to the Session)
    are flushed by the completion transaction, so they commit with the task's
    completion or not at all; statements the handler executes itself begin that
    transaction early and hold their locks until it ends.
    """

    def __init__(
        self,
        session: Session,
        binding: Any,
        key: str,
        read: Mapping[str, Any] | None = None,
        claimed: tuple[Any, Mapping[str, Any], int | None] | None = None,
    ) -> None:
        self.session = session
        self.binding = binding
        self.key = key
        self.read = read or {}
        self.claimed = claimed  # (query, parameters, task id): see `load`
        self.entity: Any = None
        self.abandoned = False

    def load(self) -> None:
        """Begin the read transaction (on a connection with the `read` execution
        options: see `read_options`) and load the entity; with `claimed` (the
        store's `claimed_load` query, its parameters and the task's id), the claim
        and the step of the task in the same query, kept in the Session's info for
        `claimed_step`."""
        self.session.begin()
        if self.read:
            self.session.connection(execution_options=dict(self.read))
        if self.claimed is None:
            key = self.binding.coerce_key(self.key)
            self.entity = self.session.get(self.binding.entity_class, key)
        else:
            query, parameters, task_id = self.claimed
            row = self.session.execute(query, parameters).first()
            if row is not None:
                self.entity = row[0]
                self.session.info[CLAIM_READ] = (task_id, tuple(row[1:]))
        if self.entity is None:
            raise InstanceNotFoundError(entity_type=self.binding.machine.name, key=self.key)

    def release(self) -> None:
        """Commit the read transaction: from here until `relock` statekit holds no lock."""
        self.session.commit()

    def relock(self) -> Snapshot:
        """Begin the completion transaction (unless the handler's statements did),
        lock the entity's row and return what it holds now."""
        snapshot: Snapshot = self.binding.snapshot(self.locked_row(self.binding.locked_snapshot))
        return snapshot

    def locked_row(self, statement: Any, parameters: Mapping[str, Any] | None = None) -> Any:
        """Begin the completion transaction (unless the handler's statements did) and
        run `statement`, which locks the entity's row (key `k_`) and returns it first
        (`relock`, or the store's one-statement completion) with `parameters`.

        Raises:
            InstanceNotFoundError: the row is gone.
        """
        if not self.session.in_transaction():
            self.session.begin()
        values = {"k_": self.binding.coerce_key(self.key), **(parameters or {})}
        row = self.session.connection().execute(statement, values).first()
        if row is None:
            raise InstanceNotFoundError(entity_type=self.binding.machine.name, key=self.key)
        return row

    def discard(self) -> None:
        """Roll back everything the handler wrote, ORM changes and statements alike."""
        self.session.rollback()

    def abandon(self) -> None:
        """The handler outlived its timeout: its thread owns the Session from now on
        and closes it (rolling back) when it returns."""
        self.abandoned = True

    def close(self) -> None:
        """Roll back whatever is open and release the connection."""
        self.session.close()
