"""The commands over a `Context` a host builds itself: here over a `MemoryStore`, the
way a Flask extension or a Django management command will hand theirs over.

The same orders (`tests.contract.reads_contract.fill`) go into a `MemoryStore` and into a SQLite
file; the commands print the same over the host's context as the standalone CLI
prints from `--db` and `--module`.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from click.testing import CliRunner, Result

from models.orm import Base, OrderRow
from statekit import MemoryStore
from statekit.cli import cli
from statekit.cli.context import Context
from statekit.store.sqlalchemy import SQLAlchemyStore
from tests.contract.reads_contract import MACHINE, fill
from tests.sql_support import engine_for, fresh_database
from tests.support import new_order

STATS = (
    "stats",
    "--machine",
    "order",
    "--since",
    "2026-01-05T09:00:00",
    "--now",
    "2026-01-05T12:00:00",
)


@pytest.fixture(scope="module")
def memory_context() -> Context:
    store = MemoryStore([MACHINE])
    fill(store, lambda n: new_order(str(n), total=str(10 * n)))
    return Context.of(store)


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fresh_database("sqlite", tmp_path_factory.mktemp("context")) as url:
        engine = engine_for(url)
        Base.metadata.create_all(engine)
        store = SQLAlchemyStore(engine, {MACHINE: OrderRow})
        store.create_tables()
        fill(store, lambda n: OrderRow(id=n, total=Decimal(10 * n)))
        engine.dispose()
        yield url


def hosted(context: Context, *args: str) -> Result:
    """`statekit ARGS` with the host's context as click's context object."""
    return CliRunner().invoke(cli, list(args), obj=context, catch_exceptions=False)


def standalone(url: str, *args: str) -> Result:
    """`statekit ARGS --db URL -m models.orm`."""
    return CliRunner().invoke(cli, [*args, "--db", url, "-m", "models.orm"], catch_exceptions=False)


@pytest.mark.parametrize(
    "args",
    [
        ("history", "order", "1"),
        ("history", "order", "3", "--json"),
        STATS,
        (*STATS, "--json"),
        ("stuck",),
        ("diagram", "models.order:OrderWorkflow", "--heat", "--format", "mermaid"),
        ("diagram", "models.order:OrderWorkflow", "--instance", "1", "--format", "mermaid"),
    ],
    ids=["history", "history-json", "stats", "stats-json", "stuck", "heat", "instance"],
)
def test_a_host_context_prints_what_the_standalone_cli_prints(
    memory_context: Context, sqlite_url: str, args: tuple[str, ...]
) -> None:
    over_memory = hosted(memory_context, *args)
    assert over_memory.exit_code == 0, over_memory.output
    over_sql = standalone(sqlite_url, *args)
    assert over_sql.exit_code == 0, over_sql.output
    assert over_memory.stdout == over_sql.stdout
    assert over_memory.stdout.strip()


def test_the_history_comes_from_the_hosts_store(memory_context: Context) -> None:
    result = hosted(memory_context, "history", "order", "3")
    assert result.stdout.splitlines()[:5] == [
        "order 3: paid (version 3)",
        "  since     2026-01-05T09:50:00+00:00",
        "  deadline  none",
        "  STUCK     since 2026-01-05T11:00:00+00:00: payment never settled",
        "  next      ship, refund",
    ]


def test_stats_over_a_host_context_needs_no_module(memory_context: Context) -> None:
    result = hosted(memory_context, *STATS)
    assert result.stdout.splitlines()[0] == (
        "order (v1): 10 transition(s) from 2026-01-05 09:00:00 to 2026-01-05 12:00:00 UTC"
    )


def test_check_over_a_host_context_checks_its_machines_and_stored_rows(
    memory_context: Context,
) -> None:
    result = hosted(memory_context, "check")
    assert (result.exit_code, result.stdout) == (0, "ok: order v1\n")


def test_delete_goes_to_the_hosts_store() -> None:
    store = MemoryStore([MACHINE])
    fill(store, lambda n: new_order(str(n), total=str(10 * n)))
    result = hosted(Context.of(store), "delete", "order", "2")
    assert result.stdout == "order 2: deleted (history deleted)\n"
    assert store.count_by_state("order") == {"shipped": 1, "paid": 1, "pending": 1, "cancelled": 1}


def test_a_missing_instance_is_one_line(memory_context: Context) -> None:
    result = hosted(memory_context, "history", "order", "9")
    assert (result.exit_code, result.stderr) == (1, "Error: order 9 not found\n")


def test_without_a_host_context_the_options_are_still_required() -> None:
    result = CliRunner().invoke(cli, ["history", "order", "1"])
    assert result.exit_code == 2
    assert "Missing option '--db'" in result.stderr


def test_the_help_still_marks_the_standalone_options_required() -> None:
    result = CliRunner().invoke(cli, ["history", "--help"])
    assert "[env var: STATEKIT_DB; required]" in " ".join(result.stdout.split())


def test_db_create_asks_for_a_database_under_a_host_without_a_schema(
    memory_context: Context,
) -> None:
    assert memory_context.schema is None  # a MemoryStore has no tables to create
    result = CliRunner().invoke(cli, ["db", "create"], obj=memory_context)
    assert result.exit_code == 2
    assert "db create needs the database: give --db URL (or STATEKIT_DB)" in result.stderr
