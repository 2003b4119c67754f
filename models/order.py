"""Order fulfilment: reserve stock, take payment, ship, deliver; cancel and refund.

Payment is guarded (the card must be authorised), has an amount pre-condition and a
post-condition; unpaid reservations time out into a stuck order whose stock
reservation is compensated; pending orders are abandoned after a day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

from statekit import CompensationContext, Context, State, StatefulObject, Workflow


class Payment(BaseModel):
    """Payload of `pay`."""

    amount: Decimal = Field(gt=0)
    method: Literal["card", "invoice"] = "card"
    reference: str = Field(min_length=1)


class Shipment(BaseModel):
    """Payload of `ship`."""

    carrier: str = Field(min_length=1)
    tracking_number: str = Field(min_length=1)


@dataclass(eq=False)
class Order(StatefulObject):
    """A customer order (plain Python; the SQLAlchemy tests map an equivalent row)."""

    id: str
    total: Decimal
    sku: str = "SKU-1"
    quantity: int = 1
    in_stock: int = 10
    card_authorized: bool = True
    credit_approved: bool = False
    paid_amount: Decimal = Decimal(0)
    notes: list[str] = field(default_factory=list)


def stock_available(order: Order, ctx: Context) -> bool | str:
    """Guard of `reserve`: enough units on hand."""
    if order.in_stock >= order.quantity:
        return True
    return f"only {order.in_stock} of {order.sku} in stock, {order.quantity} ordered"


def payment_authorized(order: Order, ctx: Context) -> bool | str:
    """Guard of `pay`: a card must be authorised, an invoice needs approved credit."""
    payment = ctx.payload_as(Payment)
    if payment.method == "card":
        return order.card_authorized or "card authorisation was declined"
    return order.credit_approved or "invoice payment needs approved credit"


def amount_matches_total(order: Order, ctx: Context) -> bool | str:
    """Pre-condition of `pay`: the payment covers the order exactly."""
    amount = ctx.payload_as(Payment).amount
    if amount == order.total:
        return True
    return f"payment of {amount} does not match the order total {order.total}"


def record_payment(order: Order, ctx: Context) -> None:
    """Action of `pay`: book the amount on the order."""
    order.paid_amount += ctx.payload_as(Payment).amount


def fully_paid(order: Order, ctx: Context) -> bool | str:
    """Post-condition of `pay`: the books balance after the payment."""
    if order.paid_amount == order.total:
        return True
    return f"paid amount {order.paid_amount} differs from total {order.total}"


def take_stock(order: Order, ctx: Context) -> None:
    """Action of `reserve`: hold the ordered units."""
    order.in_stock -= order.quantity


def release_stock(order: Order, undo: CompensationContext) -> None:
    """Compensation of `reserve`: give the reserved units back."""
    order.in_stock += order.quantity


class PaymentProvider:
    """Stand-in for the outside payment provider: refunds are idempotent by key, and
    `outages` makes the next calls fail the way a provider that is down does."""

    def __init__(self) -> None:
        self.refunds: dict[str, Decimal] = {}
        self.outages = 0

    def refund(self, idempotency_key: str, amount: Decimal) -> None:
        """Refund `amount` once per key; raises ConnectionError during an outage."""
        if self.outages > 0:
            self.outages -= 1
            raise ConnectionError("payment provider unavailable")
        self.refunds.setdefault(idempotency_key, amount)


payments = PaymentProvider()


def refund_payment(order: Order, undo: CompensationContext) -> None:
    """Compensation of `pay`: refund what was paid. The provider gets the step's
    idempotency key, so a retried refund is never paid out twice."""
    payments.refund(undo.idempotency_key, order.paid_amount)
    order.paid_amount = Decimal(0)


class OrderWorkflow(Workflow, name="order", compensated_state="cancelled"):
    """Order fulfilment from placement to delivery."""

    pending = State(
        initial=True,
        timeout=timedelta(days=1),
        on_timeout="abandon",
        description="placed, stock not yet reserved",
    )
    stock_reserved = State(
        timeout=timedelta(minutes=30), description="stock held while the customer pays"
    )
    paid = State(timeout=timedelta(days=2), description="paid, waiting to ship")
    shipped = State()
    delivered = State(final=True)
    cancelled = State(final=True)
    refunded = State(final=True)

    reserve = pending.to(
        stock_reserved, guard=stock_available, action=take_stock, compensate=release_stock
    )
    pay = stock_reserved.to(
        paid,
        guard=payment_authorized,
        pre=amount_matches_total,
        action=record_payment,
        post=fully_paid,
        payload=Payment,
        compensate=refund_payment,
    )
    ship = paid.to(shipped, payload=Shipment)
    deliver = shipped.to(delivered)
    abandon = pending.to(cancelled)
    cancel = (pending | stock_reserved).to(cancelled)
    refund = (paid | shipped).to(refunded)
