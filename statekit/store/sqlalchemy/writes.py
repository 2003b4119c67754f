"""`Writes`: the statements of one transition on a given connection, shared by the
units of work of one store (`units.py`)."""

from __future__ import annotations

from functools import partial
from typing import Any

from sqlalchemy import Connection, Engine, Table, insert, select

from statekit.errors import StatekitError
from statekit.records import Plan, TransitionRecord
from statekit.store.sqlalchemy.binding import EntityBinding
from statekit.store.sqlalchemy.borrowed import SessionWrite
from statekit.store.sqlalchemy.connections import reading
from statekit.store.sqlalchemy.driver import DriverPath
from statekit.store.sqlalchemy.errors import store_failure
from statekit.store.sqlalchemy.halfway import HalfWritten
from statekit.store.sqlalchemy.history import history_row
from statekit.store.sqlalchemy.writeback import stored_version_and_state

__all__ = ["Writes"]


class Writes:
    """The statements of one transition on a given connection, shared by the units of
    one store: the compare-and-set UPDATE and the history INSERT."""

    def __init__(
        self, engine: Engine, writer: Engine, transitions: Table, driver: DriverPath | None = None
    ) -> None:
        self.engine = engine
        self.writer = writer  # statekit's own write transactions (see sqlite.py)
        self.transitions = transitions
        self.driver = driver
        self._insert_history = insert(transitions)

    def on_driver(self, conn: Connection, binding: EntityBinding) -> SessionWrite | None:
        """The DBAPI path for `binding`'s statements on a Session's `conn` (see
        `borrowed.SessionWrite`), or None for SQLAlchemy's execution: where the driver
        path is off or unwatched use is not certain (a Connection of another engine
        or with execution options of its own; see `DriverPath.firing`)."""
        driver = self.driver
        if driver is None or conn.engine is not self.engine or conn.get_execution_options():
            return None
        firing = driver.firing(binding)
        return None if firing is None else SessionWrite(conn, firing)

    def version_of(self, binding: EntityBinding, key: str) -> int | None:
        """The committed version of `key`, read outside any failed transaction (for
        a conflict's message); None when even that read fails."""
        try:
            with reading(self.engine, "reading from the store") as conn:
                version: int | None = conn.execute(
                    select(binding.columns["version"]).where(binding.key == binding.coerce_key(key))
                ).scalar()
        except StatekitError:
            return None
        return version

    def write(
        self,
        conn: Connection,
        binding: EntityBinding,
        plan: Plan,
        record: TransitionRecord,
        driver: SessionWrite | None = None,
        folded: tuple[tuple[str, Any], ...] = (),
    ) -> None:
        """Compare-and-set the row and insert the history row on `conn` (with
        `driver`, on its DBAPI connection: `on_driver`, where the UPDATE also sets
        the `folded` (attribute, value) pairs: `writeback.folded_changes`).

        Raises:
            ConcurrentTransitionError: the row is not at `plan.expected_version`.
            HalfWritten: the row moved and its history row failed (or, written as one
                statement, the statement failed: the transaction may only roll back).
        """
        values = binding.compare_and_set_values(plan)
        changed: tuple[str, ...] = ()
        if folded:
            changed = tuple(name for name, _ in folded)
            values.update((f"c{i}_", value) for i, (_, value) in enumerate(folded))
        if driver is not None and driver.one_statement:
            self._write_one(conn, binding, plan, record, driver, values, changed)
            return
        # try/except rather than `wrap` blocks: free until something raises.
        try:
            if driver is None:
                updated = conn.execute(binding.compare_and_set, values).rowcount
            else:
                updated = driver.update(values, changed)
            if updated != 1:
                actual = stored_version_and_state(conn, binding, values["k_"])
                raise plan.lost_race(actual)
        except Exception as error:
            failure = self._failure(error, binding, plan)
            if failure is None:
                raise
            raise failure from error
        try:
            if driver is None:
                conn.execute(self._insert_history, history_row(record))
            else:
                driver.insert(history_row(record))
        except Exception as error:
            failure = self._failure(error, binding, plan)
            if failure is None:
                raise
            # The row moved, its history did not: half-written.
            raise HalfWritten(failure, plan) from error

    def _write_one(
        self,
        conn: Connection,
        binding: EntityBinding,
        plan: Plan,
        record: TransitionRecord,
        driver: SessionWrite,
        values: dict[str, Any],
        changed: tuple[str, ...],
    ) -> None:
        """`write` as one statement: both rows or neither. A failed statement
        leaves a PostgreSQL transaction able only to roll back, which the Session is
        told (as after a half-written transition) so that no commit hides it."""
        values.update({f"h_{name}": value for name, value in history_row(record).items()})
        try:
            written = driver.write(values, changed)
        except Exception as error:
            failure = self._failure(error, binding, plan)
            if failure is None:
                raise
            raise HalfWritten(failure, plan, written=False) from error
        if written != 1:
            raise plan.lost_race(stored_version_and_state(conn, binding, values["k_"]))

    def _failure(self, error: Exception, binding: EntityBinding, plan: Plan) -> Exception | None:
        """The `StoreError` a failed statement of `write` leaves as (see `wrap`)."""
        version_of = partial(self.version_of, binding, plan.key or "")
        return store_failure(error, "storing", self.engine, plan, version_of)
