"""The drain's proof under concurrency (issue 16): orders that completed five steps,
each undone by a handler that logs its call, run by sweeper processes at once.

Every handler call inserts one row into `proof_calls` on a connection of its own that
commits at once, so a call counts whether or not its compensation commits: "called
exactly once" is a count, "never two of one order at once" and "newest first" are
comparisons of the calls' start and end (CLOCK_MONOTONIC, one clock for every process
on the machine). The handler's own write (`undone` gets the step's number) commits
with its completion, so the committed order of steps is in the row too.
"""

from __future__ import annotations

import os
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import BigInteger, Column, Engine, Integer, MetaData, String, Table, insert
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from statekit import CompensationContext, Machine, Runner, State, Sweeper, Workflow
from statekit.store.sqlalchemy import SQLAlchemyStore, StateMixin

STEPS = 5
HANDLER_SECONDS = (0.001, 0.006)
"""How long a handler waits (a remote call): drawn from this range per call."""


class ProofBase(DeclarativeBase):
    metadata = MetaData()


calls = Table(
    "proof_calls",
    ProofBase.metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_key", String(64), nullable=False),
    Column("step", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_ns", BigInteger, nullable=False),
    Column("ended_ns", BigInteger, nullable=False),
)

_CALLS: dict[str, Engine] = {}
"""Per worker process: the engine the handler logs its calls on (self-committing)."""


def undo_step(order: ProofOrder, undo: CompensationContext) -> None:
    """Compensation of every step: a remote call, logged with its start and end."""
    started = time.monotonic_ns()
    time.sleep(random.uniform(*HANDLER_SECONDS))
    ended = time.monotonic_ns()
    with _CALLS["engine"].connect() as conn:
        conn.execute(
            insert(calls).values(
                order_key=order.id,
                step=undo.step.seq,
                attempt=undo.attempt,
                pid=os.getpid(),
                started_ns=started,
                ended_ns=ended,
            )
        )
    order.undone = (order.undone or "") + str(undo.step.seq)


class ProofWorkflow(Workflow, name="proof_order", compensated_state="undone"):
    """s0 -> s1 -> ... -> s5 -> shipped, each step undone by `undo_step`; s5 gets stuck."""

    s0 = State(initial=True)
    s1 = State()
    s2 = State()
    s3 = State()
    s4 = State()
    s5 = State(timeout=timedelta(minutes=10))
    shipped = State(final=True)
    undone = State(final=True)

    step1 = s0.to(s1, compensate=undo_step)
    step2 = s1.to(s2, compensate=undo_step)
    step3 = s2.to(s3, compensate=undo_step)
    step4 = s3.to(s4, compensate=undo_step)
    step5 = s4.to(s5, compensate=undo_step)
    ship = s5.to(shipped)


class ProofOrder(StateMixin, ProofBase):
    """An order row."""

    __tablename__ = "proof_orders"
    __statekit_machine__: ClassVar[Machine] = ProofWorkflow.machine

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    undone: Mapped[str | None] = mapped_column(String(16))


NAME = ProofWorkflow.machine.name


def load(store: SQLAlchemyStore, orders: int) -> list[str]:
    """`orders` orders stuck in s5 after five steps, each step's compensation due."""
    now = datetime.now(UTC)
    since, stuck = now - timedelta(hours=1), now - timedelta(minutes=1)
    keys = [f"order-{n:05d}" for n in range(orders)]
    t, c = store.tables.transitions, store.tables.compensations
    with store.engine.begin() as conn:
        conn.execute(
            insert(ProofOrder.__table__),
            [
                {
                    "id": key,
                    "state": "s5",
                    "state_version": STEPS + 1,
                    "state_entered_at": since,
                    "state_definition_version": 1,
                    "stuck_at": stuck,
                    "stuck_reason": "proof",
                }
                for key in keys
            ],
        )
        history: list[dict[str, Any]] = []
        outbox: list[dict[str, Any]] = []
        for key in keys:
            for seq in range(1, STEPS + 1):
                history.append(
                    {
                        "entity_type": NAME,
                        "entity_key": key,
                        "seq": seq,
                        "event": f"step{seq}",
                        "source": f"s{seq - 1}",
                        "target": f"s{seq}",
                        "at": since,
                        "definition_version": 1,
                    }
                )
                outbox.append(
                    {
                        "entity_type": NAME,
                        "entity_key": key,
                        "step_seq": seq,
                        "action": "undo_step",
                        "event": f"step{seq}",
                        "status": "pending",
                        "attempts": 0,
                        "max_attempts": 5,
                        "next_attempt_at": stuck,
                        "created_at": stuck,
                        "updated_at": stuck,
                    }
                )
            history.append(
                {
                    "entity_type": NAME,
                    "entity_key": key,
                    "seq": STEPS + 1,
                    "event": "@stuck",
                    "source": "s5",
                    "target": "s5",
                    "at": stuck,
                    "definition_version": 1,
                }
            )
        conn.execute(insert(t), history)
        conn.execute(insert(c), outbox)
    return keys


def drain(url: str, concurrency: int) -> dict[str, Any]:
    """In a worker process: wait for the parent's go, then drain until nothing is due."""
    import json
    import sys

    from tests.sql_support import engine_for

    engine = engine_for(url, pool_size=concurrency + 4)
    _CALLS["engine"] = engine_for(url, isolation_level="AUTOCOMMIT", pool_size=concurrency + 2)
    store = SQLAlchemyStore(engine, {ProofWorkflow.machine: ProofOrder})
    sweeper = Sweeper([Runner(ProofWorkflow.machine, store)], concurrency=concurrency)
    store.compensations(NAME, "none")  # connect before the go
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()
    started = time.monotonic()
    result = sweeper.run_once(deadlines=False).as_dict()
    engine.dispose()
    _CALLS["engine"].dispose()
    return {**result, "seconds": time.monotonic() - started}
