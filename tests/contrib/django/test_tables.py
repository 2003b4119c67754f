"""The app's migrations match its models, and the tables they create mirror the
SQLAlchemy store's `statekit_tables()` column by column, on every backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connections
from sqlalchemy import Engine, MetaData, String, create_engine, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from statekit.store.sqlalchemy import StateMixin, statekit_tables
from tests.conftest import MARIADB_URL, POSTGRES_URL
from tests.sql_support import engine_for, fresh_database

TABLES = (
    "statekit_transitions",
    "statekit_compensations",
    "statekit_compensation_attempts",
    "statekit_retired_transitions",
    "statekit_retired_compensations",
    "statekit_retired_compensation_attempts",
)
BACKENDS = {"default": "sqlite", "postgresql": "postgresql", "mariadb": "mariadb"}


def test_the_migrations_match_the_models(alias: str) -> None:
    call_command("makemigrations", "statekit", check=True, dry_run=True, verbosity=0)


def django_engine(alias: str) -> Engine:
    """A SQLAlchemy engine on the database Django migrated for `alias`."""
    settings = connections[alias].settings_dict
    if alias == "default":
        return create_engine(f"sqlite:///{settings['NAME']}")
    server = POSTGRES_URL if alias == "postgresql" else MARIADB_URL
    return create_engine(make_url(server).set(database=settings["NAME"]))


@pytest.fixture(scope="module")
def sqlalchemy_engine(alias: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A fresh database of the same backend with the SQLAlchemy store's tables."""
    with fresh_database(BACKENDS[alias], Path(tmp_path_factory.mktemp("sa"))) as url:
        engine = engine_for(url)
        statekit_tables(MetaData()).metadata.create_all(engine)
        yield engine
        engine.dispose()


def described(engine: Engine, table: str) -> dict[str, Any]:
    """What a database says about one table: columns in order (type, collation,
    nullability), primary key, comment, unique constraints and indexes, by name."""
    found = inspect(engine)
    pk = found.get_pk_constraint(table)
    # SQLite keeps a constraint's name only in the table's CREATE text, which Django
    # writes without one; the error mapping there reads the message's columns.
    pk_name = None if engine.dialect.name == "sqlite" else pk.get("name")
    return {
        "columns": [
            (
                c["name"],
                str(c["type"]).lower().split(" collate")[0],
                getattr(c["type"], "collation", None),
                c["nullable"],
            )
            for c in found.get_columns(table)
        ],
        "primary key": (pk_name, tuple(pk["constrained_columns"])),
        "comment": (
            found.get_table_comment(table)["text"] if engine.dialect.supports_comments else None
        ),
        "unique": sorted(
            (u["name"], tuple(u["column_names"])) for u in found.get_unique_constraints(table)
        ),
        "indexes": sorted(
            (i["name"], tuple(i["column_names"]), bool(i["unique"]))
            for i in found.get_indexes(table)
            if not i.get("duplicates_constraint")
        ),
    }


@pytest.mark.parametrize("table", TABLES)
def test_the_tables_mirror_the_sqlalchemy_metadata(
    alias: str, sqlalchemy_engine: Engine, table: str
) -> None:
    engine = django_engine(alias)
    try:
        assert described(engine, table) == described(sqlalchemy_engine, table)
    finally:
        engine.dispose()


class StateBase(DeclarativeBase):
    """The SQLAlchemy twin of the test app's order table, state columns only."""


class StateRow(StateMixin, StateBase):
    __tablename__ = "testapp_order"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)


def test_the_state_columns_are_those_of_the_sqlalchemy_mixin(
    alias: str, sqlalchemy_engine: Engine
) -> None:
    StateBase.metadata.create_all(sqlalchemy_engine)
    engine = django_engine(alias)
    try:
        django_columns = {c[0]: c for c in described(engine, "testapp_order")["columns"]}
        mixin_columns = described(sqlalchemy_engine, "testapp_order")["columns"]
        assert [django_columns[c[0]] for c in mixin_columns[1:]] == mixin_columns[1:]
        indexed = {columns for _, columns, _ in described(engine, "testapp_order")["indexes"]}
        assert ("state_deadline_at",) in indexed
    finally:
        engine.dispose()


def test_the_app_passes_djangos_system_checks_without_a_warning(alias: str) -> None:
    """No models.W046 on SQLite: the table comments are written by the migration
    where the database keeps them, not declared with `db_table_comment`."""
    from django.apps import apps
    from django.core import checks

    found = checks.run_checks(app_configs=[apps.get_app_config("statekit")], databases=[alias])
    assert found == []
