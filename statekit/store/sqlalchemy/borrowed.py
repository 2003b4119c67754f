"""A transition's statements on the DBAPI connection of a Session's `Connection`.

A fire on an entity in the caller's Session writes in that Session's transaction
(`units.SessionUnit`). Where `fire_by_key`'s driver path may run (`driver.py`: SQLite
files and psycopg, a class whose statements need nothing of SQLAlchemy's execution,
an engine nobody watches), the compare-and-set UPDATE and the history INSERT go on
the DBAPI connection the Session's `Connection` holds, in its transaction, without the
Python of SQLAlchemy's execution layer: on PostgreSQL as one statement (the UPDATE in
a WITH clause feeding the INSERT, as `fire_by_key` sends it: both rows or neither),
elsewhere as the two statements that `Connection` would send. The Session's own
statements (BEGIN, its loads and flushes, COMMIT) stay SQLAlchemy's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from statekit.store.sqlalchemy.driver import DriverConnection, DriverFiring

__all__ = ["SessionWrite"]


class SessionWrite:
    """The statements of one transition sent on the DBAPI connection of a
    `Connection` in a transaction someone else owns (a Session's): in that
    transaction, with the columns' processors, driver errors as SQLAlchemy's, and a
    lost connection invalidated through the `Connection`, as its own statements do.
    The `Connection` itself stays usable for whatever it sends next."""

    __slots__ = ("conn", "dbapi_connection", "unit")

    def __init__(self, conn: Connection, firing: DriverFiring) -> None:
        self.conn = conn
        proxied = conn.connection
        self.dbapi_connection = proxied.dbapi_connection  # for `is_disconnect`
        self.unit = DriverConnection(firing, self, proxied.cursor())

    def invalidate(self, error: BaseException | None = None) -> None:
        """Invalidate the `Connection` (what `DriverConnection.send` calls on a lost
        connection): the Session then has only a rollback left."""
        self.conn.invalidate(error)

    @property
    def one_statement(self) -> bool:
        """Whether `write` sends the UPDATE and the INSERT as one statement."""
        return self.unit.firing.one_statement

    def write(self, values: Mapping[str, Any], changed: tuple[str, ...] = ()) -> int:
        """The UPDATE and the INSERT in one statement (`one_statement`): the values of
        the compare-and-set, of the attributes `changed` it also sets (`c0_`, ...)
        and `h_`-prefixed history columns; 1 when both rows were written, 0 when the
        compare-and-set matched nothing (then nothing was)."""
        unit = self.unit
        count: int = unit.execute(unit.firing.write(changed), values).rowcount
        return count

    def update(self, values: Mapping[str, Any], changed: tuple[str, ...] = ()) -> int:
        """The compare-and-set UPDATE (also setting the attributes `changed`, as
        `write`); the number of rows it matched."""
        unit = self.unit
        statement = unit.firing.write(changed) if changed else unit.firing.update
        count: int = unit.execute(statement, values).rowcount
        return count

    def insert(self, row: Mapping[str, Any]) -> None:
        """The history INSERT of `history_row`'s parameters."""
        unit = self.unit
        unit.execute(unit.firing.insert_row, row)

    def close(self) -> None:
        """Close the cursor (a closed or invalidated connection's is gone already)."""
        try:
            self.unit.cursor.close()
        except Exception:  # the connection failed: its error is the one reported
            pass
