"""A machine whose timeout action takes a while, for signal tests through `statekit sweep`.

The action says on stderr which instance it starts, so a test knows when to signal.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from typing import ClassVar

from sqlalchemy import MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from statekit import Context, Machine, State, Workflow
from statekit.store.sqlalchemy import StateMixin


def slow_expire(tick: SlowTick, ctx: Context) -> None:
    """Timeout action: half a second of work, announced when it starts."""
    print(f"expiring {tick.id}", file=sys.stderr, flush=True)
    time.sleep(0.5)


class SlowTickWorkflow(Workflow, name="slow_tick"):
    waiting = State(initial=True, timeout=timedelta(minutes=1), on_timeout="expire")
    expired = State(final=True)

    expire = waiting.to(expired, action=slow_expire)


class SlowBase(DeclarativeBase):
    metadata = MetaData()


class SlowTick(StateMixin, SlowBase):
    """A tick whose timeout takes half a second."""

    __tablename__ = "slow_ticks"
    __statekit_machine__: ClassVar[Machine] = SlowTickWorkflow.machine

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
