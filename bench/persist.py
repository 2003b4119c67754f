"""Persistence benchmark: one persisted transition per transaction, against peers.

Per transition: load the entity by key, check the guard, compare-and-set update,
insert a history row, commit. 10,000 orders each go

    pending --pay--> paid --ship--> shipped --deliver--> delivered

(30,000 transitions per contestant) on a SQLite file (WAL, synchronous=FULL,
BEGIN IMMEDIATE) and on PostgreSQL. `pay` is guarded by the row's
`card_authorized`. Contestants, each with its own database (file) and tables:

- statekit: `Runner(machine, SQLAlchemyStore(engine, {machine: Row})).fire_by_key`;
- hand-written SQLAlchemy Core: SELECT state, version and the guard's column by
  key, the guard in Python, `UPDATE ... WHERE id = :id AND state_version = :v`,
  INSERT into a table shaped like `statekit_transitions`, COMMIT;
- SQLAlchemy ORM: a mapped class with `version_id_col`, `session.get`, set the
  state, add a history object, commit;
- django-fsm-2 + django-fsm-log: `FSMField(protected=True)` with
  `ConcurrentTransitionMixin` and `@transition(conditions=[...])`; django-fsm-log's
  signal receivers write a `StateLog` row per transition. Django can be
  configured once per process, so it runs in one worker process per database.

Contestants take turns in batches (round robin, the starting contestant rotating)
so load from other work on the machine hits all of them alike. See README.md.

`python -m bench persist` runs it; `python -m bench.persist --profile sqlite`
(or `postgresql`) profiles statekit next to the hand-written Core.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import logging
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Engine,
    Table,
    bindparam,
    create_engine,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy import event as sa_event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from bench import Config, Measurement, Report, Row, Target, _time_once, environment
from statekit import Context, Runner, State, Workflow
from statekit.store.sqlalchemy import SQLAlchemyStore, StateMixin, sqlite_engine, statekit_tables

DESCRIPTION = "persisted transitions (load, guard, CAS update, history, commit) on SQLite and PostgreSQL: statekit vs Core, ORM, django-fsm-2 + log"  # noqa: E501

ENTITIES = 10_000
QUICK_ENTITIES = 1_000
BATCH = 250
QUICK_BATCH = 100
WARMUP = 30
"""Extra entities per contestant, driven through untimed first (statement count)."""

ENTITIES_ENV = "STATEKIT_BENCH_PERSIST_ENTITIES"
POSTGRES_ENV = "STATEKIT_BENCH_POSTGRES_URL"
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DATABASE_PREFIX = "statekit_bench_persist"

EVENTS = ("pay", "ship", "deliver")
STEPS = {
    ("pending", "pay"): "paid",
    ("paid", "ship"): "shipped",
    ("shipped", "deliver"): "delivered",
}
ENTITY_TYPE = "persist_order"
DEFINITION_VERSION = 1

TARGET_VS_CORE = 0.9
TARGET_VS_DJANGO = 2.5
ISSUE_MEASURED = {
    "sqlite": "Core with a SELECT ~2,400/s, django-fsm-2 + log ~870/s",
    "postgresql": "Core with a SELECT ~780/s, django-fsm-2 + log ~340/s",
}

PACKAGES = ("statekit", "SQLAlchemy", "psycopg", "Django", "django-fsm-2", "django-fsm-log")

STATEKIT = "statekit"
CORE = "SQLAlchemy Core (hand-written)"
ORM = "SQLAlchemy ORM (version_id_col)"
DJANGO = "django-fsm-2 + django-fsm-log"

OPERATIONS = {
    STATEKIT: "Runner(SQLAlchemyStore).fire_by_key",
    CORE: "SELECT; guard; UPDATE .. AND v=:v; INSERT",
    ORM: "session.get; set; add history; commit",
    DJANGO: "atomic: get; order.<event>(); save()",
}

DATABASES = {
    "sqlite": "SQLite file: WAL, synchronous=FULL, BEGIN IMMEDIATE",
    "postgresql": "PostgreSQL",
}


class RefusedError(Exception):
    """A hand-written contestant refused a transition or lost a race."""


# -- statekit --------------------------------------------------------------------------------


def card_authorized(order: Any, ctx: Context) -> bool:
    """Guard of `pay`: reads a column of the row."""
    return bool(order.card_authorized)


class PersistOrderWorkflow(Workflow, name=ENTITY_TYPE):
    """The benchmark's 4-state order machine."""

    pending = State(initial=True)
    paid = State()
    shipped = State()
    delivered = State(final=True)

    pay = pending.to(paid, guard=card_authorized)
    ship = paid.to(shipped)
    deliver = shipped.to(delivered)


class _StatekitBase(DeclarativeBase):
    pass


class StatekitOrder(StateMixin, _StatekitBase):
    """statekit's entity: the application's mapped class with `StateMixin`."""

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    card_authorized: Mapped[bool] = mapped_column(Boolean, nullable=False)


# -- the other SQLAlchemy contestants' tables: the same DDL as statekit's --------------------

ORDERS: Table = StatekitOrder.__table__  # type: ignore[assignment]
"""The orders table (StateMixin's columns and due index); each contestant has its own
database, so the hand-written Core uses this very definition."""
HISTORY: Table = statekit_tables().transitions
"""`statekit_transitions` as statekit defines it (same columns, key, constraints)."""


class _OrmBase(DeclarativeBase):
    pass


class OrmOrder(_OrmBase):
    """An order mapped with the ORM's own optimistic locking, on the same table DDL."""

    __table__ = ORDERS.to_metadata(_OrmBase.metadata)
    __mapper_args__ = {"version_id_col": __table__.c.state_version}  # noqa: RUF012


class OrmTransition(_OrmBase):
    """A history row, as an ORM object."""

    __table__ = statekit_tables(_OrmBase.metadata).transitions


# -- engines and databases -------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Location:
    """Where one contestant's tables live on one database system."""

    dialect: str
    url: str  # SQLAlchemy URL
    path: str = ""  # the SQLite file

    def engine(self) -> Engine:
        """An engine; SQLite gets statekit's configuration (WAL, FULL), and every
        contestant's transactions begin IMMEDIATE, as Django's are configured to."""
        if self.dialect == "sqlite":
            return sqlite_engine(self.path, begin="IMMEDIATE")
        return create_engine(self.url)

    def django(self) -> dict[str, Any]:
        """The Django DATABASES entry for the same database."""
        if self.dialect == "sqlite":
            return {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": self.path,
                "OPTIONS": {
                    "init_command": (
                        "PRAGMA journal_mode=WAL;PRAGMA busy_timeout=30000;"
                        "PRAGMA synchronous=FULL;PRAGMA foreign_keys=ON"
                    ),
                    "transaction_mode": "IMMEDIATE",
                },
            }
        url = make_url(self.url)
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": url.database,
            "USER": url.username or "",
            "PASSWORD": url.password or "",
            "HOST": url.host or "",
            "PORT": str(url.port or ""),
        }


class Databases:
    """Creates one database (or SQLite file) per contestant and removes them after."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._created: list[str] = []
        self._admin: Engine | None = None

    def __enter__(self) -> Databases:
        if self.dialect == "sqlite":
            self._tmp = tempfile.TemporaryDirectory(prefix="statekit-bench-")
        else:
            self._admin = create_engine(
                os.environ.get(POSTGRES_ENV, POSTGRES_URL), isolation_level="AUTOCOMMIT"
            )
        return self

    def make(self, name: str) -> Location:
        """A fresh, empty database for the contestant `name`."""
        if self._tmp is not None:
            path = str(Path(self._tmp.name) / f"{name}.db")
            return Location("sqlite", f"sqlite+pysqlite:///{path}", path)
        assert self._admin is not None
        database = f"{DATABASE_PREFIX}_{os.getpid()}_{name}"
        with self._admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{database}"'))
        self._created.append(database)
        url = self._admin.url.set(database=database)
        return Location("postgresql", url.render_as_string(hide_password=False))

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
        if self._admin is not None:
            with self._admin.connect() as conn:
                for database in self._created:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            self._admin.dispose()


def postgres_available() -> str | None:
    """None when the PostgreSQL server answers, else why not."""
    engine = create_engine(os.environ.get(POSTGRES_ENV, POSTGRES_URL))
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    finally:
        engine.dispose()
    return None


# -- statement recording -----------------------------------------------------------------------


def _verb(statement: str) -> str:
    words = statement.split(None, 2)
    if not words:
        return "?"
    if words[0].upper() == "BEGIN" and len(words) > 1:
        return f"BEGIN {words[1].upper()}"
    return words[0].upper()


@contextmanager
def _recording(engine: Engine, log: list[str]) -> Iterator[None]:
    """Record every statement the engine sends, plus BEGIN (psycopg sends it before the
    first statement of a transaction) and COMMIT."""
    sqlite = engine.dialect.name == "sqlite"

    def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        log.append(_verb(statement))

    def on_begin(conn: Any) -> None:
        if not sqlite:  # SQLite: configure_sqlite's begin listener sends BEGIN IMMEDIATE
            log.append("BEGIN")

    def on_commit(conn: Any) -> None:
        log.append("COMMIT")

    listeners: list[tuple[str, Callable[..., None]]] = [
        ("before_cursor_execute", on_execute),
        ("begin", on_begin),
        ("commit", on_commit),
    ]
    for name, fn in listeners:
        sa_event.listen(engine, name, fn)
    try:
        yield
    finally:
        for name, fn in listeners:
            sa_event.remove(engine, name, fn)


# -- contestants -------------------------------------------------------------------------------


@dataclass
class Verified:
    """What a contestant's tables hold after the run."""

    entities: int
    delivered: int
    history: int

    def problems(self, expected: int) -> list[str]:
        """Why the run does not count (empty when it does)."""
        found = []
        if self.entities != expected:
            found.append(f"{self.entities} entities, expected {expected}")
        if self.delivered != expected:
            found.append(f"{self.delivered} delivered (at version 3), expected {expected}")
        if self.history != 3 * expected:
            found.append(f"{self.history} history rows, expected {3 * expected}")
        return found


def _loop(step: Callable[[int, str], object], event: str, keys: list[int]) -> None:
    for key in keys:
        step(key, event)


class SQLAlchemyContestant:
    """A contestant in this process, on a SQLAlchemy engine."""

    library = ""

    def __init__(self, db: Location) -> None:
        self.db = db
        self.engine = db.engine()

    def setup(self, total: int) -> None:
        """Create the tables and `total` orders in `pending` (keys 1..total); untimed."""
        self.create_tables()
        at = _utcnow()
        rows = [
            {
                "id": key,
                "card_authorized": True,
                "state": "pending",
                "state_version": 0,
                "state_entered_at": at,
                "state_definition_version": DEFINITION_VERSION,
            }
            for key in range(1, total + 1)
        ]
        with self.engine.begin() as conn:
            conn.execute(insert(ORDERS), rows)

    def create_tables(self) -> None:
        ORDERS.create(self.engine)
        HISTORY.create(self.engine)

    def step(self, key: int, event: str) -> None:
        raise NotImplementedError

    def run(self, event: str, keys: range) -> int:
        """Fire `event` on each key, one transaction each; elapsed ns (gc paused)."""
        return _time_once(partial(_loop, self.step, event), list(keys))

    def record(self, event: str, keys: range) -> list[list[str]]:
        """Fire `event` on each key and return the statements of each transition."""
        log: list[str] = []
        per: list[list[str]] = []
        with self.recording(log):
            for key in keys:
                self.step(key, event)
                per.append(list(log))
                log.clear()
        return per

    def recording(self, log: list[str]) -> AbstractContextManager[None]:
        """Append the verb of every statement sent meanwhile to `log`."""
        return _recording(self.engine, log)

    def verify(self) -> Verified:
        """Count entities, delivered entities at version 3 and history rows."""
        o, h = ORDERS, HISTORY
        with self.engine.connect() as conn:
            entities = conn.execute(select(func.count()).select_from(o)).scalar_one()
            delivered = conn.execute(
                select(func.count())
                .select_from(o)
                .where(o.c.state == "delivered", o.c.state_version == 3)
            ).scalar_one()
            history = conn.execute(select(func.count()).select_from(h)).scalar_one()
        return Verified(entities, delivered, history)

    def close(self) -> None:
        self.engine.dispose()


class StatekitContestant(SQLAlchemyContestant):
    """statekit: load by key, decide, compare-and-set + history, commit."""

    library = STATEKIT

    def __init__(self, db: Location) -> None:
        super().__init__(db)
        machine = PersistOrderWorkflow.machine
        self.store = SQLAlchemyStore(self.engine, {machine: StatekitOrder})
        self.runner = Runner(machine, self.store)

    def create_tables(self) -> None:
        _StatekitBase.metadata.create_all(self.engine)
        self.store.create_tables()

    def step(self, key: int, event: str) -> None:
        self.runner.fire_by_key(key, event)

    @contextmanager
    def recording(self, log: list[str]) -> Iterator[None]:
        """From the `statekit.sql` log: on SQLite and PostgreSQL `fire_by_key` sends
        its statements on the DBAPI connection, and listening to the engine's events
        would make it keep SQLAlchemy's `Connection` instead."""
        handler = _StatementLog(log)
        sql = logging.getLogger("statekit.sql")
        level = sql.level
        sql.setLevel(logging.DEBUG)
        sql.addHandler(handler)
        try:
            yield
        finally:
            sql.removeHandler(handler)
            sql.setLevel(level)


class _StatementLog(logging.Handler):
    def __init__(self, log: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        self.log.append(_verb(record.getMessage()))


_CORE_LOAD = select(ORDERS.c.state, ORDERS.c.state_version, ORDERS.c.card_authorized)
_CORE_LOAD = _CORE_LOAD.where(ORDERS.c.id == bindparam("b_id"))
_CORE_UPDATE = (
    update(ORDERS)
    .where(
        ORDERS.c.id == bindparam("b_id"),
        ORDERS.c.state_version == bindparam("b_version"),
    )
    .values(
        state=bindparam("b_state"),
        state_version=bindparam("b_new_version"),
        state_entered_at=bindparam("b_at"),
        state_deadline_at=None,
        stuck_at=None,
        stuck_reason=None,
        state_definition_version=bindparam("b_definition"),
    )
)
_CORE_INSERT = insert(HISTORY)


class CoreContestant(SQLAlchemyContestant):
    """Hand-written SQLAlchemy Core: the same statements statekit sends, nothing else."""

    library = CORE

    def step(self, key: int, event: str) -> None:
        with self.engine.begin() as conn:
            row = conn.execute(_CORE_LOAD, {"b_id": key}).one_or_none()
            if row is None:
                raise RefusedError(f"no order {key}")
            state, version, authorized = row
            target = STEPS.get((state, event))
            if target is None:
                raise RefusedError(f"cannot {event} order {key} in {state}")
            if event == "pay" and not authorized:
                raise RefusedError(f"guard of pay refused order {key}")
            at = _utcnow()
            updated = conn.execute(
                _CORE_UPDATE,
                {
                    "b_id": key,
                    "b_version": version,
                    "b_state": target,
                    "b_new_version": version + 1,
                    "b_at": at,
                    "b_definition": DEFINITION_VERSION,
                },
            )
            if updated.rowcount != 1:
                raise RefusedError(f"order {key} changed under us")
            conn.execute(
                _CORE_INSERT,
                {
                    "entity_type": ENTITY_TYPE,
                    "entity_key": str(key),
                    "seq": version + 1,
                    "event": event,
                    "source": state,
                    "target": target,
                    "at": at,
                    "actor": None,
                    "correlation_id": None,
                    "idempotency_key": None,
                    "payload": None,
                    "definition_version": DEFINITION_VERSION,
                },
            )


class OrmContestant(SQLAlchemyContestant):
    """SQLAlchemy ORM: `version_id_col` does the compare-and-set at flush."""

    library = ORM

    def __init__(self, db: Location) -> None:
        super().__init__(db)
        self.sessions = sessionmaker(bind=self.engine, expire_on_commit=False)

    def create_tables(self) -> None:
        _OrmBase.metadata.create_all(self.engine)

    def step(self, key: int, event: str) -> None:
        with self.sessions() as session, session.begin():
            order = session.get(OrmOrder, key)
            if order is None:
                raise RefusedError(f"no order {key}")
            source = order.state
            target = STEPS.get((source, event))
            if target is None:
                raise RefusedError(f"cannot {event} order {key} in {source}")
            if event == "pay" and not order.card_authorized:
                raise RefusedError(f"guard of pay refused order {key}")
            at = _utcnow()
            order.state = target
            order.state_entered_at = at
            session.add(
                OrmTransition(
                    entity_type=ENTITY_TYPE,
                    entity_key=str(key),
                    seq=order.state_version + 1,
                    event=event,
                    source=source,
                    target=target,
                    at=at,
                    payload=None,
                    definition_version=DEFINITION_VERSION,
                )
            )


class DjangoContestant:
    """django-fsm-2 + django-fsm-log, driven in a worker process of its own (Django's
    settings can be configured once per process)."""

    library = DJANGO

    def __init__(self, db: Location) -> None:
        root = Path(__file__).resolve().parent.parent
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.persist", "--django-worker", json.dumps(db.django())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=root,
            env=env,
        )

    def _ask(self, **command: Any) -> Any:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        for line in self.process.stdout:
            if line.startswith(_REPLY):
                answer = json.loads(line[len(_REPLY) :])
                if "error" in answer:
                    raise RuntimeError(f"django worker failed:\n{answer['error']}")
                return answer["result"]
        raise RuntimeError(f"django worker exited with status {self.process.wait()}")

    def setup(self, total: int) -> None:
        self._ask(cmd="setup", total=total)

    def run(self, event: str, keys: range) -> int:
        return int(self._ask(cmd="run", event=event, lo=keys.start, hi=keys.stop))

    def record(self, event: str, keys: range) -> list[list[str]]:
        return list(self._ask(cmd="record", event=event, lo=keys.start, hi=keys.stop))

    def verify(self) -> Verified:
        return Verified(*self._ask(cmd="verify"))

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self._ask(cmd="quit")
            except RuntimeError:
                pass
        self.process.wait(timeout=60)


Contestant = SQLAlchemyContestant | DjangoContestant

CONTESTANTS: tuple[tuple[str, Callable[[Location], Contestant]], ...] = (
    ("statekit", StatekitContestant),
    ("core", CoreContestant),
    ("orm", OrmContestant),
    ("django", DjangoContestant),
)


# -- the Django worker -------------------------------------------------------------------------

_REPLY = "@@persist "


def _django_worker(database: dict[str, Any]) -> None:  # pragma: no cover - subprocess
    import django  # type: ignore[import-untyped]
    from django.conf import settings  # type: ignore[import-untyped]

    settings.configure(
        DATABASES={"default": database},
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django_fsm",
            "django_fsm_log",
        ],
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        USE_TZ=True,
        DEBUG=False,
        DJANGO_FSM_LOG_STORAGE_METHOD="django_fsm_log.backends.SimpleBackend",
    )
    django.setup()

    from django.core.management import call_command  # type: ignore[import-untyped]
    from django.db import connection, models, transaction  # type: ignore[import-untyped]
    from django_fsm import ConcurrentTransitionMixin, FSMField, transition
    from django_fsm_log.models import StateLog

    def card_ok(order: Any) -> bool:
        return bool(order.card_authorized)

    class DjangoOrder(ConcurrentTransitionMixin, models.Model):  # type: ignore[misc]
        state = FSMField(default="pending", protected=True)
        card_authorized = models.BooleanField(default=True)

        class Meta:
            app_label = "persist_bench"
            db_table = "orders"

        @transition(field=state, source="pending", target="paid", conditions=[card_ok])
        def pay(self) -> None:
            pass

        @transition(field=state, source="paid", target="shipped")
        def ship(self) -> None:
            pass

        @transition(field=state, source="shipped", target="delivered")
        def deliver(self) -> None:
            pass

    def step(key: int, event: str) -> None:
        with transaction.atomic():
            order = DjangoOrder.objects.get(pk=key)
            getattr(order, event)()
            order.save()

    def setup(total: int) -> None:
        call_command("migrate", verbosity=0, interactive=False)
        with connection.schema_editor() as editor:
            editor.create_model(DjangoOrder)
        DjangoOrder.objects.bulk_create(
            [DjangoOrder(id=key, card_authorized=True) for key in range(1, total + 1)],
            batch_size=500,
        )

    def record(event: str, lo: int, hi: int) -> list[list[str]]:
        log: list[str] = []
        per: list[list[str]] = []
        postgres = connection.vendor == "postgresql"

        def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            log.append(_verb(sql))
            return execute(sql, params, many, context)

        connection.ensure_connection()
        real_commit = connection._commit

        def commit() -> Any:
            log.append("COMMIT")
            return real_commit()

        connection._commit = commit
        try:
            with connection.execute_wrapper(wrapper):
                for key in range(lo, hi):
                    if postgres:  # psycopg sends BEGIN before the first statement
                        log.append("BEGIN")
                    step(key, event)
                    per.append(list(log))
                    log.clear()
        finally:
            del connection._commit
        return per

    def verify() -> list[int]:
        return [
            DjangoOrder.objects.count(),
            DjangoOrder.objects.filter(state="delivered").count(),
            StateLog.objects.count(),
        ]

    for line in sys.stdin:
        command = json.loads(line)
        try:
            cmd = command["cmd"]
            result: Any
            if cmd == "quit":
                result = None
            elif cmd == "setup":
                setup(command["total"])
                result = None
            elif cmd == "run":
                keys = list(range(command["lo"], command["hi"]))
                result = _time_once(partial(_loop, step, command["event"]), keys)
            elif cmd == "record":
                result = record(command["event"], command["lo"], command["hi"])
            elif cmd == "verify":
                result = verify()
            else:
                raise ValueError(f"unknown command {cmd!r}")
            reply = {"result": result}
        except Exception:
            reply = {"error": traceback.format_exc()}
        print(_REPLY + json.dumps(reply), flush=True)
        if command.get("cmd") == "quit":
            break


# -- running -----------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One contestant on one database."""

    library: str
    samples_ns: list[float] = field(default_factory=list)  # per transition, one per batch
    total_ns: int = 0
    transitions: int = 0
    statements: list[list[str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        """Transitions per second over the whole timed run."""
        return self.transitions / (self.total_ns / 1e9) if self.total_ns else 0.0

    def statement_summary(self) -> str:
        """Statements per transition, and the sequence of a typical one."""
        if not self.statements:
            return "-"
        counts = [len(s) for s in self.statements]
        typical = statistics.mode(tuple(s) for s in self.statements)
        mean = sum(counts) / len(counts)
        return f"{mean:.2f}: {', '.join(typical)}"


def _chunks(entities: int, batch: int) -> list[range]:
    return [range(lo, min(lo + batch, entities + 1)) for lo in range(1, entities + 1, batch)]


def run_database(dialect: str, entities: int, batch: int) -> tuple[list[Outcome], list[float]]:
    """Run every contestant on `dialect`, interleaved; return outcomes and load averages."""
    loads = [os.getloadavg()[0]]
    with Databases(dialect) as databases:
        contestants: list[Contestant] = []
        try:
            for name, make in CONTESTANTS:
                contestants.append(make(databases.make(name)))
            total = entities + WARMUP
            outcomes = [Outcome(c.library) for c in contestants]
            for contestant in contestants:
                contestant.setup(total)
            warm = range(entities + 1, total + 1)
            for contestant, outcome in zip(contestants, outcomes, strict=True):
                for event in EVENTS:
                    outcome.statements.extend(contestant.record(event, warm))
            chunks = _chunks(entities, batch)
            turn = 0
            for event in EVENTS:
                for keys in chunks:
                    start = turn % len(contestants)
                    for i in range(start, start + len(contestants)):
                        contestant = contestants[i % len(contestants)]
                        outcome = outcomes[i % len(contestants)]
                        elapsed = contestant.run(event, keys)
                        outcome.total_ns += elapsed
                        outcome.transitions += len(keys)
                        outcome.samples_ns.append(elapsed / len(keys))
                    turn += 1
                    loads.append(os.getloadavg()[0])
            for contestant, outcome in zip(contestants, outcomes, strict=True):
                outcome.problems = contestant.verify().problems(total)
        finally:
            for contestant in contestants:
                contestant.close()
    return outcomes, loads


def _entities(config: Config) -> tuple[int, int]:
    override = os.environ.get(ENTITIES_ENV)
    quick = config.sample_ms <= Config.quick().sample_ms
    entities = int(override) if override else (QUICK_ENTITIES if quick else ENTITIES)
    batch = QUICK_BATCH if quick or entities < 10 * BATCH else BATCH
    return entities, batch


def run(config: Config) -> Report:
    """Run all contestants on SQLite and PostgreSQL and check the issue's targets.

    `--quick` (a config with short samples) drives 1,000 entities instead of 10,000;
    the environment variable STATEKIT_BENCH_PERSIST_ENTITIES sets the number.
    """
    entities, batch = _entities(config)
    report = Report(
        name="persist",
        groups={
            dialect: (
                f"{title}: {entities:,} orders x 3 transitions, one transaction each",
                "median / hand-written Core median; >1 is slower than Core",
            )
            for dialect, title in DATABASES.items()
        },
    )
    skipped = postgres_available()
    dialects = ["sqlite"] if skipped else ["sqlite", "postgresql"]
    throughput_lines = [
        "Throughput = timed transitions / total timed seconds "
        f"(median/op above is the median of {batch}-transition batches):",
        f"  {'database':<10}  {'contestant':<31}  {'trans/s':>8}  {'vs Core':>7}  "
        f"{'vs django':>9}  statements per transition",
    ]
    load_lines = []
    failures = []
    for dialect in dialects:
        outcomes, loads = run_database(dialect, entities, batch)
        by_library = {o.library: o for o in outcomes}
        core, django, statekit = by_library[CORE], by_library[DJANGO], by_library[STATEKIT]
        core_median = statistics.median(core.samples_ns)
        for outcome in outcomes:
            median = statistics.median(outcome.samples_ns)
            timing = Measurement(median, tuple(outcome.samples_ns), batch)
            note = "; ".join(outcome.problems)
            report.rows.append(
                Row(
                    dialect,
                    outcome.library,
                    OPERATIONS[outcome.library],
                    timing,
                    ratio=median / core_median,
                    note=note,
                )
            )
            if outcome.problems:
                failures.append(f"{dialect} {outcome.library}: {note}")
            throughput_lines.append(
                f"  {dialect:<10}  {outcome.library:<31}  {outcome.throughput:>8,.0f}  "
                f"{outcome.throughput / core.throughput:>6.2f}x  "
                f"{outcome.throughput / django.throughput:>8.2f}x  "
                f"{outcome.statement_summary()}"
            )
        vs_core = statekit.throughput / core.throughput
        vs_django = statekit.throughput / django.throughput
        sound = not (statekit.problems or core.problems or django.problems)
        report.targets += [
            Target(
                f"{dialect}: statekit vs hand-written Core",
                f"statekit / Core throughput >= {TARGET_VS_CORE:.2f}x",
                f"{statekit.throughput:,.0f}/s / {core.throughput:,.0f}/s = {vs_core:.2f}x",
                sound and vs_core >= TARGET_VS_CORE,
            ),
            Target(
                f"{dialect}: statekit vs django-fsm-2 + django-fsm-log",
                f"statekit / django throughput >= {TARGET_VS_DJANGO:.2f}x",
                f"{statekit.throughput:,.0f}/s / {django.throughput:,.0f}/s = {vs_django:.2f}x",
                sound and vs_django >= TARGET_VS_DJANGO,
            ),
        ]
        load_lines.append(
            f"  {dialect}: 1-min load average min {min(loads):.2f}, "
            f"median {statistics.median(loads):.2f}, max {max(loads):.2f} "
            f"({len(loads)} readings, {os.cpu_count()} CPUs)"
        )
    report.environment = env = environment(PACKAGES)
    report.notes = [
        *throughput_lines,
        "Load average during the run (sampled after every round of batches):",
        *load_lines,
        *(["PostgreSQL skipped: " + skipped] if skipped else []),
        *(["VERIFICATION FAILED (these rows do not count): " + f for f in failures]),
        f"Every contestant verified after its run: {entities + WARMUP:,} entities delivered "
        f"and {3 * (entities + WARMUP):,} history rows ({WARMUP} untimed warm-up entities "
        "whose transitions were used to count statements).",
        "For reference, the issue measured: "
        + "; ".join(f"{d}: {v}" for d, v in ISSUE_MEASURED.items() if d in dialects),
        "Profile statekit next to Core: python -m bench.persist --profile sqlite|postgresql",
        "versions: " + ", ".join(f"{k} {v}" for k, v in env.items()),
    ]
    return report


# -- profiling ---------------------------------------------------------------------------------

_DRIVER_CALLS = (
    ("~", "<method 'execute' of 'sqlite3.Cursor' objects>"),
    ("~", "<method 'commit' of 'sqlite3.Connection' objects>"),
    ("psycopg/cursor.py", "execute"),
    ("psycopg/connection.py", "commit"),
)

_STATEKIT_PARTS = (
    ("statekit/runtime.py", "fire_by_key", "Runner.fire_by_key (everything)"),
    ("statekit/store/sqlalchemy/store.py", "transaction", "store.transaction (generator)"),
    ("statekit/store/sqlalchemy/rows.py", "instance", "RowLoader.instance"),
    ("sqlalchemy/orm/session.py", "get", "Session.get (SELECT + identity map)"),
    ("statekit/runtime.py", "_fire", "Runner.fire"),
    ("statekit/engine.py", "_decide", "Machine.decide"),
    ("statekit/engine.py", "stage", "Machine.stage (state attributes)"),
    ("statekit/store/sqlalchemy/store.py", "apply", "SQLAlchemyStore.apply"),
    ("statekit/store/sqlalchemy/store.py", "_write", "_write (UPDATE + INSERT)"),
    ("sqlalchemy/sql/dml.py", "values", "Update.values() (statement built per call)"),
    ("sqlalchemy/sql/cache_key.py", "_generate_cache_key", "statement cache keys (all)"),
    ("statekit/records.py", "record", "Plan.record"),
    ("statekit/store/sqlalchemy/sessions.py", "defer", "defer (event.listen per Session)"),
    ("sqlalchemy/event/api.py", "listen", "event.listen"),
    ("statekit/store/sqlalchemy/sessions.py", "mark_persisted", "mark_persisted"),
    ("sqlalchemy/orm/session.py", "commit", "Session.commit (flush + COMMIT)"),
    ("sqlalchemy/orm/session.py", "flush", "Session.flush"),
    ("sqlalchemy/orm/session.py", "close", "Session.close"),
    ("sqlalchemy/orm/session.py", "connection", "Session.connection"),
)


def _cumulative(stats: pstats.Stats, path: str, name: str) -> tuple[float, int]:
    """Cumulative seconds and calls of the function `name` in a file ending with `path`;
    when several match (a method and the one it delegates to), the outermost one."""
    best = (0.0, 0)
    for (filename, _line, function), (_cc, nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if function == name and filename.replace("\\", "/").endswith(path) and ct > best[0]:
            best = (ct, nc)
    return best


def _driver_seconds(stats: pstats.Stats) -> float:
    return sum(_cumulative(stats, path, name)[0] for path, name in _DRIVER_CALLS)


def profile(dialect: str, entities: int = 100) -> str:
    """cProfile statekit and hand-written Core over `3 * entities` transitions each."""
    lines = [f"== profile: {DATABASES[dialect]}, {3 * entities} transitions each =="]
    with Databases(dialect) as databases:
        made = [
            StatekitContestant(databases.make("profile_statekit")),
            CoreContestant(databases.make("profile_core")),
        ]
        try:
            total = entities + WARMUP
            for contestant in made:
                contestant.setup(total)
                for event in EVENTS:
                    contestant.record(event, range(entities + 1, total + 1))
            keys = list(range(1, entities + 1))
            per_transition: dict[str, tuple[float, float]] = {}
            statekit_stats = None
            for contestant in made:
                profiler = cProfile.Profile()
                profiler.enable()
                for event in EVENTS:
                    _loop(contestant.step, event, keys)
                profiler.disable()
                stats = pstats.Stats(profiler)
                count = 3 * entities
                overall = stats.total_tt / count  # type: ignore[attr-defined]
                driver = _driver_seconds(stats) / count
                per_transition[contestant.library] = (overall, driver)
                if contestant.library == STATEKIT:
                    statekit_stats = stats
                lines.append(
                    f"{contestant.library:<31} {overall * 1e6:8.1f} µs/transition profiled; "
                    f"in the driver (cursor.execute + commit) {driver * 1e6:7.1f} µs; "
                    f"Python beyond the driver {(overall - driver) * 1e6:7.1f} µs"
                )
            (sk_all, sk_driver), (core_all, core_driver) = per_transition.values()
            lines.append(
                f"statekit - Core: {(sk_all - core_all) * 1e6:+.1f} µs/transition, of which "
                f"driver {(sk_driver - core_driver) * 1e6:+.1f} µs and Python "
                f"{((sk_all - sk_driver) - (core_all - core_driver)) * 1e6:+.1f} µs "
                "(profiling inflates Python time; compare the parts, not the totals)"
            )
            assert statekit_stats is not None
            lines.append("statekit, cumulative µs per transition by part:")
            count = 3 * entities
            for path, name, label in _STATEKIT_PARTS:
                seconds, calls = _cumulative(statekit_stats, path, name)
                if calls:
                    lines.append(
                        f"  {label:<45} {seconds / count * 1e6:8.1f} µs  "
                        f"({calls / count:.2f} calls/transition)"
                    )
            out = io.StringIO()
            statekit_stats.stream = out  # type: ignore[attr-defined]
            statekit_stats.sort_stats("tottime").print_stats(25)
            lines.append("statekit, top functions by own time:")
            lines.extend("  " + line for line in out.getvalue().splitlines() if line.strip())
        finally:
            for contestant in made:
                contestant.close()
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bench.persist --profile DB` or (internal) `--django-worker SETTINGS`."""
    parser = argparse.ArgumentParser(prog="python -m bench.persist")
    parser.add_argument("--profile", choices=sorted(DATABASES), help="profile statekit vs Core")
    parser.add_argument("--entities", type=int, default=100, help="entities to profile")
    parser.add_argument("--django-worker", metavar="DATABASE_JSON", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.django_worker:
        _django_worker(json.loads(args.django_worker))
        return 0
    if args.profile:
        gc.collect()
        print(profile(args.profile, args.entities))
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
