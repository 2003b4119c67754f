"""SQLite done right for statekit: WAL, a busy timeout and real write transactions.

The stdlib driver's legacy mode only sends BEGIN before the first write, so a read
followed by a write is not isolated. `configure_sqlite` turns the driver's own
transaction handling off and lets SQLAlchemy's `begin` event send
`BEGIN IMMEDIATE`, taking the write lock up front (waiting up to the busy
timeout) so two writers never deadlock on a lock upgrade. Connections marked
read-only (`execution_options(statekit_read_only=True)`) begin with a plain
deferred `BEGIN`, so readers never wait for writers under WAL.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event

__all__ = ["OWN_BEGIN_LISTENER", "configure_sqlite", "sqlite_engine"]

_CONFIGURED = "_statekit_sqlite_configured"
OWN_BEGIN_LISTENER = "_statekit_begin_listener"
"""The attribute of an engine holding statekit's own "begin" listener."""


def sqlite_engine(
    path: str, *, busy_timeout_ms: int = 30_000, synchronous: str = "FULL", **kwargs: Any
) -> Engine:
    """Create an engine on the SQLite file `path`, configured by `configure_sqlite`."""
    engine = create_engine(f"sqlite+pysqlite:///{path}", **kwargs)
    configure_sqlite(engine, busy_timeout_ms=busy_timeout_ms, synchronous=synchronous)
    return engine


def configure_sqlite(
    engine: Engine, *, busy_timeout_ms: int = 30_000, synchronous: str = "FULL"
) -> None:
    """Install WAL, busy timeout, foreign keys and explicit BEGIN on `engine`.

    Idempotent; call it before the engine opens its first connection. `synchronous`
    is FULL by default (no committed transaction lost on power failure); NORMAL
    is faster and still safe against application crashes in WAL mode.
    """
    if engine.dialect.name != "sqlite" or getattr(engine, _CONFIGURED, False):
        return
    if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
        raise ValueError(f"unknown SQLite synchronous setting {synchronous!r}")
    setattr(engine, _CONFIGURED, True)
    in_memory = engine.url.database in (None, "", ":memory:")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        read_only = connection.get_execution_options().get("statekit_read_only", False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    setattr(engine, OWN_BEGIN_LISTENER, _on_begin)  # not a watcher (see driver.py)
