"""What the persistence benchmark drives: the orders, their machine and their tables.

statekit, the hand-written Core and the ORM contestants use identical DDL: the
`StateMixin` columns and due index, and `statekit_transitions` as statekit defines it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Boolean, Table
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bench._databases import Databases
from statekit import Context, State, Workflow
from statekit.store.sqlalchemy import StateMixin, statekit_tables

EVENTS = ("pay", "ship", "deliver")
STEPS = {
    ("pending", "pay"): "paid",
    ("paid", "ship"): "shipped",
    ("shipped", "deliver"): "delivered",
}
ENTITY_TYPE = "persist_order"
DEFINITION_VERSION = 1

WARMUP = 30
"""Extra entities per contestant, driven through untimed first (statement count)."""

DATABASE_PREFIX = "statekit_bench_persist"

DATABASES = {
    "sqlite": "SQLite file: WAL, synchronous=FULL, BEGIN IMMEDIATE",
    "postgresql": "PostgreSQL",
}


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


class StatekitBase(DeclarativeBase):
    pass


class StatekitOrder(StateMixin, StatekitBase):
    """statekit's entity: the application's mapped class with `StateMixin`."""

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    card_authorized: Mapped[bool] = mapped_column(Boolean, nullable=False)


# -- the other SQLAlchemy contestants' tables: the same DDL as statekit's --------------------

ORDERS = cast(Table, StatekitOrder.__table__)
"""The orders table (StateMixin's columns and due index); each contestant has its own
database, so the hand-written Core uses this very definition."""
HISTORY: Table = statekit_tables().transitions
"""`statekit_transitions` as statekit defines it (same columns, key, constraints)."""


class OrmBase(DeclarativeBase):
    pass


class OrmOrder(OrmBase):
    """An order mapped with the ORM's own optimistic locking, on the same table DDL."""

    __table__ = ORDERS.to_metadata(OrmBase.metadata)
    __mapper_args__ = {"version_id_col": __table__.c.state_version}  # noqa: RUF012

    # The columns the contestant reads and writes, typed (mapped from `__table__`).
    id: Mapped[int]
    card_authorized: Mapped[bool]
    state: Mapped[str]
    state_version: Mapped[int]
    state_entered_at: Mapped[datetime | None]


class OrmTransition(OrmBase):
    """A history row, as an ORM object."""

    __table__ = statekit_tables(OrmBase.metadata).transitions


# -- driving -------------------------------------------------------------------------------------


def utcnow() -> datetime:
    """The time a hand-written contestant stamps on its rows."""
    return datetime.now(UTC)


def fire_each(step: Callable[[int, str], object], event: str, keys: list[int]) -> None:
    """Fire `event` on each key with `step`: the loop every contestant's batch times."""
    for key in keys:
        step(key, event)


def databases(dialect: str) -> Databases:
    """One run's scratch databases on `dialect`: the PostgreSQL database of contestant
    `name` is `statekit_bench_persist_<pid>_<name>`."""
    return Databases(dialect, f"{DATABASE_PREFIX}_{os.getpid()}")
