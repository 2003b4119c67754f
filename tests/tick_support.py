"""A one-step machine for the sweeper's stop and signal tests.

Its timeout action says on stderr which tick it starts (so a test driving
`statekit sweep` knows when to signal), calls the hooks in `EXPIRING` (for tests
in the same process) and then takes `STATEKIT_TEST_TICK_SECONDS` seconds.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import ClassVar

from sqlalchemy import MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from statekit import Context, Machine, State, Workflow
from statekit.store.sqlalchemy import StateMixin

EXPIRING: list[Callable[[Tick], None]] = []


def expire_tick(tick: Tick, ctx: Context) -> None:
    """Timeout action: announced, observed, and as slow as the environment asks."""
    print(f"expiring {tick.id}", file=sys.stderr, flush=True)
    for hook in EXPIRING:
        hook(tick)
    time.sleep(float(os.environ.get("STATEKIT_TEST_TICK_SECONDS", "0")))


class TickWorkflow(Workflow, name="tick"):
    waiting = State(initial=True, timeout=timedelta(minutes=1), on_timeout="expire")
    expired = State(final=True)

    expire = waiting.to(expired, action=expire_tick)


class TickBase(DeclarativeBase):
    metadata = MetaData()


class Tick(StateMixin, TickBase):
    """A tick: waits a minute, then expires."""

    __tablename__ = "ticks"
    __statekit_machine__: ClassVar[Machine] = TickWorkflow.machine

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
