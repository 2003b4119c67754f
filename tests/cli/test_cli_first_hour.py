"""What a new user meets first on the command line: modules found from the project
folder, a window that bounds every figure, mistyped URLs and paths, and text from
the database that cannot take over the terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import update

from models.orm import ENTITIES, Base, OrderRow
from statekit.cli.output import printable
from statekit.clock import ManualClock
from statekit.runtime import Runner
from statekit.store.sqlalchemy import SQLAlchemyStore
from tests.cli.test_cli import T0, Shop, invoke, run
from tests.sql_support import engine_for

# -- stats: the window's end bounds every figure ----------------------------------------


def test_stats_counts_only_transitions_inside_the_window(shop: Shop) -> None:
    """Up to T0+30m the shop saw 4 reserves and 2 payments; later ones are outside."""
    at = (T0 + timedelta(minutes=30)).isoformat()
    result = invoke(
        "stats", "--db", shop.url, "-m", "models.orm", "--machine", "order",
        "--since", "3h", "--now", at, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    [order] = json.loads(result.stdout)["machines"]
    assert order["events"] == {"reserve": 4, "pay": 2}
    assert order["transitions"] == 6


def test_stats_does_not_wait_for_instances_that_entered_after_the_window(shop: Shop) -> None:
    at = (T0 + timedelta(minutes=5)).isoformat()  # before any order was reserved
    result = invoke(
        "stats", "--db", shop.url, "-m", "models.orm", "--machine", "order",
        "--since", "1h", "--now", at, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    [order] = json.loads(result.stdout)["machines"]
    states = {s["state"]: s for s in order["states"]}
    assert states["paid"]["waiting_median_seconds"] is None
    assert states["pending"]["waiting_median_seconds"] == 300.0  # all five, since T0


def test_stats_since_too_far_back_is_a_clear_error(sqlite_shop: Shop) -> None:
    result = invoke(
        "stats", "--db", sqlite_shop.url, "-m", "models.orm", "--since", "999999999999w"
    )
    assert result.exit_code == 2
    assert "--since" in result.stderr
    assert "too far back" in result.stderr


# -- modules from the project folder ----------------------------------------------------

SHOP_MODELS = """
from sqlalchemy.orm import DeclarativeBase
from statekit import State, Workflow


class LampWorkflow(Workflow, name="lamp"):
    off = State(initial=True)
    on = State()
    switch_on = off.to(on)
    switch_off = on.to(off)
"""


def test_modules_are_found_in_the_current_directory(tmp_path: Path) -> None:
    package = tmp_path / "shop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(textwrap.dedent(SHOP_MODELS))
    result = run("check", "-m", "shop.models", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok: lamp v1\n"


def test_a_relative_module_name_is_a_clear_error() -> None:
    result = invoke("check", "-m", ".models")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: '.models' is a relative module name")


# -- URLs and paths ------------------------------------------------------------------


def test_a_mistyped_sqlite_path_is_refused_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "shpo.db"
    result = invoke("history", "order", "1", "--db", f"sqlite:///{missing}", "-m", "models.orm")
    assert result.exit_code == 1
    assert result.stderr == f"Error: no SQLite database at {missing}\n"
    assert not missing.exists()


def test_db_create_makes_the_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    result = invoke("db", "create", "--db", f"sqlite:///{path}")
    assert result.exit_code == 0, result.stderr
    assert path.exists()


@pytest.mark.parametrize("command", [("history", "order", "1"), ("db", "create")])
def test_a_url_whose_driver_is_missing_names_the_one_to_use(command: tuple[str, ...]) -> None:
    result = invoke(*command, "--db", "mysql://root@127.0.0.1/test", "-m", "models.orm")
    assert result.exit_code == 1
    assert "MySQLdb" in result.stderr
    assert "mysql+pymysql://" in result.stderr


@pytest.mark.parametrize("command", [("history", "order", "1"), ("db", "create")])
def test_a_bad_url_reads_the_same_in_every_command(command: tuple[str, ...]) -> None:
    result = invoke(*command, "--db", "not a url", "-m", "models.orm")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: invalid database URL")


# -- text from the database ------------------------------------------------------------


def test_printable_escapes_control_characters() -> None:
    assert printable("plain text, ünïcode") == "plain text, ünïcode"
    assert printable("\x1b]0;owned\x07title") == "\\x1b]0;owned\\x07title"
    assert printable("a\nb\tc\r\x9b") == "a\\nb\\tc\\r\\x9b"
    assert printable("\u202eevil") == "\\u202eevil"  # bidirectional override


def test_history_escapes_what_the_database_holds(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hostile.db'}"
    engine = engine_for(url)
    try:
        Base.metadata.create_all(engine)
        store = SQLAlchemyStore(engine, ENTITIES)
        store.create_tables()
        orders = Runner(OrderRow.__statekit_machine__, store, clock=ManualClock(T0))
        orders.start(OrderRow(id=1, total=Decimal(10)))
        orders.fire_by_key(1, "reserve", actor="\x1b]52;c;cm0gLXJmIH4=\x07mallory")
        with engine.begin() as conn:
            conn.execute(
                update(OrderRow).where(OrderRow.id == 1).values(
                    stuck_at=T0, stuck_reason="\x1b[2J\x1b]0;pwned\x07"
                )
            )  # fmt: skip
    finally:
        engine.dispose()
    result = invoke("history", "order", "1", "--db", url, "-m", "models.orm")
    assert result.exit_code == 0, result.stderr
    assert "\x1b" not in result.stdout
    assert "\x07" not in result.stdout
    assert "by \\x1b]52;c;cm0gLXJmIH4=\\x07mallory" in result.stdout
    assert "\\x1b[2J\\x1b]0;pwned\\x07" in result.stdout
    listed = invoke("stuck", "--db", url, "-m", "models.orm")
    assert listed.exit_code == 0, listed.stderr
    assert "\x1b" not in listed.stdout
    assert "\\x1b[2J\\x1b]0;pwned\\x07" in listed.stdout


def test_every_command_takes_modules_the_same_way() -> None:
    import click

    from statekit.cli import cli

    def commands(group: click.Group) -> list[click.Command]:
        found: list[click.Command] = []
        for command in group.commands.values():
            found.extend(commands(command) if isinstance(command, click.Group) else [command])
        return found

    taking = [c for c in commands(cli) if any(p.name == "modules" for p in c.params)]
    assert len(taking) >= 10
    for command in taking:
        [param] = [p for p in command.params if p.name == "modules"]
        assert isinstance(param, click.Option), command.name
        assert set(param.opts) == {"--module", "-m"}, command.name
        assert param.envvar == "STATEKIT_MODULES", command.name


MAPPED_MODELS = """
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from statekit import State, Workflow
from statekit.store.sqlalchemy import StateMixin


class Base(DeclarativeBase):
    pass


class LampWorkflow(Workflow, name="lamp"):
    off = State(initial=True)
    on = State()
    switch_on = off.to(on)
    switch_off = on.to(off)


class Lamp(StateMixin, Base):
    __tablename__ = "lamps"
    __statekit_machine__ = LampWorkflow.machine
    id: Mapped[int] = mapped_column(primary_key=True)
    room: Mapped[str] = mapped_column(String(20))
"""


def test_the_installed_command_finds_a_projects_mapped_class(tmp_path: Path) -> None:
    """The `statekit` script itself (not `python -m`, no PYTHONPATH), run from the
    project folder, draws the machine of a mapped class, as the README shows."""
    package = tmp_path / "shop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(textwrap.dedent(MAPPED_MODELS))
    script = Path(sys.executable).with_name("statekit")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [str(script), "diagram", "shop.models:Lamp", "--format", "mermaid"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "off --> on" in result.stdout or "switch_on" in result.stdout
