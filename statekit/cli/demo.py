"""`statekit demo`: a day of orders and support tickets on a fresh SQLite file.

It uses the example models of the source tree (`models/`), a controllable clock,
and the real SQL store, then reports what happened and writes diagrams. It is a
standalone host of its own: it builds its `SQLAlchemyStore` and opens ORM Sessions
(imported when the demo runs, so the CLI loads without SQLAlchemy).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from statekit.cli.loading import import_module
from statekit.clock import ManualClock
from statekit.errors import ConcurrentTransitionError, StatekitError, TransitionError
from statekit.runtime import Runner

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from statekit.store.sqlalchemy import SQLAlchemyStore

__all__ = ["demo", "run_demo"]

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@click.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-output"),
    show_default=True,
    envvar="STATEKIT_DEMO_DIR",
    show_envvar=True,
    help="Where the demo writes its SQLite file and diagrams.",
)
def demo(directory: Path) -> None:
    """Run a day of orders and tickets on a fresh SQLite file and report on it."""
    run_demo(directory, progress=sys.stdout.isatty())


@dataclass
class _Day:
    store: SQLAlchemyStore
    clock: ManualClock
    orders: Runner
    tickets: Runner
    refusals: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fired: int = 0

    def session(self) -> Session:
        """A Session on the demo's database that keeps objects loaded after commit."""
        from sqlalchemy.orm import Session

        return Session(self.store.engine, expire_on_commit=False)

    def attempt(self, runner: Runner, key: object, event: str, **kwargs: Any) -> bool:
        try:
            runner.fire_by_key(key, event, **kwargs)
        except TransitionError as exc:
            self.refusals.append(str(exc))
            return False
        self.fired += 1
        return True


def _examples() -> Any:
    """The repository's example models, found from the current directory (`make demo`
    runs from the checkout; an install exposes the `statekit` package only)."""
    try:
        return import_module("models.orm")
    except StatekitError as exc:
        raise StatekitError(
            "the demo runs the example models of statekit's source tree; "
            "run it from a checkout (make demo)"
        ) from exc


def run_demo(
    directory: Path, *, progress: bool = False, echo: Callable[[str], None] = click.echo
) -> None:
    """Run the demo into `directory` (its SQLite file is recreated) and print a report."""
    from statekit.store.sqlalchemy import SQLAlchemyStore, sqlite_engine

    examples = _examples()
    directory.mkdir(parents=True, exist_ok=True)
    database = directory / "demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    engine = sqlite_engine(str(database))
    examples.Base.metadata.create_all(engine)
    store = SQLAlchemyStore(engine, examples.ENTITIES)
    store.create_tables()
    clock = ManualClock(START)
    machines = {m.name: m for m in examples.ENTITIES}
    day = _Day(
        store=store,
        clock=clock,
        orders=Runner(machines["order"], store, clock=clock),
        tickets=Runner(machines["ticket"], store, clock=clock),
    )
    steps = [_place_orders, _take_payments, _race_two_clerks, _ship_and_deliver, _support_desk]
    with _progress(progress, steps) as advance:
        for step in steps:
            step(day, examples)
            advance()
    _report(day, directory, echo)
    _sweep(day, examples, echo)
    _write_diagrams(day, directory, echo)
    engine.dispose()


@contextlib.contextmanager
def _progress(enabled: bool, steps: list[Any]) -> Iterator[Callable[[], None]]:
    if not enabled:
        yield lambda: None
        return
    with click.progressbar(length=len(steps), label="a day at the shop", file=None) as bar:
        yield lambda: bar.update(1)


def _place_orders(day: _Day, examples: Any) -> None:
    for number in range(1, 13):
        day.clock.advance(minutes=20)
        with day.session() as session, session.begin():
            order = examples.OrderRow(
                id=number,
                total=Decimal(40 + 5 * number),
                in_stock=0 if number == 4 else 10,
                card_authorized=number != 6,
            )
            session.add(order)
            day.orders.start(order)
        if number not in (11, 12):  # two customers never come back: abandoned tomorrow
            day.attempt(day.orders, number, "reserve", actor="shop")


def _take_payments(day: _Day, examples: Any) -> None:
    day.clock.advance(minutes=10)
    for number in (1, 2, 3, 5, 6, 7, 8):
        total = Decimal(40 + 5 * number)
        amount = total - 1 if number == 8 else total  # order 8: wrong amount
        day.attempt(
            day.orders,
            number,
            "pay",
            actor="payments-webhook",
            idempotency_key=f"payment-{number}",
            amount=amount,
            reference=f"PAY-{number:04d}",
        )
    # The payment provider delivers order 2's webhook twice: applied once.
    record = day.orders.fire_by_key(
        2, "pay", idempotency_key="payment-2", amount=Decimal(50), reference="PAY-0002"
    )
    day.notes.append(
        f"order 2's payment webhook arrived twice; the second delivery replayed "
        f"transition #{record.seq} (replayed={record.replayed}) and changed nothing"
    )


def _race_two_clerks(day: _Day, examples: Any) -> None:
    day.clock.advance(minutes=5)
    with day.session() as session:
        first = session.get(examples.OrderRow, 9)
        second = session.get(examples.OrderRow, 9)
        session.expunge_all()
    with day.session() as session:
        second = session.get(examples.OrderRow, 9)
    day.orders.fire(first, "cancel", actor="clerk-ann")
    try:
        day.orders.fire(second, "pay", amount=Decimal(85), reference="PAY-0009", actor="clerk-bo")
    except ConcurrentTransitionError as exc:
        day.notes.append(f"two clerks raced on order 9; the loser was told: {exc}")


def _ship_and_deliver(day: _Day, examples: Any) -> None:
    day.clock.advance(hours=2)
    for number in (1, 2, 3, 5):
        day.attempt(
            day.orders,
            number,
            "ship",
            actor="warehouse",
            carrier="DHL",
            tracking_number=f"TRK{number}",
        )
    day.clock.advance(hours=5)
    for number in (1, 2):
        day.attempt(day.orders, number, "deliver", actor="carrier")
    day.attempt(day.orders, 3, "refund", actor="support")


def _support_desk(day: _Day, examples: Any) -> None:
    subjects = ["parcel is late", "wrong size", "refund please", "invoice copy"]
    for number, subject in enumerate(subjects, start=1):
        key = f"T-{number}"
        with day.session() as session, session.begin():
            ticket = examples.TicketRow(id=key, subject=subject)
            session.add(ticket)
            day.tickets.start(ticket)
        day.attempt(day.tickets, key, "start")  # refused: nobody is assigned yet
        day.attempt(day.tickets, key, "assign", actor="lead", agent=f"agent-{number % 2}")
        day.attempt(day.tickets, key, "start", actor=f"agent-{number % 2}")
        if number % 2:
            day.attempt(day.tickets, key, "ask_customer")
        else:
            day.attempt(day.tickets, key, "resolve")
    day.clock.advance(days=1)


def _report(day: _Day, directory: Path, echo: Callable[[str], None]) -> None:
    store, now = day.store, day.clock.now()
    echo(f"statekit demo: a day at the shop, ending {now:%Y-%m-%d %H:%M} UTC")
    echo(f"  database: {directory / 'demo.db'} ({day.fired} transitions applied)")
    for machine in ("order", "ticket"):
        counts = store.count_by_state(machine)
        listed = ", ".join(f"{state} {n}" for state, n in sorted(counts.items()))
        echo(f"  {machine}s now: {listed}")
    echo("")
    echo(f"refused ({len(day.refusals)}), nothing written for any of them:")
    for message in day.refusals:
        echo(f"  - {message}")
    echo("")
    for note in day.notes:
        echo(f"* {note}")
    overdue = [(m, s) for m in ("order", "ticket") for s in store.find_overdue(m, now, 100)]
    echo("")
    echo(f"past their deadline at {now:%H:%M} ({len(overdue)}), for the sweeper:")
    for machine, snapshot in overdue:
        echo(f"  - {machine} {snapshot.key} in {snapshot.state} since {snapshot.entered_at:%H:%M}")
    echo("")
    echo("order 2's path:")
    for r in store.history("order", "2"):
        echo(f"  {r.seq}. {r.at:%H:%M} {r.source} --{r.event}--> {r.target} by {r.actor}")


def _sweep(day: _Day, examples: Any, echo: Callable[[str], None]) -> None:
    from models.order import payments
    from statekit.compensation import Backoff
    from statekit.sweeper import Sweeper

    sweeper = Sweeper(
        [day.orders, day.tickets],
        clock=day.clock,
        backoff=Backoff(base=timedelta(seconds=30), jitter=0),
    )
    day.clock.advance(days=2)
    payments.outages = 1  # the payment provider is down for the first refund
    echo("")
    echo(f"two days later, {day.clock.now():%Y-%m-%d %H:%M}: the sweeper runs")
    first = sweeper.run_once()
    echo(f"  pass 1: {_counts(first.as_dict())}")
    for snapshot, tasks in sweeper.stuck():
        for task in tasks:
            if task.last_error is not None and task.next_attempt_at is not None:
                echo(
                    f"  {snapshot.entity_type} {snapshot.key} is stuck ({snapshot.stuck_reason}); "
                    f"{task.action} failed on attempt {task.attempts} ({task.last_error}), "
                    f"retrying at {task.next_attempt_at:%H:%M:%S}"
                )
    day.clock.advance(minutes=1)
    second = sweeper.run_once()
    echo(f"  pass 2, a minute later: {_counts(second.as_dict())}")
    echo(f"  refunds paid out by the provider: {len(payments.refunds)} (one per paid order undone)")
    echo("order 7's path:")
    for r in day.store.history("order", "7"):
        note = f"  ({r.payload['note']})" if r.payload and "note" in r.payload else ""
        echo(f"  {r.seq}. {r.at:%d %H:%M} {r.source} --{r.event}--> {r.target} by {r.actor}{note}")
    counts = day.store.count_by_state("order")
    echo("orders now: " + ", ".join(f"{state} {n}" for state, n in sorted(counts.items())))


def _counts(counts: dict[str, int]) -> str:
    return (
        ", ".join(f"{name.replace('_', ' ')} {n}" for name, n in counts.items() if n) or "nothing"
    )


def _write_diagrams(day: _Day, directory: Path, echo: Callable[[str], None]) -> None:
    from statekit.diagrams import (
        GraphvizNotInstalledError,
        heat_graph,
        instance_graph,
        machine_graph,
        render,
        to_dot,
        to_mermaid,
    )

    store = day.store
    machine = store.binding("order").machine
    graphs = {
        "order": machine_graph(machine),
        "order-7-path": instance_graph(
            machine, store.load("order", "7"), store.history("order", "7")
        ),
        "order-heat": heat_graph(
            machine,
            store.transition_counts("order"),
            store.count_by_state("order"),
            store.count_by_state("order", stuck_only=True),
        ),
    }
    written = []
    missing: GraphvizNotInstalledError | None = None
    for name, graph in graphs.items():
        if missing is None:
            try:
                path = directory / f"{name}.svg"
                path.write_bytes(render(graph, "svg"))
            except GraphvizNotInstalledError as exc:
                missing = exc
        if missing is not None:
            path = directory / f"{name}.dot"
            path.write_text(to_dot(graph))
        written.append(path)
        mermaid = directory / f"{name}.mmd"
        mermaid.write_text(to_mermaid(graph))
        written.append(mermaid)
    echo("")
    echo("diagrams:")
    for path in written:
        echo(f"  {path}")
    if missing is not None:
        echo(
            "Graphviz 'dot' was not found, so the diagrams are .dot instead of .svg; "
            "install Graphviz (e.g. apt-get install graphviz) and run the demo again "
            "for SVG, or draw one with 'dot -Tsvg FILE.dot -o FILE.svg'"
        )
