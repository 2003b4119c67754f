"""What each database can do for statekit, in one place: a `Capabilities` per
dialect, detected once and read by every statement builder instead of branching on
`dialect.name` where it builds.

Facts that depend on the server's version (SKIP LOCKED on MySQL and MariaDB) are
known once a connection has been made; `capabilities(engine, connect=True)` makes
one when none has been yet, and only then caches the answer.
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Engine
from sqlalchemy.engine import Dialect

__all__ = [
    "PARTIAL_INDEX_DIALECTS",
    "Capabilities",
    "InsertIgnore",
    "KeyList",
    "capabilities",
    "ddl_url",
    "of_dialect",
    "partial_index_kwargs",
]

InsertIgnore = Literal["on_conflict", "on_duplicate_key", "plain"]
"""How an INSERT skips rows that exist: `ON CONFLICT` (PostgreSQL, SQLite),
`ON DUPLICATE KEY UPDATE` (MySQL, MariaDB), or not at all (duplicates raise)."""
KeyList = Literal["array", "json", "expanding"]
"""How a batch's keys travel as one parameter: a typed array (PostgreSQL), a JSON
list read with `json_each` (SQLite 3.38+), or an expanding IN list."""

_MYSQL_FAMILY = frozenset({"mysql", "mariadb"})
_DRIVER_PATH = frozenset({("sqlite", "pysqlite"), ("postgresql", "psycopg")})
_CLOCK_QUERIES = {
    "postgresql": "SELECT statement_timestamp()",
    "mysql": "SELECT UTC_TIMESTAMP(6)",
    "mariadb": "SELECT UTC_TIMESTAMP(6)",
}


def clocked() -> str:
    """The databases a `DatabaseClock` can read, as text."""
    return ", ".join(_CLOCK_QUERIES)


_DDL_URLS = {"postgresql": "postgresql+psycopg://", "sqlite": "sqlite://"}
PARTIAL_INDEX_DIALECTS = ("postgresql", "sqlite")
"""The dialects whose indexes take a WHERE clause (`<name>_where`)."""


@dataclass(frozen=True)
class Capabilities:
    """What one database (dialect, driver and server version) offers statekit."""

    name: str
    """The dialect's name ("sqlite", "postgresql", "mysql", "mariadb", ...)."""
    driver: str
    skip_locked: bool
    """Claims may use `SELECT ... FOR UPDATE SKIP LOCKED` (PostgreSQL, MySQL 8.0.1+,
    MariaDB 10.6+); elsewhere the write lock or compare-and-set keeps sweepers apart."""
    insert_ignore: InsertIgnore
    key_list: KeyList
    """The key-list form for integer and text keys (other keys use "expanding")."""
    one_statement_write: bool
    """The driver path writes a transition as one self-committing statement (the
    compare-and-set UPDATE in a WITH clause feeding the history INSERT)."""
    driver_path: bool
    """By-key fires may go on the DBAPI connection (stdlib sqlite3, psycopg 3)."""
    one_statement_claim: bool
    """A compensation claim is one `UPDATE ... WHERE id IN (SELECT ... LIMIT k [FOR
    UPDATE SKIP LOCKED]) RETURNING ...` (PostgreSQL, SQLite 3.35+), self-committing
    where reads take no write lock (PostgreSQL); elsewhere (MySQL/MariaDB, which
    cannot update a table a subquery reads) a SELECT and an UPDATE in a transaction."""
    claim_lanes: bool
    """Concurrent claims of overdue instances take them from opposite ends of the due
    list, told apart by a transaction-scoped advisory lock (PostgreSQL)."""
    claim_isolation: str | None
    """The isolation level of sweeper transactions, when not the engine's: READ
    COMMITTED on MySQL/MariaDB, so a claim locks only the rows it takes."""
    probe_autocommit: bool
    """The due probe runs in autocommit (not on SQLite, whose reads take no lock)."""
    inline_probe_time: bool
    """The due probe's time is rendered into its cached statement at execution
    (PostgreSQL: a prepared statement's generic plan of `deadline <= $1` may scan the
    whole table when nothing is due); elsewhere it is bound."""
    clock_query: str | None
    """The query for the server's current UTC time; None where the database runs on
    this machine (SQLite)."""
    explicit_begin: bool
    """statekit sends BEGIN itself (SQLite, see sqlite.py): its own write units begin
    with BEGIN IMMEDIATE."""
    fractional_datetime: bool
    """DATETIME keeps microseconds only when asked (MySQL/MariaDB: fsp=6)."""


_CACHE: weakref.WeakKeyDictionary[Dialect, Capabilities] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def capabilities(engine: Engine, *, connect: bool = False) -> Capabilities:
    """The capabilities of `engine`'s database, detected once per dialect.

    On MySQL and MariaDB the server version decides SKIP LOCKED; before the first
    connection it is unknown and `skip_locked` reads False, unless `connect` is true:
    then a connection is made to read it.

    Raises:
        StoreError: `connect` was asked and connecting failed.
    """
    dialect = engine.dialect
    found = _CACHE.get(dialect)
    if found is not None:
        return found
    if connect and dialect.name in _MYSQL_FAMILY and dialect.server_version_info is None:
        # Imported here: errors.py needs tables.py, which reads this module.
        from statekit.store.sqlalchemy.errors import wrap

        with wrap("reading the server version", engine), engine.connect():
            pass  # the first connection reads the server version
    return of_dialect(dialect)


def of_dialect(dialect: Dialect) -> Capabilities:
    """The capabilities of `dialect` as far as it knows its server (see
    `capabilities`); cached once complete."""
    found = _CACHE.get(dialect)
    if found is not None:
        return found
    detected = _detect(dialect)
    if dialect.name not in _MYSQL_FAMILY or dialect.server_version_info is not None:
        with _LOCK:
            detected = _CACHE.setdefault(dialect, detected)
    return detected


def _detect(dialect: Dialect) -> Capabilities:
    name = dialect.name
    mysql = name in _MYSQL_FAMILY
    return Capabilities(
        name=name,
        driver=dialect.driver,
        skip_locked=_skip_locked(dialect),
        insert_ignore=(
            "on_conflict"
            if name in {"postgresql", "sqlite"}
            else "on_duplicate_key"
            if mysql
            else "plain"
        ),
        key_list=(
            "array"
            if name == "postgresql"
            else "json"
            if name == "sqlite" and _sqlite_version(dialect) >= (3, 38)
            else "expanding"
        ),
        one_statement_write=name == "postgresql",
        driver_path=(name, dialect.driver) in _DRIVER_PATH,
        one_statement_claim=name == "postgresql"
        or (name == "sqlite" and _sqlite_version(dialect) >= (3, 35)),
        claim_lanes=name == "postgresql",
        claim_isolation="READ COMMITTED" if mysql else None,
        probe_autocommit=name != "sqlite",
        inline_probe_time=name == "postgresql",
        clock_query=_CLOCK_QUERIES.get(name),
        explicit_begin=name == "sqlite",
        fractional_datetime=mysql,
    )


def _skip_locked(dialect: Dialect) -> bool:
    if dialect.name == "postgresql":
        return True
    if dialect.name not in _MYSQL_FAMILY:
        return False
    version = tuple(dialect.server_version_info or ())
    if not version:
        return False
    if getattr(dialect, "is_mariadb", False):
        return version >= (10, 6)
    return version >= (8, 0, 1)


def _sqlite_version(dialect: Dialect) -> tuple[int, ...]:
    """The SQLite library version of the dialect's driver (the stdlib's for pysqlite)."""
    dbapi: Any = dialect.dbapi or sqlite3
    return tuple(getattr(dbapi, "sqlite_version_info", sqlite3.sqlite_version_info))


def partial_index_kwargs(condition: Any) -> dict[str, Any]:
    """The `Index` keyword arguments that make it partial (`WHERE condition`) on the
    databases that support it; elsewhere the index covers every row."""
    return {f"{name}_where": condition for name in PARTIAL_INDEX_DIALECTS}


def ddl_url(name: str) -> str:
    """An engine URL (no database) whose dialect prints the DDL of dialect `name`."""
    return _DDL_URLS.get(name, f"{name}+pymysql://")
