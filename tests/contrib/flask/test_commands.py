"""``flask statekit ...`` runs the standalone CLI's commands on the app's database and
machines, and prints what ``statekit ... --db URL -m MODULE`` prints: on the same
database for the commands that read, on twin databases for those that write."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from sqlalchemy.orm import Session

from models.order import OrderWorkflow
from statekit import ManualClock, Runner
from statekit.cli import cli
from statekit.store.sqlalchemy import SQLAlchemyStore
from tests.contrib.flask.conftest import AppFactory
from tests.contrib.flask.shop import Order, ShopBase, sweep_until_dead_lettered
from tests.sql_support import engine_for, fresh_database

MODULE = "tests.contrib.flask.shop"
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00")
WINDOW = ("--since", "2026-01-01T00:00:00", "--now", "2026-01-10T00:00:00")


def fill(url: str) -> None:
    """Four orders at known times: 1 shipped, 2 reserved then compensated by the
    sweeper, 3 abandoned by it, 4 paid then stuck with its refund dead-lettered."""
    engine = engine_for(url)
    try:
        store = SQLAlchemyStore(engine, {OrderWorkflow.machine: Order})
        ShopBase.metadata.create_all(engine)
        store.create_tables()
        clock = ManualClock()
        runner = Runner(OrderWorkflow.machine, store, clock=clock)
        with Session(engine, expire_on_commit=False) as session, session.begin():
            for key in range(1, 5):
                order = Order(id=key, total=Decimal(10 * key))
                session.add(order)
                runner.start(order)
        for key in (1, 2, 4):
            clock.advance(minutes=5)
            runner.fire_by_key(key, "reserve", actor="shop")
        for key in (1, 4):
            clock.advance(minutes=5)
            runner.fire_by_key(key, "pay", amount=Decimal(10 * key), reference=f"P-{key}")
        runner.fire_by_key(1, "ship", carrier="DHL", tracking_number="T-1")
        sweep_until_dead_lettered(runner, clock)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def filled_url(shop_url: str) -> str:
    fill(shop_url)
    return shop_url


@pytest.fixture
def filled_app(filled_url: str) -> Iterator[Flask]:
    from tests.contrib.flask.shop import create_app, db

    app = create_app(filled_url)
    yield app
    with app.app_context():
        for engine in db.engines.values():
            engine.dispose()


def hosted(app: Flask, *args: str) -> Result:
    """``flask statekit ARGS``."""
    return app.test_cli_runner().invoke(args=["statekit", *args], catch_exceptions=False)


def standalone(url: str, *args: str, module: bool = True) -> Result:
    """``statekit ARGS --db URL -m MODULE``."""
    extra = ["--db", url, *(["-m", MODULE] if module else [])]
    return CliRunner().invoke(cli, [*args, *extra], catch_exceptions=False)


@pytest.mark.parametrize(
    ("args", "standalone_args"),
    [
        (("check",), None),
        (("history", "order", "1"), None),
        (("history", "order", "4", "--json"), None),
        (("stats", *WINDOW), None),
        (("stats", "--json", *WINDOW), None),
        (("stuck",), None),
        (("stuck", "--json"), None),
        (("diagram", "order", "-f", "mermaid"), ("diagram", f"{MODULE}:Order", "-f", "mermaid")),
        (
            ("diagram", "order", "--instance", "4", "-f", "dot"),
            ("diagram", f"{MODULE}:Order", "--instance", "4", "-f", "dot"),
        ),
        (
            ("diagram", f"{MODULE}:Order", "--heat", "-f", "mermaid"),
            ("diagram", f"{MODULE}:Order", "--heat", "-f", "mermaid"),
        ),
    ],
    ids=lambda value: " ".join(value) if value else "same",
)
def test_a_reading_command_prints_what_the_standalone_one_prints(
    filled_app: Flask,
    filled_url: str,
    args: tuple[str, ...],
    standalone_args: tuple[str, ...] | None,
) -> None:
    ours = hosted(filled_app, *args)
    theirs = standalone(filled_url, *(standalone_args or args))
    assert (ours.exit_code, theirs.exit_code) == (0, 0), ours.output + theirs.output
    assert ours.output == theirs.output
    assert ours.output.strip()


def test_the_stuck_listing_shows_the_dead_letter(filled_app: Flask) -> None:
    output = hosted(filled_app, "stuck").output
    assert output.startswith("order 4 in paid, stuck since")
    assert "refund_payment: dead-lettered" in output


def test_db_sql_prints_the_apps_tables(filled_app: Flask, filled_url: str) -> None:
    ours = hosted(filled_app, "db", "sql", "--dialect", "postgresql")
    theirs = CliRunner().invoke(cli, ["db", "sql", "--dialect", "postgresql", "-m", MODULE])
    assert ours.output == theirs.output
    assert "CREATE TABLE shop_orders" in ours.output


@pytest.fixture
def twins(shop_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two databases on the backend, filled alike."""
    backend = shop_url.partition(":")[0].partition("+")[0].replace("mysql", "mariadb")
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    with (
        fresh_database(backend, tmp_path / "a") as one,
        fresh_database(backend, tmp_path / "b") as two,
    ):
        yield one, two


@pytest.mark.parametrize(
    "steps",
    [
        [
            ("retry", "order", "4", "--actor", "ops"),
            ("sweep", "--once", "--json"),
            ("history", "order", "4"),
        ],
        [
            ("resolve", "order", "4", "cancelled", "--note", "by phone", "--actor", "ops"),
            ("history", "order", "4"),
        ],
        [("delete", "order", "4", "--keep-history"), ("stuck",), ("history", "order", "1")],
    ],
    ids=["retry-sweep", "resolve", "delete"],
)
def test_a_writing_command_does_what_the_standalone_one_does(
    make_app: AppFactory, twins: tuple[str, str], steps: list[tuple[str, ...]]
) -> None:
    ours_url, theirs_url = twins
    for url in twins:
        fill(url)
    from tests.contrib.flask.shop import create_app, db

    app = create_app(ours_url)
    try:
        for step in steps:
            ours = hosted(app, *step)
            theirs = standalone(theirs_url, *step)
            assert (ours.exit_code, theirs.exit_code) == (0, 0), ours.output + theirs.output
            # The twins' steps ran at different times: history shows when.
            assert TIME.sub("<time>", ours.output) == TIME.sub("<time>", theirs.output)
            assert ours.output.strip()
        if steps[0][0] in ("retry", "resolve"):
            assert "by ops" in ours.output  # the person's step is in the history
    finally:
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()


def test_db_create_makes_the_same_tables(make_app: AppFactory, twins: tuple[str, str]) -> None:
    from tests.contrib.flask.shop import create_app, db

    ours_url, theirs_url = twins
    app = create_app(ours_url)
    try:
        ours = hosted(app, "db", "create")
    finally:
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()
    theirs = standalone(theirs_url, "db", "create")
    assert (ours.exit_code, theirs.exit_code) == (0, 0), ours.output + theirs.output
    assert ours.output == theirs.output == "ok: statekit_transitions, shop_orders\n"


def test_sweep_takes_its_defaults_from_the_app_config(filled_url: str) -> None:
    from statekit.cli.app import HostedGroup
    from tests.contrib.flask.shop import create_app, db

    app = create_app(filled_url, STATEKIT_SWEEP_BATCH_SIZE=3, STATEKIT_SWEEP_INTERVAL=9.5)
    try:
        group = app.cli.commands["statekit"]
        assert isinstance(group, HostedGroup)
        assert group.commands["sweep"] is cli.commands["sweep"]  # the same command object
        with app.app_context():
            assert group.defaults is not None
            assert group.defaults()["sweep"]["batch_size"] == 3
            assert group.defaults()["sweep"]["interval"] == 9.5
        assert "demo" not in group.commands
        assert "no --db or --module is needed" in hosted(app, "--help").output
        result = hosted(app, "sweep", "--help")
        assert "STATEKIT_SWEEP_INTERVAL" in result.output
    finally:
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()


def test_an_error_is_one_line_and_exit_1(filled_app: Flask) -> None:
    result = filled_app.test_cli_runner().invoke(args=["statekit", "history", "order", "99"])
    assert result.exit_code == 1
    assert result.output == "Error: order 99 not found\n"


@pytest.mark.parametrize("args", [("history", "nosuch", "1"), ("diagram", "nosuch")], ids=" ".join)
def test_an_unknown_machine_names_the_apps_machines(
    filled_app: Flask, filled_url: str, args: tuple[str, ...]
) -> None:
    """A diagram's name that is neither one of the app's machines nor a module is
    an unknown machine too, worded as the standalone CLI words it."""
    result = filled_app.test_cli_runner().invoke(args=["statekit", *args])
    assert result.exit_code == 1
    known = ", ".join(sorted(filled_app.extensions["statekit"].machines))
    assert result.output == f"Error: unknown machine 'nosuch'; known: {known}\n"
    if args[0] == "history":
        theirs = CliRunner().invoke(cli, [*args, "--db", filled_url, "-m", MODULE])
        assert theirs.output == result.output
