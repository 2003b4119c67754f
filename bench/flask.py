"""Flask benchmark: a view that fires one transition in the request's session, against a
hand-written view that sends the same statements through Flask-SQLAlchemy.

Per request, driven by `app.test_client()` (the whole Flask request cycle, no network):

- statekit: `statekit.get_or_404(Order, key)` (the ORM SELECT through `db.session`),
  `statekit.fire(order, "pay")` (the guard, the compare-and-set UPDATE and the history
  INSERT on the session's connection), `db.session.commit()`, a small JSON answer;
- hand-written: `db.session.get(Order, key)`, the guard in Python,
  `UPDATE orders ... WHERE id = :id AND state_version = :v` (the row count checked) and
  an INSERT into `statekit_transitions`, both built once with bound parameters and sent
  on `db.session.connection()` (the session's transaction, as statekit uses it:
  `db.session.execute` and statements built per request would slow the baseline),
  `db.session.commit()`, the same JSON answer.

Each app has its own database (SQLite file with statekit's WAL/FULL configuration on
both, or a PostgreSQL database) and the same DDL. The two views take turns request by
request (which one goes first alternating); the target is the median, over the pairs, of
the ratio of their two times. `python -m bench flask` runs it.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from datetime import UTC, datetime
from time import perf_counter_ns
from typing import Any, ClassVar

from flask import Flask, abort
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Boolean, bindparam, event, insert, update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bench import Config, Measurement, Report, Row, Target, environment
from bench._databases import Databases, Location, postgres_available
from bench.persist.workload import DEFINITION_VERSION, PersistOrderWorkflow
from statekit.contrib.flask import StateKit
from statekit.engine import Machine
from statekit.store.sqlalchemy import StateMixin, statekit_tables
from statekit.store.sqlalchemy.sqlite import configure_sqlite

DESCRIPTION = "a Flask view firing one transition in the request's session vs a hand-written Flask-SQLAlchemy view, on SQLite and PostgreSQL"  # noqa: E501

STATEKIT = "statekit view"
HAND = "hand-written view"
OPERATIONS = {
    STATEKIT: "POST: get_or_404; statekit.fire; commit",
    HAND: "POST: session.get; guard; UPDATE .. AND v=:v; INSERT; commit",
}
TARGET = 0.95
STATEMENTS = ["BEGIN", "SELECT", "UPDATE", "INSERT", "COMMIT"]
"""What each view sends per request (checked on SQLite, see `_statements`)."""
BATCH, QUICK_BATCH = 200, 50
ROUNDS_PER_SAMPLE = 2  # batches per contestant per sample of the Config
WARMUP = 30
DATABASES = {
    "sqlite": "SQLite file (WAL, synchronous=FULL)",
    "sqlite-cpu": "SQLite file (WAL, synchronous=OFF: no fsync, the Python cost shows)",
    "postgresql": "PostgreSQL",
}
PACKAGES = ("statekit", "Flask", "Flask-SQLAlchemy", "SQLAlchemy", "psycopg")


class BenchBase(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=BenchBase)
statekit = StateKit()


class Order(StateMixin, db.Model):  # type: ignore[name-defined,misc]
    """The benchmark's order: `StateMixin` columns and the guard's column."""

    __tablename__ = "orders"
    __statekit_machine__: ClassVar[Machine] = PersistOrderWorkflow.machine

    id: Mapped[int] = mapped_column(primary_key=True)
    card_authorized: Mapped[bool] = mapped_column(Boolean, nullable=False)


def statekit_app(location: Location) -> Flask:
    """The app whose view fires through statekit."""
    app = _app(location)
    statekit.init_app(app, db=db)

    @app.post("/orders/<int:key>/pay")
    def pay(key: int) -> tuple[dict[str, Any], int]:
        order = statekit.get_or_404(Order, key)
        record = statekit.fire(order, "pay", actor="bench")
        db.session.commit()
        return {"id": key, "state": record.target, "seq": record.seq}, 201

    return app


def hand_app(location: Location) -> Flask:
    """The app whose view writes the same rows by hand."""
    app = _app(location)
    history = statekit_tables(db.metadata).transitions  # what init_app defines
    orders: Any = Order.__table__
    # Built once, with bound parameters, as careful hand-written code does (and statekit).
    move = (
        update(orders)
        .where(orders.c.id == bindparam("b_id"), orders.c.state_version == bindparam("b_v"))
        .values(  # the columns statekit's compare-and-set writes (as bench persist's Core)
            state=bindparam("b_state"),
            state_version=bindparam("b_next"),
            state_entered_at=bindparam("b_at"),
            state_deadline_at=None,
            stuck_at=None,
            stuck_reason=None,
            state_definition_version=DEFINITION_VERSION,
        )
    )
    record = insert(history)
    machine = PersistOrderWorkflow.machine.name

    @app.post("/orders/<int:key>/pay")
    def pay(key: int) -> tuple[dict[str, Any], int]:
        order = db.session.get(Order, key)
        if order is None:
            abort(404)
        if order.state != "pending" or not order.card_authorized:
            abort(409)
        version, now = order.state_version, datetime.now(UTC)
        conn = db.session.connection()  # the session's transaction, without ORM execution
        values = {"b_id": key, "b_v": version, "b_state": "paid", "b_next": version + 1}
        moved = conn.execute(move, {**values, "b_at": now})
        if moved.rowcount != 1:
            abort(409)
        conn.execute(
            record,
            {
                "entity_type": machine,
                "entity_key": str(key),
                "seq": version + 1,
                "event": "pay",
                "source": "pending",
                "target": "paid",
                "actor": "bench",
                "at": now,
                "definition_version": DEFINITION_VERSION,
            },
        )
        db.session.commit()
        return {"id": key, "state": "paid", "seq": version + 1}, 201

    return app


def _app(location: Location) -> Flask:
    app = Flask(f"bench-{location.url.rpartition('/')[2]}")
    app.config["SQLALCHEMY_DATABASE_URI"] = location.url
    db.init_app(app)
    return app


def _fill(app: Flask, count: int, synchronous: str = "FULL") -> None:
    with app.app_context():
        if db.engine.dialect.name == "sqlite":  # before SQLAlchemyStore does it (first wins)
            configure_sqlite(db.engine, synchronous=synchronous)
        db.create_all()
        db.session.execute(
            insert(Order.__table__),
            [
                {"id": k, "card_authorized": True, "state": "pending", "state_version": 0}
                for k in range(1, count + 1)
            ],
        )
        db.session.commit()


def _drive(post: Callable[..., Any], keys: range) -> int:
    """POST pay for each key; the elapsed nanoseconds."""
    start = perf_counter_ns()
    for key in keys:
        response = post(f"/orders/{key}/pay")
        if response.status_code != 201:
            raise RuntimeError(f"order {key}: {response.status_code} {response.get_data()!r}")
    return perf_counter_ns() - start


Samples = dict[str, list[float]]
"""Per view, ns per request of each batch."""


def run_database(dialect: str, rounds: int, batch: int) -> tuple[Samples, list[float]]:
    """Samples (ns per request, the mean of each batch) of each view on `dialect`, and
    the ratio hand-written / statekit of each key's two requests, sent back to back
    (the first alternating), so load that drifts hits both alike."""
    samples: Samples = {STATEKIT: [], HAND: []}
    paired: list[float] = []
    total = WARMUP + rounds * batch
    system = dialect.partition("-")[0]
    with Databases(system, f"statekit_bench_flask_{os.getpid()}") as scratch:
        apps = {
            STATEKIT: statekit_app(scratch.make("statekit")),
            HAND: hand_app(scratch.make("hand")),
        }
        try:
            for app in apps.values():  # one order more: the traced request
                _fill(app, total + 1, "OFF" if dialect == "sqlite-cpu" else "FULL")
            clients = {name: app.test_client() for name, app in apps.items()}
            for client in clients.values():
                _drive(client.post, range(1, WARMUP + 1))
            names = list(clients)
            times: Samples = {STATEKIT: [], HAND: []}
            for key in range(WARMUP + 1, total + 1):  # one request each, the first alternating
                for name in names if key % 2 else names[::-1]:
                    times[name].append(_drive(clients[name].post, range(key, key + 1)))
                paired.append(times[HAND][-1] / times[STATEKIT][-1])
            for name, each in times.items():  # a sample: the mean request of a batch
                samples[name] = [
                    statistics.fmean(each[i : i + batch]) for i in range(0, len(each), batch)
                ]
            sequences = {name: _statements(app, total + 1) for name, app in apps.items()}
            if dialect != "postgresql" and any(s != STATEMENTS for s in sequences.values()):
                raise RuntimeError(f"expected {STATEMENTS} from both views: {sequences}")
            _verify(apps, total + 1)
        finally:
            for app in apps.values():
                with app.app_context():
                    for engine in db.engines.values():
                        engine.dispose()
                    state = app.extensions.get("statekit")
                    if state is not None:
                        state.dispose()
    return samples, paired


def _statements(app: Flask, key: int) -> list[str]:
    """The first word of each statement one POST of `key` sends, on SQLite: sqlite3's
    trace callback sees every statement on the connection, however it was sent
    (SQLAlchemy's execution or the DBAPI cursor). Set at checkout, a pool event,
    which leaves statekit's driver path on as in the timed requests (an execution
    listener would turn it off). Not on PostgreSQL: psycopg has no such callback;
    both views run the same code there."""
    sent: list[str] = []
    tracing = [True]

    def trace(statement: str) -> None:
        if tracing[0]:
            sent.append(statement.split(None, 1)[0].upper())

    def on_checkout(dbapi: Any, *_: Any) -> None:
        if hasattr(dbapi, "set_trace_callback"):
            dbapi.set_trace_callback(trace)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "checkout", on_checkout)
    try:
        response = app.test_client().post(f"/orders/{key}/pay")
    finally:
        event.remove(engine, "checkout", on_checkout)
        tracing[0] = False
    if response.status_code != 201:
        raise RuntimeError(f"order {key}: {response.status_code} {response.get_data()!r}")
    return sent


def _verify(apps: dict[str, Flask], total: int) -> None:
    """Both databases hold `total` paid orders and `total` history rows."""
    for name, app in apps.items():
        with app.app_context():
            paid = db.session.query(Order).filter_by(state="paid", state_version=1).count()
            rows = db.session.query(db.metadata.tables["statekit_transitions"]).count()
            if (paid, rows) != (total, total):
                raise RuntimeError(f"{name}: {paid} paid orders and {rows} history rows of {total}")


def _quartiles(values: list[float]) -> str:
    low, _, high = statistics.quantiles(values, n=4)
    return f"{low:.2f}x to {high:.2f}x"


def run(config: Config) -> Report:
    """Both views on SQLite and PostgreSQL, interleaved; the target is statekit's
    throughput at least 0.95x the hand-written view's."""
    quick = config.sample_ms <= Config.quick().sample_ms
    batch = QUICK_BATCH if quick else BATCH
    rounds = config.samples * ROUNDS_PER_SAMPLE
    report = Report(
        name="flask",
        groups={
            dialect: (
                f"{title}: {rounds * batch:,} requests per view, alternating, "
                f"one transition each (a sample: the mean of {batch})",
                "median / hand-written view median; >1 is slower",
            )
            for dialect, title in DATABASES.items()
        },
    )
    skipped = postgres_available()
    dialects = [d for d in DATABASES if not (skipped and d == "postgresql")]
    loads = [os.getloadavg()[0]]
    lines = [f"  {'database':<10}  {'view':<18}  {'requests/s':>10}  {'vs hand-written':>15}"]
    for dialect in dialects:
        samples, paired = run_database(dialect, rounds, batch)
        loads.append(os.getloadavg()[0])
        hand = statistics.median(samples[HAND])
        for name in (STATEKIT, HAND):
            median = statistics.median(samples[name])
            timing = Measurement(median, tuple(samples[name]), batch)
            report.rows.append(Row(dialect, name, OPERATIONS[name], timing, ratio=median / hand))
            lines.append(
                f"  {dialect:<10}  {name:<18}  {1e9 / median:>10,.0f}  {hand / median:>14.2f}x"
            )
        ratio = statistics.median(paired)
        if dialect == "sqlite-cpu":  # shows the Python cost; the target is the rest
            lines.append(f"  {'':<10}  (median over request pairs {ratio:.3f}x; no target)")
            continue
        report.targets.append(
            Target(
                f"{dialect}: statekit view vs hand-written view",
                f"median over request pairs of statekit / hand-written speed >= {TARGET:.2f}x",
                f"{ratio:.3f}x (quartiles {_quartiles(paired)})",
                ratio >= TARGET,
            )
        )
    report.environment = env = environment(PACKAGES)
    report.notes = [
        "Requests per second from the median batch (the targets compare the two requests "
        "of each key, sent back to back, so load that drifts hits both):",
        *lines,
        *(["PostgreSQL skipped: " + skipped] if skipped else []),
        f"1-min load average before and after each database: "
        f"{', '.join(f'{x:.2f}' for x in loads)} ({os.cpu_count()} CPUs)",
        f"Both databases verified after the run: every order paid once, one history row each "
        f"({WARMUP} untimed warm-up requests per view first); on SQLite one more request per "
        f"view, traced by sqlite3, sent {', '.join(STATEMENTS)}.",
        "versions: " + ", ".join(f"{k} {v}" for k, v in env.items()),
    ]
    return report
