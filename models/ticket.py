"""A support ticket: new, assigned, worked on, waiting on the customer, resolved, closed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from pydantic import BaseModel, Field

from statekit import Context, State, StatefulObject, Workflow


class Assignment(BaseModel):
    """Payload of `assign`."""

    agent: str = Field(min_length=1)


@dataclass(eq=False)
class Ticket(StatefulObject):
    """A customer support ticket."""

    id: str
    subject: str
    agent: str | None = None
    customer_replied: bool = False


def set_agent(ticket: Ticket, ctx: Context) -> None:
    """Action of `assign`: remember who owns the ticket."""
    ticket.agent = ctx.payload_as(Assignment).agent


def has_agent(ticket: Ticket, ctx: Context) -> bool | str:
    """Guard of `start`: only an assigned ticket can be worked on."""
    return ticket.agent is not None or "ticket has no agent"


class TicketWorkflow(Workflow, name="ticket"):
    """Support ticket life cycle with customer-wait and auto-close deadlines."""

    new = State(initial=True, timeout=timedelta(hours=4), description="not yet triaged")
    assigned = State()
    in_progress = State()
    waiting_on_customer = State(timeout=timedelta(days=7), on_timeout="expire")
    resolved = State(timeout=timedelta(days=3), on_timeout="close")
    closed = State(final=True)

    assign = (new | assigned).to(assigned, action=set_agent, payload=Assignment)
    start = assigned.to(in_progress, guard=has_agent)
    ask_customer = in_progress.to(waiting_on_customer)
    reply = waiting_on_customer.to(in_progress)
    resolve = in_progress.to(resolved)
    reopen = resolved.to(in_progress)
    close = resolved.to(closed)
    expire = waiting_on_customer.to(closed)
