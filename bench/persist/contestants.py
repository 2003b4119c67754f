"""The persistence benchmark's contestants: statekit, hand-written Core, the ORM, and
django-fsm-2 + django-fsm-log (driven in a worker process of its own)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, bindparam, func, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker

from bench import time_once
from bench._databases import Location, listening, verb
from bench.persist.django_worker import REPLY
from bench.persist.workload import (
    DEFINITION_VERSION,
    ENTITY_TYPE,
    HISTORY,
    ORDERS,
    STEPS,
    OrmBase,
    OrmOrder,
    OrmTransition,
    PersistOrderWorkflow,
    StatekitBase,
    StatekitOrder,
    fire_each,
    utcnow,
)
from statekit import Runner
from statekit.store.sqlalchemy import SQLAlchemyStore

STATEKIT = "statekit"
CORE = "SQLAlchemy Core (hand-written)"
ORM = "SQLAlchemy ORM (version_id_col)"
DJANGO = "django-fsm-2 + django-fsm-log"
STATEKIT_DJANGO = "statekit on Django (DjangoStore)"

OPERATIONS = {
    STATEKIT: "Runner(SQLAlchemyStore).fire_by_key",
    CORE: "SELECT; guard; UPDATE .. AND v=:v; INSERT",
    ORM: "session.get; set; add history; commit",
    DJANGO: "atomic: get; order.<event>(); save()",
    STATEKIT_DJANGO: "Runner(DjangoStore).fire_by_key",
}


class RefusedError(Exception):
    """A hand-written contestant refused a transition or lost a race."""


# -- statement recording -----------------------------------------------------------------------


def recording(engine: Engine, log: list[str]) -> AbstractContextManager[None]:
    """Record every statement the engine sends, plus BEGIN (psycopg sends it before the
    first statement of a transaction) and COMMIT."""
    sqlite = engine.dialect.name == "sqlite"

    def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        log.append(verb(statement))

    def on_begin(conn: Any) -> None:
        if not sqlite:  # SQLite: configure_sqlite's begin listener sends BEGIN IMMEDIATE
            log.append("BEGIN")

    def on_commit(conn: Any) -> None:
        log.append("COMMIT")

    return listening(
        engine, [("before_cursor_execute", on_execute), ("begin", on_begin), ("commit", on_commit)]
    )


def django_database(db: Location) -> dict[str, Any]:
    """The Django DATABASES entry for the same database."""
    if db.dialect == "sqlite":
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": db.path,
            "OPTIONS": {
                "init_command": (
                    "PRAGMA journal_mode=WAL;PRAGMA busy_timeout=30000;"
                    "PRAGMA synchronous=FULL;PRAGMA foreign_keys=ON"
                ),
                "transaction_mode": "IMMEDIATE",
            },
        }
    url = make_url(db.url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": url.database,
        "USER": url.username or "",
        "PASSWORD": url.password or "",
        "HOST": url.host or "",
        "PORT": str(url.port or ""),
    }


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


class SQLAlchemyContestant:
    """A contestant in this process, on a SQLAlchemy engine."""

    library = ""

    def __init__(self, db: Location) -> None:
        self.db = db
        # every contestant's transactions begin IMMEDIATE on SQLite, as Django's are
        self.engine = db.engine(begin="IMMEDIATE")

    def setup(self, total: int) -> None:
        """Create the tables and `total` orders in `pending` (keys 1..total); untimed."""
        self.create_tables()
        at = utcnow()
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
        return time_once(partial(fire_each, self.step, event), list(keys))

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
        return recording(self.engine, log)

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
        StatekitBase.metadata.create_all(self.engine)
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
        self.log.append(verb(record.getMessage()))


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
            at = utcnow()
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
        OrmBase.metadata.create_all(self.engine)

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
            at = utcnow()
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
    """A Django contestant, driven in a worker process of its own (Django's settings
    can be configured once per process): `kind` "fsm" is django-fsm-2 +
    django-fsm-log, "statekit" statekit's `DjangoStore`."""

    def __init__(self, db: Location, kind: str = "fsm") -> None:
        self.library = STATEKIT_DJANGO if kind == "statekit" else DJANGO
        root = Path(__file__).resolve().parents[2]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
        database = json.dumps(django_database(db))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.persist", "--django-worker", database, kind],
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
            if line.startswith(REPLY):
                answer = json.loads(line[len(REPLY) :])
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
    ("statekit_django", partial(DjangoContestant, kind="statekit")),
)
