"""The upgrade SQL in docs/upgrading.md turns an earlier version's tables into the
current ones, on SQLite, PostgreSQL and MariaDB.

An earlier version's database is built from today's live tables as they were then
(no retired tables; on MariaDB, key columns in the database's default collation).
After the documented SQL its statekit tables must reflect exactly like those of a
database created by this version, and keys differing in case must be two instances.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, delete, inspect, text

from models.order import OrderWorkflow
from statekit import InstanceNotFoundError, ManualClock, Runner, StoreError
from statekit.store.sqlalchemy import SQLAlchemyStore, statekit_tables
from tests.contract.test_store_contract_sql import (
    CLOCK_START,
    ContractBase,
    ContractOrder,
    new_contract_order,
)
from tests.sql_support import engine_for, fresh_database

DOC = Path(__file__).resolve().parents[2] / "docs" / "upgrading.md"
HEADINGS = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mariadb": "MariaDB"}


def upgrade_sql(backend: str) -> list[str]:
    """The statements of the doc's SQL blocks for `backend`, oldest change first (the
    doc lists the newest first)."""
    blocks = re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    marker = f"-- statekit upgrade: {HEADINGS[backend]}\n"
    ours = [b.removeprefix(marker) for b in reversed(blocks) if b.startswith(marker)]
    assert len(ours) == 2, f"one upgrade block per change for {backend}"
    return [s.strip() for block in ours for s in block.split(";") if s.strip()]


@contextmanager
def database(backend: str, directory: Path, *, version: str) -> Iterator[Engine]:
    """An engine on a fresh database with statekit's tables of the `"current"` or the
    `"earlier"` version."""
    directory.mkdir()
    with fresh_database(backend, directory) as url:
        engine = engine_for(url)
        try:
            if version == "current":
                statekit_tables(MetaData()).metadata.create_all(engine)
            else:
                create_earlier_version(engine)
            yield engine
        finally:
            engine.dispose()


def create_earlier_version(engine: Engine) -> None:
    tables = statekit_tables(MetaData())
    live = [tables.transitions, tables.compensations, tables.attempts]
    tables.metadata.create_all(engine, tables=live)
    with engine.begin() as conn:  # the outbox's indexes as they were: one, on every row
        conn.execute(
            text(
                "DROP INDEX ix_statekit_compensations_lease ON statekit_compensations"
                if _mysql(engine)
                else "DROP INDEX ix_statekit_compensations_lease"
            )
        )
        if not _mysql(engine):
            conn.execute(text("DROP INDEX ix_statekit_compensations_due"))
            conn.execute(
                text(
                    "CREATE INDEX ix_statekit_compensations_due "
                    "ON statekit_compensations (status, next_attempt_at)"
                )
            )
    if not _mysql(engine):
        return
    ci = "CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"  # the server's default
    with engine.begin() as conn:  # as an earlier version created them
        conn.execute(
            text(
                f"ALTER TABLE statekit_transitions MODIFY entity_type VARCHAR(64) {ci} NOT NULL, "
                f"MODIFY entity_key VARCHAR(128) {ci} NOT NULL, "
                f"MODIFY idempotency_key VARCHAR(128) {ci}"
            )
        )
        conn.execute(
            text(
                f"ALTER TABLE statekit_compensations MODIFY entity_type VARCHAR(64) {ci} "
                f"NOT NULL, MODIFY entity_key VARCHAR(128) {ci} NOT NULL"
            )
        )


def _mysql(engine: Engine) -> bool:
    return engine.dialect.name in {"mysql", "mariadb"}


def _where(index: Any) -> str | None:
    """A reflected index's WHERE (partial indexes), as text."""
    options = index.get("dialect_options", {})
    where = options.get("postgresql_where", options.get("sqlite_where"))
    return None if where is None else str(where)


def shape(engine: Engine) -> dict[str, Any]:
    """statekit's tables as the database reports them."""
    inspector = inspect(engine)
    found: dict[str, Any] = {}
    present = set(inspector.get_table_names())
    for table in statekit_tables(MetaData()).all:
        if table.name not in present:
            continue
        found[table.name] = (
            [
                (c["name"], str(c["type"]), c["nullable"], getattr(c["type"], "collation", None))
                for c in inspector.get_columns(table.name)
            ],
            inspector.get_pk_constraint(table.name)["constrained_columns"],
            sorted(
                (i["name"], tuple(i["column_names"]), _where(i))
                for i in inspector.get_indexes(table.name)
            ),
        )
    return found


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mariadb"])
def test_the_documented_upgrade_gives_the_current_tables(backend: str, tmp_path: Path) -> None:
    with database(backend, tmp_path / "new", version="current") as engine:
        expected = shape(engine)
    with database(backend, tmp_path / "old", version="earlier") as engine:
        earlier = shape(engine)
        # The outbox's indexes differ everywhere; on MariaDB the key columns' collation too.
        assert earlier["statekit_compensations"] != expected["statekit_compensations"]
        same = earlier["statekit_transitions"] == expected["statekit_transitions"]
        assert same is (backend != "mariadb")
        with engine.begin() as conn:
            for statement in upgrade_sql(backend):
                conn.execute(text(statement))
        assert shape(engine) == expected
        with engine.begin() as conn:
            for key in ("ABC", "abc"):
                conn.execute(
                    text(
                        "INSERT INTO statekit_transitions (entity_type, entity_key, seq, "
                        "event, source, target, at, idempotency_key) VALUES ('order', "
                        ":key, 1, 'reserve', 'pending', 'stock_reserved', "
                        "'2026-01-01 00:00:00', 'k')"
                    ),
                    {"key": key},
                )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mariadb"])
def test_before_the_upgrade_only_a_reused_key_fails_and_loudly(
    backend: str, tmp_path: Path
) -> None:
    with database(backend, tmp_path / "old", version="earlier") as engine:
        ContractBase.metadata.create_all(engine, tables=[ContractOrder.__table__])  # type: ignore[list-item]
        store = SQLAlchemyStore(engine, {OrderWorkflow.machine: ContractOrder})
        runner = Runner(OrderWorkflow.machine, store, clock=ManualClock(CLOCK_START))
        runner.start(new_contract_order("o1"))
        runner.fire_by_key("o1", "reserve")
        store.delete("order", "o1", keep_history=False)  # nothing to retire: works
        runner.start(new_contract_order("o1"))
        runner.fire_by_key("o1", "reserve")
        with engine.begin() as conn:
            conn.execute(delete(ContractOrder))
        with pytest.raises(StoreError, match="statekit_retired_transitions"):
            runner.start(new_contract_order("o1"))
        with pytest.raises(InstanceNotFoundError):
            store.load("order", "o1")
        runner.start(new_contract_order("o2"))
        assert runner.fire_by_key("o2", "reserve").seq == 1


def autogenerate(engine: Engine) -> list[tuple[str, str]]:
    """What Alembic's autogenerate would write for statekit's tables on an application's
    MetaData: (operation, table) pairs."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    app = MetaData()
    statekit_tables(app)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, app)
    found = []
    for change in diff:
        operation, target = change[0], change[1]
        found.append((operation, target.name if operation == "add_table" else target.table.name))
    return found


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mariadb"])
def test_alembic_autogenerate_owns_the_tables(backend: str, tmp_path: Path) -> None:
    with database(backend, tmp_path / "new", version="current") as engine:
        assert autogenerate(engine) == []  # the tables as created match their models
    with database(backend, tmp_path / "old", version="earlier") as engine:
        retired = [t.name for t in statekit_tables(MetaData()).all[3:]]
        # The new tables and their indexes; not the collation (see docs/upgrading.md).
        # The lease index too; not the due index's new WHERE (see docs/upgrading.md).
        assert sorted(autogenerate(engine)) == sorted(
            [("add_table", name) for name in retired]
            + [("add_index", name) for name in retired]
            + [("add_index", "statekit_compensations")]
        )
