"""What the API and the pages share: placing orders, reading them, and the facts an
order page or the needs-attention page shows."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import func, select

from examples.flask_orders.models import Order, db, statekit
from statekit.compensation import CompensationTask
from statekit.diagrams import instance_graph, to_mermaid
from statekit.records import Snapshot, TransitionRecord

__all__ = [
    "Attention",
    "NewOrder",
    "attention",
    "diagram_of",
    "orders_in",
    "place_order",
    "record_as_dict",
    "state_counts",
]


class NewOrder(BaseModel):
    """What placing an order takes (the API's JSON body, the form's fields)."""

    customer: str = Field(min_length=1, max_length=100)
    total: Decimal = Field(gt=0, max_digits=12, decimal_places=2)
    sku: str = Field(default="SKU-1", min_length=1, max_length=32)
    quantity: int = Field(default=1, ge=1)
    in_stock: int = Field(default=10, ge=0)
    card_authorized: bool = True
    credit_approved: bool = False


def place_order(new: NewOrder) -> Order:
    """Add an order to the request's session and start its life (not committed)."""
    order = Order(**new.model_dump())
    statekit.start(order)  # adds it to db.session and flushes: the key is known
    return order


def orders_in(state: str | None) -> list[Order]:
    """The orders in `state` (all when None), newest first."""
    query = select(Order).order_by(Order.id.desc())
    if state:
        query = query.where(Order.state == state)
    return list(db.session.scalars(query))


def state_counts() -> dict[str, int]:
    """How many orders are in each of the machine's states (zeros included)."""
    counts = dict.fromkeys(Order.__statekit_machine__.states, 0)
    rows = db.session.execute(select(Order.state, func.count()).group_by(Order.state))
    for state, count in rows:
        counts[state] = count
    return counts


def diagram_of(order: Order, history: list[TransitionRecord]) -> str:
    """The order's path through the machine as Mermaid text: its current state
    highlighted, the steps it took numbered, the rest faded."""
    machine = Order.__statekit_machine__
    return to_mermaid(instance_graph(machine, machine.snapshot(order), history))


def record_as_dict(record: TransitionRecord) -> dict[str, Any]:
    """A history row as the JSON API shows it."""
    return {**asdict(record), "at": record.at.isoformat()}


@dataclass(frozen=True)
class Attention:
    """A stuck order, or one with a dead-lettered compensation, and its
    compensations, for a person to look at."""

    snapshot: Snapshot
    tasks: list[CompensationTask]

    @property
    def dead(self) -> list[CompensationTask]:
        """The compensations that used all their attempts."""
        return [t for t in self.tasks if t.status == "dead"]

    def waiting(self, task: CompensationTask) -> bool:
        """Whether `task` waits for a newer step's compensation (newest run first)."""
        return any(
            other.step_seq > task.step_seq and other.status not in ("done", "cancelled")
            for other in self.tasks
        )

    def as_dict(self) -> dict[str, Any]:
        """As the JSON API shows it."""
        s = self.snapshot
        return {
            "key": s.key,
            "state": s.state,
            "stuck_at": None if s.stuck_at is None else s.stuck_at.isoformat(),
            "stuck_reason": s.stuck_reason,
            "compensations": [
                {
                    "action": t.action,
                    "step": t.step_seq,
                    "status": t.status,
                    "attempts": t.attempts,
                    "max_attempts": t.max_attempts,
                    "next_attempt_at": (
                        None if t.next_attempt_at is None else t.next_attempt_at.isoformat()
                    ),
                    "last_error": t.last_error,
                }
                for t in self.tasks
            ],
        }


def attention() -> list[Attention]:
    """Every stuck order and every order with a dead-lettered compensation."""
    return [
        Attention(snapshot, tasks)
        for snapshot, tasks in statekit.stuck()
        if snapshot.entity_type == Order.__statekit_machine__.name
    ]
