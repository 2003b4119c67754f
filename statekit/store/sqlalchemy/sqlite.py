"""SQLite done right for statekit: WAL, a busy timeout and real transactions.

The stdlib driver's legacy mode only sends BEGIN before the first write, so a read
followed by a write is not isolated. `configure_sqlite` turns the driver's own
transaction handling off and lets SQLAlchemy's `begin` event send BEGIN itself:

- the application's transactions begin as the engine says (`begin`, deferred by
  default), so its readers never wait for a writer under WAL, nor for each other;
- statekit's own write units run on `for_writing(engine)`, whose transactions begin
  with `BEGIN IMMEDIATE`: they take the write lock up front (waiting up to the busy
  timeout), so two of them never deadlock on a lock upgrade and nobody moves a row
  between their read and their write.

Connections are configured when the pool hands them out, so the ones an application
opened before the store was built (`create_all` first, say) get the same settings,
as does a connection whose isolation level SQLAlchemy reset.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event

from statekit.errors import InvalidArgumentError
from statekit.store.sqlalchemy.dialects import capabilities
from statekit.store.sqlalchemy.orm import engine_listened

__all__ = [
    "BEGIN_OPTION",
    "OWN_BEGIN_LISTENER",
    "configure_sqlite",
    "for_writing",
    "sqlite_engine",
]

_CONFIGURED = "_statekit_sqlite_configured"
_BEGIN_MODES = ("DEFERRED", "IMMEDIATE", "EXCLUSIVE")
_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
BEGIN_OPTION = "statekit_begin"
"""The execution option naming how a transaction begins on a configured SQLite engine:
"DEFERRED", "IMMEDIATE" or "EXCLUSIVE" (default: the engine's `begin`)."""
OWN_BEGIN_LISTENER = "_statekit_begin_listener"
"""The attribute of an engine holding statekit's own "begin" listener."""


def sqlite_engine(
    path: str,
    *,
    busy_timeout_ms: int = 30_000,
    synchronous: str = "FULL",
    begin: str = "DEFERRED",
    **kwargs: Any,
) -> Engine:
    """Create an engine on the SQLite file `path`, configured by `configure_sqlite`."""
    _check(synchronous=synchronous, begin=begin)
    engine = create_engine(f"sqlite+pysqlite:///{path}", **kwargs)
    configure_sqlite(engine, busy_timeout_ms=busy_timeout_ms, synchronous=synchronous, begin=begin)
    return engine


def for_writing(engine: Engine) -> Engine:
    """`engine` for statekit's write units: on SQLite, their transactions begin with
    `BEGIN IMMEDIATE`; other databases' engines are returned as they are."""
    if not capabilities(engine).explicit_begin:
        return engine
    return engine.execution_options(**{BEGIN_OPTION: "IMMEDIATE"})


def _check(*, synchronous: str, begin: str) -> None:
    if synchronous.upper() not in _SYNCHRONOUS:
        allowed = f"use {', '.join(_SYNCHRONOUS)}"
        raise InvalidArgumentError(
            "synchronous",
            synchronous,
            allowed,
            message=f"unknown SQLite synchronous setting {synchronous!r} ({allowed})",
        )
    if begin.upper() not in _BEGIN_MODES:
        allowed = f"use {', '.join(_BEGIN_MODES)}"
        raise InvalidArgumentError(
            "begin", begin, allowed, message=f"unknown SQLite BEGIN mode {begin!r} ({allowed})"
        )


def configure_sqlite(
    engine: Engine,
    *,
    busy_timeout_ms: int = 30_000,
    synchronous: str = "FULL",
    begin: str = "DEFERRED",
) -> None:
    """Install WAL, busy timeout, foreign keys and explicit BEGIN on `engine`.

    Idempotent: the first call's settings stay. Connections already in the pool are
    configured the next time they are handed out. `synchronous` is FULL by default
    (no committed transaction lost on power failure); NORMAL is faster and still
    safe against application crashes in WAL mode. `begin` is how the engine's
    transactions begin unless a connection's `statekit_begin` execution option says
    otherwise: "DEFERRED" (the default), or "IMMEDIATE" to make every transaction
    take the write lock up front, as statekit's own units always do.
    """
    if not capabilities(engine).explicit_begin or getattr(engine, _CONFIGURED, False):
        return
    _check(synchronous=synchronous, begin=begin)
    setattr(engine, _CONFIGURED, True)
    in_memory = engine.url.database in (None, "", ":memory:")
    pragmas = [
        f"PRAGMA busy_timeout={int(busy_timeout_ms)}",  # first: the WAL switch may wait
        *([] if in_memory else ["PRAGMA journal_mode=WAL"]),
        f"PRAGMA synchronous={synchronous.upper()}",
        "PRAGMA foreign_keys=ON",
    ]
    default_begin = begin.upper()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, connection_record: Any, proxy: Any) -> None:
        # Cheap once done; redone where SQLAlchemy reset the driver's isolation level.
        info = connection_record.info
        if dbapi_connection.isolation_level is None and info.get(_CONFIGURED):
            return
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            for pragma in pragmas:
                cursor.execute(pragma)
        finally:
            cursor.close()
        info[_CONFIGURED] = True

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.connection.dbapi_connection.in_transaction and engine_listened(  # type: ignore[union-attr]
            connection.engine, ("begin",), besides=_on_begin
        ):
            return  # the application's own "begin" listener (SQLAlchemy's recipe) began it
        # Otherwise BEGIN is sent, and fails loudly on a connection already in a
        # transaction (one shared by nested use, as an in-memory database's is).
        mode = str(connection.get_execution_options().get(BEGIN_OPTION, default_begin)).upper()
        connection.exec_driver_sql("BEGIN" if mode == "DEFERRED" else f"BEGIN {mode}")

    setattr(engine, OWN_BEGIN_LISTENER, _on_begin)  # not a watcher (see driver.py)
