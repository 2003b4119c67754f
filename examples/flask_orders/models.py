"""The extensions and the order table of the example: the order machine of
`models/order.py`, stored in a Flask-SQLAlchemy model.

`StateMixin` adds statekit's state columns; `__statekit_machine__` is how the
extension (and the `statekit` CLI) finds the machine from the mapped class.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import DateTime, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from models.order import OrderWorkflow
from models.orm import OrderFields
from statekit.contrib.flask import StateKit
from statekit.engine import Machine
from statekit.store.sqlalchemy import StateMixin

__all__ = ["Base", "Order", "db", "statekit"]


class Base(DeclarativeBase):
    """Declarative base of the example's tables."""


db = SQLAlchemy(model_class=Base)
statekit = StateKit()


class Order(OrderFields, StateMixin, db.Model):  # type: ignore[name-defined,misc]
    """A customer's order: the columns the order machine's handlers use
    (`models.orm.OrderFields`), who placed it and when."""

    __tablename__ = "shop_orders"
    __statekit_machine__: ClassVar[Machine] = OrderWorkflow.machine

    id: Mapped[int] = mapped_column(primary_key=True)
    customer: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    def __init__(self, **fields: Any) -> None:
        fields.setdefault("created_at", datetime.now(UTC))
        super().__init__(**fields)

    def as_dict(self) -> dict[str, Any]:
        """The order's fields and state, as the JSON API shows them."""
        return {
            "id": self.id,
            "customer": self.customer,
            "total": str(self.total),
            "sku": self.sku,
            "quantity": self.quantity,
            "in_stock": self.in_stock,
            "card_authorized": self.card_authorized,
            "credit_approved": self.credit_approved,
            "paid_amount": str(self.paid_amount),
            "created_at": _iso(self.created_at),
            "state": self.state,
            "version": self.state_version,
            "entered_at": _iso(self.state_entered_at),
            "deadline_at": _iso(self.state_deadline_at),
            "stuck_at": _iso(self.stuck_at),
            "stuck_reason": self.stuck_reason,
        }


def _iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC (SQLite gives back the app's own times without their zone)."""
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
