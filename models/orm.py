"""SQLAlchemy mappings of the example entities, for the SQL store, the demo and tests.

The same workflows drive these rows and the plain objects in `models.order`,
`models.ticket` and `models.travel`: a machine only reads and writes attributes.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import JSON, Numeric, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from models.order import OrderWorkflow
from models.ticket import TicketWorkflow
from models.travel import TripWorkflow
from statekit.engine import Machine
from statekit.store.sqlalchemy import StateMixin


class Base(DeclarativeBase):
    """Declarative base of the example tables."""


class OrderFields:
    """The columns of an order that the order machine's guards, conditions, actions
    and compensations read and write (see `models.order.Order`), with their defaults;
    a mixin for a mapped class of any declarative base (`OrderRow` here, the Flask
    example's `Order`)."""

    total: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    sku: Mapped[str] = mapped_column(String(32), default="SKU-1")
    quantity: Mapped[int] = mapped_column(default=1)
    in_stock: Mapped[int] = mapped_column(default=10)
    card_authorized: Mapped[bool] = mapped_column(default=True)
    credit_approved: Mapped[bool] = mapped_column(default=False)
    paid_amount: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal(0))

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("sku", "SKU-1")
        kwargs.setdefault("quantity", 1)
        kwargs.setdefault("in_stock", 10)
        kwargs.setdefault("card_authorized", True)
        kwargs.setdefault("credit_approved", False)
        kwargs.setdefault("paid_amount", Decimal(0))
        super().__init__(**kwargs)


class OrderRow(OrderFields, StateMixin, Base):
    """An order row (see `models.order.Order`)."""

    __tablename__ = "orders"
    __statekit_machine__: ClassVar[Machine] = OrderWorkflow.machine

    id: Mapped[int] = mapped_column(primary_key=True)


class TicketRow(StateMixin, Base):
    """A support ticket row (see `models.ticket.Ticket`)."""

    __tablename__ = "tickets"
    __statekit_machine__: ClassVar[Machine] = TicketWorkflow.machine

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subject: Mapped[str] = mapped_column(String(200))
    agent: Mapped[str | None] = mapped_column(String(64))


class TripRow(StateMixin, Base):
    """A travel booking row (see `models.travel.Trip`)."""

    __tablename__ = "trips"
    __statekit_machine__: ClassVar[Machine] = TripWorkflow.machine

    id: Mapped[int] = mapped_column(primary_key=True)
    traveller: Mapped[str] = mapped_column(String(100))
    bookings: Mapped[list[str]] = mapped_column(JSON, default=list)


ENTITIES: dict[Machine, type] = {
    row.__statekit_machine__: row for row in (OrderRow, TicketRow, TripRow)
}
"""Each example machine and the mapped class that stores its instances."""
