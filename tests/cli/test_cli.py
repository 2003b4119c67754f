"""The `statekit` command line, through click's runner and as subprocesses.

A small shop (orders fired through a `Runner` with a `ManualClock`, so every time is
known) is written once per backend; `history`, `diagram`, `stats` and `check` then
read it. Expected DOT and Mermaid of the instance and heat views are snapshots in
tests/snapshots/ (rewrite with STATEKIT_UPDATE_SNAPSHOTS=1); the machine view must
equal the checked-in diagrams/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import inspect, text, update

from models.orm import ENTITIES, Base, OrderRow
from statekit.cli import cli
from statekit.cli.options import parse_since
from statekit.cli.stats import percentile
from statekit.clock import ManualClock
from statekit.runtime import Runner
from statekit.store.sqlalchemy import SQLAlchemyStore
from tests.sql_support import engine_for, fresh_database
from tests.unit.test_diagrams import check_snapshot

ROOT = Path(__file__).resolve().parents[2]
DIAGRAMS = ROOT / "diagrams"
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
AT_END = (T0 + timedelta(hours=3)).isoformat()
MAGIC = {"svg": b"<svg", "png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF-"}
MISSING_DOT = (
    "Error: Graphviz 'dot' was not found; install Graphviz (e.g. apt-get install graphviz) "
    "or use --format dot|mermaid\n"
)


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run `statekit ARGS` in-process; stdout and stderr are kept apart."""
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def run(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m statekit ARGS` as a subprocess, with the source tree importable."""
    environment = {**os.environ, **(env or {})}
    environment["PYTHONPATH"] = os.pathsep.join(
        p for p in (environment.get("PYTHONPATH"), str(ROOT)) if p
    )
    return subprocess.run(
        [sys.executable, "-m", "statekit", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# -- a shop with known times ---------------------------------------------------------


@dataclass(frozen=True)
class Shop:
    url: str


def _fill(url: str) -> None:
    """Five orders, fired at known times from T0 (see the expected figures below).

    - 1: reserve +10m, pay +20m, ship +2h20m      (shipped)
    - 2: reserve +10m, pay +30m                   (paid)
    - 3: reserve +10m, pay +50m, then marked stuck (paid, stuck)
    - 4: never touched                            (pending)
    - 5: reserve +10m, cancel +1h10m              (cancelled)
    """
    engine = engine_for(url)
    try:
        Base.metadata.create_all(engine)
        store = SQLAlchemyStore(engine, ENTITIES)
        store.create_tables()
        clock = ManualClock(T0)
        orders = Runner(OrderRow.__statekit_machine__, store, clock=clock)
        for number in range(1, 6):
            orders.start(OrderRow(id=number, total=Decimal(10 * number)))

        def at(minutes: int) -> None:
            clock.set(T0 + timedelta(minutes=minutes))

        at(10)
        for number in (1, 2, 3, 5):
            orders.fire_by_key(number, "reserve", actor="shop")
        for minutes, number in ((20, 1), (30, 2), (50, 3)):
            at(minutes)
            orders.fire_by_key(
                number,
                "pay",
                actor="payments",
                amount=Decimal(10 * number),
                reference=f"PAY-{number}",
            )
        at(70)
        orders.fire_by_key(5, "cancel", actor="clerk")
        at(140)
        orders.fire_by_key(1, "ship", actor="warehouse", carrier="DHL", tracking_number="T1")
        with engine.begin() as conn:  # what the sweeper would do to order 3
            conn.execute(
                update(OrderRow)
                .where(OrderRow.id == 3)
                .values(stuck_at=T0 + timedelta(hours=2), stuck_reason="payment never settled")
            )
    finally:
        engine.dispose()


# -- help and environment variables --------------------------------------------------


def _commands(
    command: click.Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from _commands(sub, (*path, name))


def test_every_option_has_a_statekit_env_var_shown_in_help() -> None:
    checked = 0
    for path, command in _commands(cli):
        result = invoke(*path, "--help")
        assert result.exit_code == 0, path
        assert (command.help or "").split("\n")[0].strip(), f"{path} has no help text"
        help_text = " ".join(result.stdout.split())
        for param in command.params:
            if not isinstance(param, click.Option) or param.name in {"help", "version"}:
                continue
            assert isinstance(param.envvar, str), f"{path} {param.opts} has no env var"
            assert param.envvar.startswith("STATEKIT_"), (path, param.opts)
            assert f"env var: {param.envvar}" in help_text, (path, param.opts)
            checked += 1
    assert checked >= 20
    names = {path[-1] for path, _ in _commands(cli) if path}
    assert {"check", "db", "sql", "create", "history", "diagram", "stats", "demo"} <= names


def test_top_level_help_lists_the_commands() -> None:
    result = invoke("--help")
    for name in ("check", "db", "diagram", "history", "stats", "demo"):
        assert f"  {name} " in result.stdout
    assert "STATEKIT_VERBOSE" in result.stdout


def test_env_vars_set_the_options(sqlite_shop: Shop) -> None:
    result = invoke(
        "diagram",
        "models.order:OrderWorkflow",
        env={
            "STATEKIT_DB": sqlite_shop.url,
            "STATEKIT_MODULES": "models.orm",
            "STATEKIT_INSTANCE": "1",
            "STATEKIT_DIAGRAM_FORMAT": "mermaid",
        },
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith('---\ntitle: "order 1: shipped"\n')


# -- check ---------------------------------------------------------------------------

BROKEN_MODULE = """
from statekit import State, Workflow

class LedgerWorkflow(Workflow):
    draft = State(initial=True)
    sent = State(initial=True)
    archived = State(final=True)
    send = draft.to(sent)
    reopen = archived.to(draft, guard="is_allowed")
"""


def test_check_passes_valid_modules() -> None:
    result = invoke("check", "-m", "models.order", "-m", "models.ticket", "-m", "models.travel")
    assert result.exit_code == 0
    assert result.stdout == "ok: order v1, ticket v1, trip v1\n"


def test_check_lists_every_offender_of_a_broken_module(tmp_path: Path) -> None:
    (tmp_path / "broken_ledger.py").write_text(textwrap.dedent(BROKEN_MODULE))
    result = run("check", "-m", "broken_ledger", env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines == [
        "ledger: several initial states: draft, sent (mark exactly one)",
        "ledger: transition 'reopen' (archived -> draft): leaves final state 'archived'",
        "ledger: non-final state 'sent' has no way out (no transition leaves it)",
        "ledger: transition 'reopen' (archived -> draft): unknown guard 'is_allowed'",
        "Error: 4 problem(s) found",
    ]
    assert result.stdout == ""


def test_check_reports_rows_in_unknown_states(tmp_path: Path) -> None:
    with fresh_database("sqlite", tmp_path) as url:
        _fill(url)
        engine = engine_for(url)
        with engine.begin() as conn:
            conn.execute(text("UPDATE orders SET state = 'lost' WHERE id IN (4, 5)"))
            conn.execute(text("UPDATE orders SET state_definition_version = 9 WHERE id = 1"))
        engine.dispose()
        result = invoke("check", "-m", "models.orm", "--db", url)
    assert result.exit_code == 1
    assert "order: 2 row(s) of OrderRow in unknown state 'lost'" in result.stderr
    assert "order: 1 row(s) of OrderRow under unknown definition version 9" in result.stderr
    assert result.stderr.endswith("Error: 2 problem(s) found\n")


def test_check_on_a_clean_database(shop: Shop) -> None:
    result = invoke("check", "-m", "models.orm", "--db", shop.url)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("ok: order v1")


# -- db ------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite", "mariadb"])
def test_db_sql_prints_named_constraints_and_the_due_index(dialect: str) -> None:
    result = invoke("db", "sql", "--dialect", dialect, "-m", "models.orm")
    assert result.exit_code == 0
    ddl = result.stdout
    assert "CREATE TABLE statekit_transitions" in ddl
    assert "CONSTRAINT pk_statekit_transitions PRIMARY KEY (entity_type, entity_key, seq)" in ddl
    assert (
        "CONSTRAINT uq_statekit_transitions_idempotency "
        "UNIQUE (entity_type, entity_key, idempotency_key)"
    ) in ddl
    for retired in ("transitions", "compensations", "compensation_attempts"):
        assert f"CREATE TABLE statekit_retired_{retired} (" in ddl
    exact = " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin" if dialect == "mariadb" else ""
    assert f"\tentity_key VARCHAR(128){exact} NOT NULL, \n" in ddl
    assert f"\tidempotency_key VARCHAR(128){exact}, \n" in ddl
    assert "CREATE TABLE orders" in ddl
    due = "CREATE INDEX ix_orders_statekit_due ON orders (state_deadline_at)"
    if dialect == "mariadb":  # no partial indexes there: a plain one
        assert f"{due};" in ddl
    else:
        assert f"{due} WHERE state_deadline_at IS NOT NULL;" in ddl


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_db_create_creates_the_tables(backend: str, tmp_path: Path) -> None:
    with fresh_database(backend, tmp_path) as url:
        result = invoke("db", "create", "--db", url, "-m", "models.orm")
        assert result.exit_code == 0, result.stderr
        assert result.stdout.startswith("ok: statekit_transitions")
        again = invoke("db", "create", "--db", url, "-m", "models.orm")
        assert again.exit_code == 0, again.stderr
        engine = engine_for(url)
        tables = set(inspect(engine).get_table_names())
        engine.dispose()
    assert {"statekit_transitions", "orders", "tickets", "trips"} <= tables


# -- history -------------------------------------------------------------------------


def test_history_text(shop: Shop) -> None:
    result = invoke("history", "order", "1", "--db", shop.url, "-m", "models.orm")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "order 1: shipped (version 3)",
        "  since     2026-01-05T11:20:00+00:00",
        "  deadline  none",
        "  next      deliver, refund",
        "  path",
        "      1. 2026-01-05T09:10:00+00:00  pending --reserve--> stock_reserved by shop",
        "      2. 2026-01-05T09:20:00+00:00  stock_reserved --pay--> paid by payments"
        "  amount=10, method=card, reference=PAY-1",
        "      3. 2026-01-05T11:20:00+00:00  paid --ship--> shipped by warehouse"
        "  carrier=DHL, tracking_number=T1",
    ]


def test_history_json_shows_a_stuck_instance(shop: Shop) -> None:
    result = invoke("history", "order", "3", "--db", shop.url, "-m", "models.orm", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["state"] == "paid"
    assert report["version"] == 2
    assert report["stuck"] is True
    assert report["stuck_reason"] == "payment never settled"
    assert report["next_events"] == ["ship", "refund"]
    assert [(p["seq"], p["event"], p["actor"]) for p in report["path"]] == [
        (1, "reserve", "shop"),
        (2, "pay", "payments"),
    ]
    assert report["path"][1]["at"] == "2026-01-05T09:50:00+00:00"


# -- diagram -------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "suffix"), [("dot", ".dot"), ("mermaid", ".mmd")])
def test_diagram_text_of_the_machine_equals_diagrams(fmt: str, suffix: str) -> None:
    result = invoke("diagram", "models.order:OrderWorkflow", "--format", fmt)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (DIAGRAMS / f"order{suffix}").read_text(encoding="utf-8")
    mapped = invoke("diagram", "models.orm:OrderRow", "-f", fmt)  # a mapped class works too
    assert mapped.stdout == result.stdout


@pytest.mark.parametrize(
    ("view", "args"),
    [
        ("instance", ("--instance", "1")),
        ("heat", ("--heat",)),
    ],
)
@pytest.mark.parametrize(("fmt", "suffix"), [("dot", ".dot"), ("mermaid", ".mmd")])
def test_diagram_text_of_the_database_views(
    shop: Shop, view: str, args: tuple[str, ...], fmt: str, suffix: str
) -> None:
    result = invoke(
        "diagram",
        "models.order:OrderWorkflow",
        *args,
        "-f",
        fmt,
        "--db",
        shop.url,
        "-m",
        "models.orm",
    )
    assert result.exit_code == 0, result.stderr
    check_snapshot(f"cli_order_{view}{suffix}", result.stdout)


def test_diagram_heat_counts_and_fades(shop: Shop) -> None:
    result = invoke("diagram", "models.orm:OrderRow", "--heat", "-f", "mermaid", "--db", shop.url)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "stock_reserved --> paid : pay (3)" in out
    assert "pending --> stock_reserved : reserve (4)" in out
    assert "shipped --> delivered : deliver (0)" in out
    assert "class " in out
    assert "faded" in out


def test_diagram_heat_since_limits_the_counts(shop: Shop) -> None:
    since = (T0 + timedelta(minutes=40)).isoformat()
    result = invoke(
        "diagram",
        "models.orm:OrderRow",
        "--heat",
        "-f",
        "mermaid",
        "--db",
        shop.url,
        "--since",
        since,
    )
    assert result.exit_code == 0, result.stderr
    assert "stock_reserved --> paid : pay (1)" in result.stdout
    assert "pending --> stock_reserved : reserve (0)" in result.stdout


@pytest.mark.usefixtures("dot_binary")
@pytest.mark.parametrize("fmt", ["svg", "png", "pdf"])
@pytest.mark.parametrize(
    "args", [(), ("--instance", "2"), ("--heat",)], ids=["machine", "instance", "heat"]
)
def test_diagram_images(sqlite_shop: Shop, tmp_path: Path, fmt: str, args: tuple[str, ...]) -> None:
    output = tmp_path / f"diagram.{fmt}"
    db = ("--db", sqlite_shop.url, "-m", "models.orm") if args else ()
    result = invoke("diagram", "models.order:OrderWorkflow", *args, *db, "-o", str(output))
    assert result.exit_code == 0, result.stderr
    data = output.read_bytes()
    assert MAGIC[fmt] in data[:300]
    assert result.stderr == f"wrote {output} ({fmt}, {len(data)} bytes)\n"


@pytest.mark.usefixtures("dot_binary")
def test_diagram_svg_goes_to_stdout_and_format_follows_the_suffix(tmp_path: Path) -> None:
    result = invoke("diagram", "models.order:OrderWorkflow")
    assert result.exit_code == 0
    assert "<svg" in result.stdout
    assert result.stdout.rstrip().endswith("</svg>")
    output = tmp_path / "order.mmd"
    assert invoke("diagram", "models.order:OrderWorkflow", "-o", str(output)).exit_code == 0
    assert output.read_text() == (DIAGRAMS / "order.mmd").read_text()


@pytest.mark.parametrize("fmt", ["png", "pdf"])
def test_diagram_binary_formats_need_an_output_file(fmt: str) -> None:
    result = invoke("diagram", "models.order:OrderWorkflow", "-f", fmt)
    assert result.exit_code == 1
    assert result.stderr == f"Error: {fmt} is a binary format: write it to a file with -o FILE\n"
    assert result.stdout == ""


def test_diagram_without_dot_says_how_to_fix_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    result = invoke("diagram", "models.order:OrderWorkflow", "-f", "svg")
    assert result.exit_code == 1
    assert result.stderr == MISSING_DOT
    text_still_works = invoke("diagram", "models.order:OrderWorkflow", "-f", "dot")
    assert text_still_works.exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--instance", "1"), "Error: --instance reads the database: give --db URL"),
        (("--heat",), "Error: --heat reads the database: give --db URL"),
        (("--heat", "--instance", "1", "--db", "sqlite://"), "Error: choose one of"),
        (("--since", "7d"), "Error: --since limits the counts of --heat; add --heat"),
        (
            ("--heat", "--db", "sqlite://"),
            "Error: no mapped classes with __statekit_machine__ in models.order",
        ),
    ],
)
def test_diagram_usage_errors_are_one_line(args: tuple[str, ...], message: str) -> None:
    result = invoke("diagram", "models.order:OrderWorkflow", *args)
    assert result.exit_code == 1
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1


def test_diagram_of_an_unknown_instance(sqlite_shop: Shop) -> None:
    result = invoke("diagram", "models.orm:OrderRow", "--instance", "99", "--db", sqlite_shop.url)
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert "99" in result.stderr


# -- stats ---------------------------------------------------------------------------

EXPECTED_ORDER_STATES = {
    # state: (now, stuck, left, median, p95, waiting median, waiting p95), in seconds
    "pending": (1, 0, 0, None, None, 10800.0, 10800.0),
    "stock_reserved": (0, 0, 4, 1800.0, 3420.0, None, None),
    "paid": (2, 1, 1, 7200.0, 7200.0, 8400.0, 8940.0),
    "shipped": (1, 0, 0, None, None, 2400.0, 2400.0),
    "delivered": (0, 0, 0, None, None, None, None),
    "cancelled": (1, 0, 0, None, None, None, None),
    "refunded": (0, 0, 0, None, None, None, None),
}


def stats_of(shop: Shop, *args: str) -> Result:
    """`statekit stats` on the shop's database as of three hours after T0."""
    result = invoke("stats", "--db", shop.url, "-m", "models.orm", "--now", AT_END, *args)
    assert result.exit_code == 0, result.stderr
    return result


def _order_report(stdout: str) -> dict[str, Any]:
    machines = {m["machine"]: m for m in json.loads(stdout)["machines"]}
    order: dict[str, Any] = machines["order"]
    return order


def test_stats_json_has_the_known_figures(shop: Shop) -> None:
    result = stats_of(shop, "--since", "3h", "--json")
    report = json.loads(result.stdout)
    assert report["since"] == T0.isoformat()
    assert report["now"] == AT_END
    assert [m["machine"] for m in report["machines"]] == ["order", "ticket", "trip"]
    order = _order_report(result.stdout)
    assert order["transitions"] == 9
    assert order["events"] == {"reserve": 4, "pay": 3, "cancel": 1, "ship": 1}
    figures = {
        s["state"]: (
            s["now"],
            s["stuck"],
            s["left"],
            s["median_seconds"],
            s["p95_seconds"],
            s["waiting_median_seconds"],
            s["waiting_p95_seconds"],
        )
        for s in order["states"]
    }
    assert figures == EXPECTED_ORDER_STATES


def test_stats_window_leaves_out_older_transitions(shop: Shop) -> None:
    result = stats_of(shop, "--machine", "order", "--since", "1h", "--json")
    assert len(json.loads(result.stdout)["machines"]) == 1
    order = _order_report(result.stdout)
    assert order["events"] == {"ship": 1}
    states = {s["state"]: s for s in order["states"]}
    assert states["paid"]["left"] == 1
    assert states["paid"]["median_seconds"] == 7200.0
    assert states["stock_reserved"]["left"] == 0


def test_stats_text(shop: Shop) -> None:
    result = stats_of(shop, "--machine", "order", "--since", "3h")
    assert result.stdout.splitlines() == [
        "order (v1): 9 transition(s) from 2026-01-05 09:00:00 to 2026-01-05 12:00:00 UTC",
        "  state           now  stuck  left  median  p95    wait  wait95",
        "  pending           1      0     0       -    -      3h      3h",
        "  stock_reserved    0      0     4     30m  57m       -       -",
        "  paid              2      1     1      2h   2h  2h 20m  2h 29m",
        "  shipped           1      0     0       -    -     40m     40m",
        "  delivered         0      0     0       -    -       -       -",
        "  cancelled         1      0     0       -    -       -       -",
        "  refunded          0      0     0       -    -       -       -",
        "  events: reserve 4, pay 3, cancel 1, ship 1",
    ]


def test_stats_errors(sqlite_shop: Shop) -> None:
    unknown = invoke("stats", "--db", sqlite_shop.url, "-m", "models.orm", "--machine", "nope")
    assert unknown.exit_code == 1
    assert unknown.stderr == "Error: unknown machine 'nope'; known: order, ticket, trip\n"
    no_module = invoke("stats", "--db", sqlite_shop.url)
    assert no_module.exit_code == 1
    assert no_module.stderr.startswith("Error: stats needs the mapped classes")
    bad_since = invoke("stats", "--db", sqlite_shop.url, "-m", "models.orm", "--since", "soon")
    assert bad_since.exit_code == 2
    assert "'soon' is neither a duration" in bad_since.stderr


def test_parse_since_and_percentile() -> None:
    assert parse_since("30m", T0) == T0 - timedelta(minutes=30)
    assert parse_since("1h30m", T0) == T0 - timedelta(minutes=90)
    assert parse_since("7d", T0) == T0 - timedelta(days=7)
    assert parse_since("2w", T0) == T0 - timedelta(weeks=2)
    assert parse_since("2026-01-01T00:00:00", T0) == datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(click.BadParameter):
        parse_since("5 parsecs", T0)
    assert percentile([1.0], 0.95) == 1.0
    assert percentile([10.0, 20.0, 40.0, 60.0], 0.5) == 30.0
    assert percentile([10.0, 20.0, 40.0, 60.0], 0.95) == pytest.approx(57.0)


# -- errors and -v -------------------------------------------------------------------


def test_errors_are_one_line_and_exit_1(sqlite_shop: Shop) -> None:
    result = invoke("history", "order", "404", "--db", sqlite_shop.url, "-m", "models.orm")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("Error: ")
    assert "404" in result.stderr
    assert "Traceback" not in result.stderr


def test_verbose_shows_the_traceback(sqlite_shop: Shop) -> None:
    args = ("history", "order", "404", "--db", sqlite_shop.url, "-m", "models.orm")
    result = invoke("-v", *args)
    assert result.exit_code == 1
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert "InstanceNotFoundError" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("Error: ")
    by_env = invoke(*args, env={"STATEKIT_VERBOSE": "1"})
    assert "Traceback (most recent call last):" in by_env.stderr


def test_database_errors_are_one_line(tmp_path: Path) -> None:
    bad_url = invoke("stats", "--db", "not a url", "-m", "models.orm")
    assert bad_url.exit_code == 1
    assert bad_url.stderr == (
        "Error: invalid database URL (expected e.g. sqlite:///app.db or "
        "postgresql+psycopg://user@host/db)\n"
    )
    (tmp_path / "empty.db").touch()
    empty = invoke("stats", "--db", f"sqlite:///{tmp_path / 'empty.db'}", "-m", "models.orm")
    assert empty.exit_code == 1
    assert empty.stderr.startswith("Error: ")
    assert "no such table" in empty.stderr
    assert empty.stderr.count("\n") == 1


def test_unknown_module_is_one_line() -> None:
    result = invoke("diagram", "no_such_module:Flow")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: module 'no_such_module' not found in {os.getcwd()} or on PYTHONPATH (run "
        "the command from the project's folder, or set PYTHONPATH)\n"
    )


# -- as subprocesses -----------------------------------------------------------------


def test_subprocess_history_and_stats_json(shop: Shop) -> None:
    history = run(
        "history",
        "order",
        "2",
        "--json",
        env={"STATEKIT_DB": shop.url, "STATEKIT_MODULES": "models.orm"},
    )
    assert history.returncode == 0, history.stderr
    assert json.loads(history.stdout)["state"] == "paid"
    stats = run(
        "stats",
        "--since",
        "3h",
        "--now",
        AT_END,
        "--json",
        "--machine",
        "order",
        env={"STATEKIT_DB": shop.url, "STATEKIT_MODULES": "models.orm"},
    )
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["machines"][0]["events"]["pay"] == 3
    missing = run(
        "history", "order", "404", env={"STATEKIT_DB": shop.url, "STATEKIT_MODULES": "models.orm"}
    )
    assert missing.returncode == 1
    assert missing.stderr.count("\n") == 1


def test_subprocess_diagram_without_dot(tmp_path: Path) -> None:
    result = run("diagram", "models.order:OrderWorkflow", "-f", "svg", env={"PATH": str(tmp_path)})
    assert result.returncode == 1
    assert result.stderr == MISSING_DOT


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    result = run("demo", "--dir", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stderr
    report = result.stdout
    assert "refused (7), nothing written for any of them:" in report
    assert "guard 'stock_available' (to 'stock_reserved') said: only 0 of SKU-1 in stock" in report
    assert "pre-condition 'amount_matches_total' failed" in report
    assert "order 2's payment webhook arrived twice" in report
    assert "replayed=True" in report
    assert "two clerks raced on order 9" in report
    assert "expected version 1" in report
    assert "past their deadline at 19:15 (6), for the sweeper:" in report
    # The sweeper runs once the clock has moved: timeouts, stuck orders compensated,
    # and a refund that fails while the payment provider is down, retried a minute later.
    assert "the sweeper runs" in report
    assert "refund_payment failed on attempt 1 (ConnectionError" in report
    assert "pass 2, a minute later: compensations run 2, compensated 1" in report
    assert "refunds paid out by the provider: 1" in report
    assert "paid --@stuck--> paid by statekit-sweeper" in report
    assert "paid --@compensated--> cancelled by statekit-sweeper" in report
    out = tmp_path / "demo"
    assert (out / "demo.db").is_file()
    for name in ("order", "order-7-path", "order-heat"):
        assert (out / f"{name}.mmd").read_text().startswith("---\ntitle:")
        drawn = [out / f"{name}.svg", out / f"{name}.dot"]
        assert any(p.is_file() and p.stat().st_size > 0 for p in drawn), name


OVERSIZED_MODULE = """
from datetime import timedelta
from statekit import State, Workflow

class Parcel(Workflow):
    ready = State(initial=True, timeout=timedelta(days=999_999_999))
    delivered_to_the_recipient_at_the_address_written_on_the_label_ok = State(final=True)
    deliver = ready.to(delivered_to_the_recipient_at_the_address_written_on_the_label_ok)
"""


def test_check_reports_names_and_timeouts_that_do_not_fit(tmp_path: Path) -> None:
    (tmp_path / "oversized_parcel.py").write_text(textwrap.dedent(OVERSIZED_MODULE))
    result = run("check", "-m", "oversized_parcel", env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert (
        lines[0] == "parcel: state 'ready': after: a timeout must be at most 36525 days (100 years)"
    )
    assert lines[1].startswith("parcel: state 'delivered_to_the_recipient_at_the_address_writ")
    assert lines[1].endswith("is longer than 64 characters (the width of statekit's name columns)")
    assert lines[2].startswith("parcel: event 'deliver': target: 'delivered_to_the_recipient")
    assert lines[3:] == ["Error: 3 problem(s) found"]
