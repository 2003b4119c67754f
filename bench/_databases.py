"""What the database benchmarks share: scratch databases and statement recording.

`Databases` gives each contestant a fresh SQLite file (in a temporary directory) or a
fresh PostgreSQL database (created from `STATEKIT_BENCH_POSTGRES_URL`), and removes
them all on exit. `listening` and `verb` let a benchmark see the statements an engine
sends.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy import event as sa_event

from statekit.store.sqlalchemy import sqlite_engine

POSTGRES_ENV = "STATEKIT_BENCH_POSTGRES_URL"
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_url() -> str:
    """The PostgreSQL server's URL: `STATEKIT_BENCH_POSTGRES_URL`, or the local default."""
    return os.environ.get(POSTGRES_ENV, POSTGRES_URL)


def postgres_available() -> str | None:
    """None when the PostgreSQL server answers, else why not."""
    engine = create_engine(postgres_url())
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    finally:
        engine.dispose()
    return None


@dataclass(frozen=True)
class Location:
    """Where one contestant's tables live on one database system."""

    dialect: str
    url: str  # SQLAlchemy URL
    path: str = ""  # the SQLite file

    def engine(self, begin: str = "DEFERRED") -> Engine:
        """An engine; SQLite gets statekit's configuration (WAL, FULL) and transactions
        that begin as `begin` says."""
        if self.dialect == "sqlite":
            return sqlite_engine(self.path, begin=begin)
        return create_engine(self.url)


class Databases:
    """Creates one database (or SQLite file) per contestant and removes them after."""

    def __init__(self, dialect: str, prefix: str) -> None:
        self.dialect = dialect
        self.prefix = prefix
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._created: list[str] = []
        self._admin: Engine | None = None

    def __enter__(self) -> Databases:
        if self.dialect == "sqlite":
            self._tmp = tempfile.TemporaryDirectory(prefix="statekit-bench-")
        else:
            self._admin = create_engine(postgres_url(), isolation_level="AUTOCOMMIT")
        return self

    def make(self, name: str) -> Location:
        """A fresh, empty database for the contestant `name`: the file `<name>.db`, or
        the PostgreSQL database `<prefix>_<name>`."""
        if self._tmp is not None:
            path = str(Path(self._tmp.name) / f"{name}.db")
            return Location("sqlite", f"sqlite+pysqlite:///{path}", path)
        assert self._admin is not None
        database = f"{self.prefix}_{name}"
        with self._admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{database}"'))
        self._created.append(database)
        url = self._admin.url.set(database=database)
        return Location("postgresql", url.render_as_string(hide_password=False))

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
        if self._admin is not None:
            with self._admin.connect() as conn:
                for database in self._created:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            self._admin.dispose()


def verb(statement: str) -> str:
    """The statement's first word in upper case; `BEGIN <mode>` keeps its mode."""
    words = statement.split(None, 2)
    if not words:
        return "?"
    if words[0].upper() == "BEGIN" and len(words) > 1:
        return f"BEGIN {words[1].upper()}"
    return words[0].upper()


@contextmanager
def listening(engine: Engine, hooks: Sequence[tuple[str, Callable[..., Any]]]) -> Iterator[None]:
    """Listen to the engine's events `(name, hook)` for the duration of the block."""
    for name, hook in hooks:
        sa_event.listen(engine, name, hook)
    try:
        yield
    finally:
        for name, hook in hooks:
            sa_event.remove(engine, name, hook)
