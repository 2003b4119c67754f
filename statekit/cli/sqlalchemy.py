"""The standalone CLI's host: the `Context` over an `SQLAlchemyStore` built from
`--db` and `--module`, and the DDL of `statekit db`.

The only CLI module that imports the SQL store (and SQLAlchemy); the commands import
it inside the function that needs it, so a command that reads no database works
without SQLAlchemy installed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import click
from sqlalchemy import Engine, Table, create_engine, create_mock_engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.schema import CreateIndex, CreateTable

from statekit.cli.context import Context
from statekit.cli.loading import load_modules
from statekit.cli.options import namespace
from statekit.errors import StatekitError
from statekit.store.sqlalchemy import SQLAlchemyStore, statekit_tables
from statekit.store.sqlalchemy.tables import DEFAULT_PREFIX

__all__ = [
    "StoreSchema",
    "create_tables",
    "ddl",
    "open_engine",
    "standalone_context",
]

_DRIVERS = {
    "MySQLdb": "mysql+pymysql://user@host/db (pip install 'statekit[mysql]')",
    "psycopg2": "postgresql+psycopg://user@host/db (pip install 'statekit[postgres]')",
    "pymysql": "pip install 'statekit[mysql]'",
    "psycopg": "pip install 'statekit[postgres]'",
}


def open_engine(db_url: str, *, create: bool = False) -> Engine:
    """An engine on `db_url`, disposed of when the command ends. A SQLite file must
    exist unless `create` (a mistyped path is not silently made a new database).

    Raises:
        StatekitError: the URL is not a database URL, names a missing SQLite file, or
            needs a driver that is not installed (the message names the one to use).
    """
    try:
        url = make_url(db_url)
        if url.get_backend_name() == "sqlite" and not create:
            database = url.database or ""
            if database and database != ":memory:" and not database.startswith("file:"):
                if not Path(database).exists():
                    raise StatekitError(f"no SQLite database at {database}")
        engine = create_engine(url)
    except ArgumentError as exc:
        raise StatekitError(
            "invalid database URL (expected e.g. sqlite:///app.db or "
            "postgresql+psycopg://user@host/db)"
        ) from exc
    except ModuleNotFoundError as exc:
        hint = _DRIVERS.get(exc.name or "", "install the driver the URL names")
        raise StatekitError(
            f"the URL's driver needs the {exc.name!r} module, which is not installed; use {hint}"
        ) from exc
    click.get_current_context().call_on_close(engine.dispose)
    return engine


def standalone_context(db_url: str, modules: Sequence[str]) -> Context:
    """The `Context` over an `SQLAlchemyStore` on `db_url` for the mapped classes in
    `modules`; its engine is disposed of when the command ends.

    Raises:
        StatekitError: the URL is not usable (see `open_engine`), or no module declares
            a mapped class with `__statekit_machine__`.
    """
    loaded = load_modules(list(modules))
    if not loaded.entities:
        raise StatekitError(
            f"no mapped classes with __statekit_machine__ in {', '.join(modules) or '(none)'}; "
            "name the module that declares them"
        )
    store = SQLAlchemyStore(open_engine(db_url), loaded.entities, **namespace())
    classes = {machine.name: entity_class for machine, entity_class in loaded.entities.items()}
    return Context.of(store, classes=classes)


class StoreSchema:
    """The tables of an `SQLAlchemyStore` and of the mapped classes it stores (a
    `HostSchema`): created where missing, or printed as DDL.

    Args:
        store: The store (its engine, table prefix and schema).
        classes: The mapped classes whose tables go with statekit's.
    """

    def __init__(self, store: SQLAlchemyStore, classes: Sequence[type]) -> None:
        self.store = store
        self.classes = list(classes)

    def create(self) -> list[str]:
        """Create statekit's tables and the classes' where missing; their names."""
        self.store.create_tables()
        created = [self.store.tables.transitions.name]
        for entity_class in self.classes:
            table = entity_class.__table__  # type: ignore[attr-defined]
            table.create(self.store.engine, checkfirst=True)
            created.append(table.name)
        return created

    def ddl(self, dialect: str) -> Iterator[str]:
        """The CREATE statements of the same tables in `dialect`."""
        tables = [*self.store.tables.all, *(c.__table__ for c in self.classes)]  # type: ignore[attr-defined]
        return _ddl(dialect, tables)


def create_tables(db_url: str, modules: Sequence[str]) -> list[str]:
    """Create statekit's tables, and those of the mapped classes in `modules`, where
    missing (a SQLite file is created too); returns the names of the tables."""
    engine = open_engine(db_url, create=True)
    loaded = load_modules(list(modules))
    store = SQLAlchemyStore(engine, loaded.entities, **namespace())
    return StoreSchema(store, list(loaded.entities.values())).create()


def ddl(dialect: str, modules: Sequence[str]) -> Iterator[str]:
    """The CREATE statements (tables, then their indexes) of statekit's tables and of
    the mapped classes in `modules`, in `dialect` (one of `statekit.cli.db.DIALECTS`)."""
    options = namespace()
    prefix = options.get("table_prefix", DEFAULT_PREFIX)
    tables = list(statekit_tables(prefix=prefix, schema=options.get("schema")).all)
    tables += [c.__table__ for c in load_modules(list(modules)).entities.values()]  # type: ignore[attr-defined]
    return _ddl(dialect, tables)


def _ddl(dialect: str, tables: Sequence[Table]) -> Iterator[str]:
    url = {"postgresql": "postgresql+psycopg://", "sqlite": "sqlite://"}.get(
        dialect, f"{dialect}+pymysql://"
    )
    engine = create_mock_engine(url, lambda *a, **k: None)
    for table in tables:
        yield f"{str(CreateTable(table).compile(dialect=engine.dialect)).strip()};"
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            yield f"{str(CreateIndex(index).compile(dialect=engine.dialect)).strip()};"
