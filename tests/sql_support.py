"""Fresh databases on SQLite, PostgreSQL and MariaDB for the SQL store tests.

Each database is created for the tests that use it and dropped afterwards; the
servers' own `test` databases are only used to issue CREATE/DROP DATABASE.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import OperationalError

from statekit.store.sqlalchemy import sqlite_engine
from tests.conftest import MARIADB_URL, POSTGRES_URL, missing_service

BACKENDS = ("sqlite", "postgresql", "mariadb")

_SERVERS = {
    "postgresql": (POSTGRES_URL, "STATEKIT_TEST_POSTGRES_URL"),
    "mariadb": (MARIADB_URL, "STATEKIT_TEST_MARIADB_URL"),
}


@contextmanager
def example_engine(url: str) -> Iterator[Engine]:
    """An engine on `url` with the example tables (`models.orm`) and statekit's created;
    disposed of afterwards."""
    from models.orm import Base
    from statekit.store.sqlalchemy import statekit_tables

    engine = engine_for(url)
    Base.metadata.create_all(engine)
    statekit_tables().metadata.create_all(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def engine_for(url: str, **kwargs: object) -> Engine:
    """An engine on `url`, with statekit's SQLite configuration for SQLite files."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return sqlite_engine(parsed.database or "", **kwargs)  # type: ignore[arg-type]
    return create_engine(url, **kwargs)  # type: ignore[arg-type]


@contextmanager
def fresh_database(backend: str, directory: Path) -> Iterator[str]:
    """Yield the URL of a new, empty database on `backend`; drop it afterwards."""
    if backend == "sqlite":
        yield f"sqlite+pysqlite:///{directory / f'statekit-{uuid.uuid4().hex[:8]}.db'}"
        return
    server_url, variable = _SERVERS[backend]
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    name = f"statekit_t_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except OperationalError as exc:
        admin.dispose()
        missing_service(
            f"{backend} at {make_url(server_url).render_as_string(hide_password=True)} "
            f"({str(exc.orig).strip().splitlines()[0]})",
            f"start the server or point {variable} at one",
        )
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        drop = f"DROP DATABASE IF EXISTS {name}"
        if backend == "postgresql":
            drop += " WITH (FORCE)"
        with admin.connect() as conn:
            conn.execute(text(drop))
        admin.dispose()


def kill_other_connections(url: str) -> None:
    """End every other session on the server database at `url`, as a restart would:
    `pg_terminate_backend` on PostgreSQL, `KILL` on MariaDB and MySQL."""
    admin = create_engine(url)
    with admin.connect() as conn:
        if admin.dialect.name == "postgresql":
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        else:
            others = conn.execute(
                text(
                    "SELECT id FROM information_schema.processlist "
                    "WHERE db = DATABASE() AND id <> CONNECTION_ID()"
                )
            ).scalars()
            for other in list(others):
                conn.execute(text(f"KILL {int(other)}"))
    admin.dispose()
