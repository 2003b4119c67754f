"""The example's ``shop_order`` table mapped with SQLAlchemy, for the standalone
``statekit --db URL -m tests.contrib.django.admin.sa_orders`` the command tests
compare ``manage.py statekit`` with: one machine, two stores, one database."""

from __future__ import annotations

from typing import ClassVar

from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from models.order import OrderWorkflow
from models.orm import OrderFields
from statekit.engine import Machine
from statekit.store.sqlalchemy import StateMixin


class Base(DeclarativeBase):
    """Declarative base of the mapping."""


class Order(OrderFields, StateMixin, Base):
    """The Django example's `Order` rows (the columns the machine uses)."""

    __tablename__ = "shop_order"
    __statekit_machine__: ClassVar[Machine] = OrderWorkflow.machine

    id: Mapped[int] = mapped_column(primary_key=True)
