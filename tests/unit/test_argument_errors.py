"""Arguments and settings statekit refuses: a StatekitError (and still a ValueError or
TypeError, as before) whose message names the value and what is allowed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from models.order import Order, OrderWorkflow
from statekit import (
    InvalidArgumentError,
    InvalidArgumentTypeError,
    ManualClock,
    MemoryStore,
    Runner,
    State,
    StatekitError,
    Sweeper,
    Workflow,
    retry_on_conflict,
)
from statekit.diagrams import machine_graph
from statekit.diagrams.render import render
from statekit.records import Context


def runner() -> Runner:
    return Runner(OrderWorkflow.machine, MemoryStore())


def test_a_sweeper_without_runners() -> None:
    with pytest.raises(StatekitError, match="at least one Runner") as info:
        Sweeper([])
    assert isinstance(info.value, ValueError)


def test_sweeper_runners_on_two_stores() -> None:
    with pytest.raises(StatekitError, match="share one store") as info:
        Sweeper([runner(), runner()])
    assert isinstance(info.value, ValueError)


def test_a_sweeper_batch_size_below_one() -> None:
    with pytest.raises(StatekitError, match=r"batch_size 0.*at least 1") as info:
        Sweeper([runner()], batch_size=0)
    assert isinstance(info.value, ValueError)


def test_a_handler_timeout_as_long_as_the_lease() -> None:
    with pytest.raises(StatekitError, match=r"handler_timeout \(0:05:00\).*lease \(0:05:00\)"):
        Sweeper([runner()], lease=timedelta(minutes=5), handler_timeout=timedelta(minutes=5))
    with pytest.raises(StatekitError, match="must be positive") as info:
        Sweeper([runner()], handler_timeout=timedelta(0))
    assert isinstance(info.value, ValueError)


def test_a_manual_clock_refuses_naive_times_and_going_back() -> None:
    with pytest.raises(StatekitError, match="timezone-aware") as info:
        ManualClock(datetime(2026, 1, 1))
    assert isinstance(info.value, ValueError)
    clock = ManualClock()
    with pytest.raises(StatekitError, match=r"backwards.*-1 day"):
        clock.advance(timedelta(days=-1))
    with pytest.raises(StatekitError, match="timezone-aware"):
        clock.set(datetime(2027, 1, 1))
    with pytest.raises(StatekitError, match=r"backwards.*2025-01-01"):
        clock.set(datetime(2025, 1, 1, tzinfo=UTC))


def test_a_system_plan_into_an_unknown_state_names_the_states() -> None:
    machine = OrderWorkflow.machine

    class Entity:
        id = "o1"

    entity = Entity()
    machine.start(entity)
    with pytest.raises(StatekitError, match=r"no state 'limbo'.*pending") as info:
        machine.system_plan(entity, "@resolve", "limbo", now=datetime.now(UTC), actor="me")
    assert isinstance(info.value, ValueError)


def test_render_names_the_formats_it_can_write() -> None:
    graph = machine_graph(OrderWorkflow.machine)
    with pytest.raises(StatekitError, match=r"'gif'.*svg, png, pdf") as info:
        render(graph, "gif")  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)


def test_payload_as_the_wrong_model_names_both() -> None:
    from pydantic import BaseModel

    class Paid(BaseModel):
        amount: int

    class Shipped(BaseModel):
        carrier: str

    ctx = Context("pay", "a", "b", Paid(amount=1), datetime.now(UTC))
    with pytest.raises(StatekitError, match="carries Paid, not Shipped") as info:
        ctx.payload_as(Shipped)
    assert isinstance(info.value, TypeError)


def test_on_timeout_without_a_timeout() -> None:
    with pytest.raises(StatekitError, match=r"on_timeout='expire'.*needs a timeout") as info:
        State(on_timeout="expire")
    assert isinstance(info.value, TypeError)


def test_an_unknown_transition_option_lists_the_known_ones() -> None:
    with pytest.raises(StatekitError, match=r"unknown option\(s\) colour.*known: .*guard") as info:

        class BadOption(Workflow):
            a = State(initial=True)
            b = State(final=True)
            go = (a | a).to(b, colour="red")

    assert isinstance(info.value, TypeError)


def test_importing_a_nested_machine() -> None:
    from transitions.extensions.nesting import HierarchicalMachine

    from statekit.interop.transitions import from_transitions

    tm = HierarchicalMachine(states=["a", {"name": "b", "children": ["x"]}], initial="a")
    with pytest.raises(StatekitError, match=r"nested.*flat") as info:
        from_transitions(tm, "nested")
    assert isinstance(info.value, TypeError)


def test_an_exported_trigger_given_a_positional_payload() -> None:
    from statekit.interop.transitions import to_transitions

    order = Order(id="o1", total=Decimal(10))
    to_transitions(OrderWorkflow.machine, order)
    order.reserve()
    with pytest.raises(StatekitError, match=r"'pay'.*keyword arguments") as info:
        order.pay("12")
    assert isinstance(info.value, TypeError)


def test_a_graph_node_that_is_not_there_names_the_nodes() -> None:
    graph = machine_graph(OrderWorkflow.machine)
    with pytest.raises(StatekitError, match=r"'order' has no node 'limbo'.*pending"):
        graph.node("limbo")


@pytest.mark.parametrize("option", ["actor", "idempotency_key", "correlation_id"])
@pytest.mark.parametrize("value", [42, b"ops", object()])
def test_a_fire_label_that_is_not_text(option: str, value: object) -> None:
    """Not `len()`'s raw TypeError: an InvalidArgumentTypeError naming the option, and
    nothing written."""
    orders = runner()
    order = Order(id="o1", total=Decimal(10))
    orders.start(order)
    with pytest.raises(InvalidArgumentTypeError, match=f"{option}=.* refused: text") as info:
        orders.fire(order, "reserve", **{option: value})
    assert isinstance(info.value, TypeError)
    assert info.value.argument == option
    with pytest.raises(InvalidArgumentTypeError):
        orders.fire_by_key("o1", "reserve", **{option: value})
    assert (order.state, orders.history(order)) == ("pending", [])


@pytest.mark.parametrize("retries", [-1, "2", 1.5, None])
def test_fire_by_key_retries_that_are_not_a_count(retries: object) -> None:
    orders = runner()
    orders.start(Order(id="o1", total=Decimal(10)))
    with pytest.raises(InvalidArgumentError, match=r"retries=.* refused") as info:
        orders.fire_by_key("o1", "reserve", retries=retries)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError | TypeError)
    assert orders.store.load("order", "o1").state == "pending"
    with pytest.raises(InvalidArgumentError, match=r"attempts=0 refused"):
        retry_on_conflict(lambda: None, attempts=0)
