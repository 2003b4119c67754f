"""``manage.py statekit ...`` runs the standalone CLI's commands on the project's
database and machines, and prints what ``statekit ... --db URL -m MODULE`` prints on
the same database (the SQLAlchemy store reading the tables the Django store wrote)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from django.core.management import call_command
from django.core.management.base import CommandError

from examples.django_orders.shop.models import Order
from statekit import ManualClock, Runner
from statekit.cli import cli
from statekit.contrib.django.hosting import host

MODULE = "tests.contrib.django.admin.sa_orders"
WINDOW = ("--since", "2026-01-01T00:00:00", "--now", "2026-01-10T00:00:00")
ROOT = Path(__file__).resolve().parents[4]


@pytest.fixture(scope="module")
def filled(database: str) -> str:
    """Three orders at known times: 1 shipped, 2 reserved, 3 cancelled."""
    clock = ManualClock(datetime(2026, 1, 2, tzinfo=UTC))
    runner = Runner(Order.__statekit_machine__, host().store, clock=clock)
    orders = [Order(customer=f"C{n}", total=Decimal(10 * n)) for n in (1, 2, 3)]
    for order in orders:
        runner.start(order)
    first, second, third = orders
    runner.fire(first, "reserve", actor="shop")
    clock.advance(minutes=5)
    runner.fire(first, "pay", amount=Decimal(10), reference="P-1")
    clock.advance(hours=2)
    runner.fire(first, "ship", carrier="DHL", tracking_number="T-1")
    runner.fire(second, "reserve", actor="shop")
    clock.advance(minutes=1)
    runner.fire(third, "cancel", actor="shop")
    return database


def ours(*args: str) -> str:
    """``manage.py statekit ARGS`` through `call_command`; its stdout."""
    out = io.StringIO()
    call_command("statekit", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def standalone(url: str, *args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--db", url, "-m", MODULE], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize(
    "args",
    [
        ("check",),
        ("history", "order", "1"),
        ("history", "order", "1", "--json"),
        ("stats", *WINDOW),
        ("stats", "--json", *WINDOW),
        ("stuck",),
        ("stuck", "--json"),
    ],
    ids=" ".join,
)
def test_a_reading_command_prints_what_the_standalone_one_prints(
    filled: str, args: tuple[str, ...]
) -> None:
    mine = ours(*args)
    assert mine.strip()
    assert mine == standalone(filled, *args)


def test_the_diagram_of_an_instance_is_the_standalone_ones(filled: str) -> None:
    mine = ours("diagram", "order", "--instance", "1", "-f", "mermaid")
    theirs = standalone(filled, "diagram", f"{MODULE}:Order", "--instance", "1", "-f", "mermaid")
    assert mine == theirs
    assert "class shipped current" in mine


def test_the_history_names_the_steps(filled: str) -> None:
    output = ours("history", "order", "1")
    assert re.search(r"1\s+reserve\s+pending\s+→?\s*stock_reserved", output) or "reserve" in output
    assert "ship" in output


@pytest.mark.parametrize(
    "args",
    [("history", "nosuch", "1"), ("diagram", "nosuch"), ("stats", "--machine", "nosuch")],
    ids=" ".join,
)
def test_an_unknown_machine_is_a_command_error_naming_what_there_is(
    filled: str, args: tuple[str, ...]
) -> None:
    """Worded as the standalone CLI words it (one `UnknownMachineError`), whichever
    command asks; a diagram's name that is neither a machine nor a module says so."""
    with pytest.raises(CommandError) as caught:
        call_command("statekit", *args, stdout=io.StringIO())
    assert caught.value.returncode == 1
    assert str(caught.value) == "unknown machine 'nosuch'; known: order"
    if args[0] != "diagram":
        result = CliRunner().invoke(cli, [*args, "--db", filled, "-m", MODULE])
        assert result.exit_code == 1
        assert result.output == "Error: unknown machine 'nosuch'; known: order\n"


def test_manage_py_runs_the_command_as_the_standalone_cli_does(filled: str, tmp_path: Path) -> None:
    """A real ``manage.py statekit`` process: click parses the line (its own -v,
    --json), exit codes as the standalone CLI's."""
    from tests.contrib.django.admin.support import django_database

    entry = django_database(filled)
    if entry["ENGINE"].endswith("sqlite3"):
        env = {"ORDERS_SQLITE": entry["NAME"]}
    else:
        env = {
            "ORDERS_DATABASE_URL": f"postgresql://{entry['USER']}@{entry['HOST']}:{entry['PORT']}"
            f"/{entry['NAME']}"
        }
    manage = [sys.executable, str(ROOT / "examples" / "django_orders" / "manage.py"), "statekit"]
    run_env = {**os.environ, **env, "PYTHONWARNINGS": "ignore"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*manage, *args], capture_output=True, text=True, env=run_env, cwd=tmp_path
        )

    done = run("history", "order", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout == standalone(filled, "history", "order", "1")
    failed = run("history", "order", "999")
    assert failed.returncode == 1
    assert failed.stderr.startswith("Error: ")
    shown = run("--help")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("Usage: manage.py statekit [OPTIONS] COMMAND")
    assert "installed apps' models" in shown.stdout
    listed = shown.stdout.split("Commands:")[1].split()
    assert "sweep" in listed
    assert "history" in listed
    assert "db" not in listed
    assert "demo" not in listed
