"""What the sweeper needs from the database beyond its rows: a clock that reads the
database server's time."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, text
from sqlalchemy import exc as sa_exc

from statekit.errors import StoreError

__all__ = ["DatabaseClock"]

_NOW = {
    "postgresql": "SELECT statement_timestamp()",
    "mysql": "SELECT UTC_TIMESTAMP(6)",
    "mariadb": "SELECT UTC_TIMESTAMP(6)",
}


class DatabaseClock:
    """A `Clock` whose `now()` is the database server's current UTC time (one query
    per call), so sweepers on machines whose clocks disagree still compare leases
    and deadlines against one clock."""

    def __init__(self, engine: Engine) -> None:
        query = _NOW.get(engine.dialect.name)
        if query is None:
            raise ValueError(f"no database clock for {engine.dialect.name}")
        self._query = text(query)
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")

    def now(self) -> datetime:
        """Return the server's current time, timezone-aware, in UTC."""
        try:
            with self._engine.connect() as conn:
                value: datetime = conn.execute(self._query).scalar_one()
        except sa_exc.SQLAlchemyError as exc:
            raise StoreError(f"reading the database's clock failed: {exc}") from exc
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
