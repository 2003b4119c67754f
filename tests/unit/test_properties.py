"""Random event sequences on the example models keep every invariant of a persisted machine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.order import OrderWorkflow
from models.ticket import Ticket, TicketWorkflow
from models.travel import Trip, TripWorkflow
from statekit import (
    Machine,
    ManualClock,
    MemoryStore,
    Runner,
    TransitionError,
    TransitionRecord,
)
from tests.support import attributes, new_order


@dataclass(frozen=True)
class Model:
    """An example machine, how to make one of its entities and payloads to try."""

    machine: Machine
    make: Callable[[str], Any]
    payloads: dict[str, list[dict[str, Any]]]


NO_PAYLOAD: list[dict[str, Any]] = [{}, {}, {}, {"unexpected": 1}]

MODELS = {
    "order": Model(
        OrderWorkflow.machine,
        new_order,
        {
            "pay": [
                {"amount": "10", "reference": "r"},
                {"amount": "9", "reference": "r"},  # pre-condition fails
                {"amount": "10", "reference": "r", "method": "invoice"},  # guard rejects
                {"amount": "-1"},  # invalid payload
            ],
            "ship": [{"carrier": "DHL", "tracking_number": "1Z"}, {"carrier": ""}],
        },
    ),
    "ticket": Model(
        TicketWorkflow.machine,
        lambda key: Ticket(id=key, subject="printer on fire"),
        {"assign": [{"agent": "ann"}, {"agent": "bo"}, {"agent": ""}]},
    ),
    "trip": Model(TripWorkflow.machine, lambda key: Trip(id=key, traveller="kim"), {}),
}

Step = tuple[str, int, int, str | None]
"""(mode, number, payload choice, idempotency key): mode "first" fires the first event
allowed now (the models declare their happy path first), "allowed" one of the events
allowed now, "any" any declared event or an unknown one, "wait" lets `number` minutes
pass."""


def steps(model: Model) -> st.SearchStrategy[list[Step]]:
    """Mostly events allowed now (so runs go deep), some refused ones, and waiting."""
    step = st.tuples(
        st.sampled_from(["first"] * 4 + ["allowed"] * 3 + ["any"] * 2 + ["wait"]),
        st.integers(0, 5000),
        st.sampled_from([0, 0, 0, 1, 2, 3]),
        st.sampled_from([None, None, None, "k-1", "k-2"]),
    )
    return st.lists(step, max_size=30)


def choose_event(machine: Machine, entity: Any, mode: str, number: int) -> str:
    """The event a step fires."""
    allowed = machine.allowed_events(entity)
    if mode == "first" and allowed:
        return allowed[0]
    if mode == "allowed" and allowed:
        return allowed[number % len(allowed)]
    pool = [*machine.events, "teleport"]
    return pool[number % len(pool)]


def check_invariants(model: Model, store: MemoryStore, entity: Any) -> list[TransitionRecord]:
    """Assert what must hold after every step; return the history."""
    machine = model.machine
    snapshot = store.load(machine.name, "e1")
    history = list(store.history(machine.name, "e1"))
    assert entity.state in machine.states
    assert snapshot.state == entity.state
    assert snapshot.version == entity.state_version == len(history)
    assert [r.seq for r in history] == list(range(1, len(history) + 1))
    expected_source = machine.initial
    for record in history:
        assert record.source == expected_source
        expected_source = record.target
    assert expected_source == entity.state
    timeout = machine.timeouts.get(entity.state)
    expected_deadline = None if timeout is None else entity.state_entered_at + timeout.after
    assert entity.state_deadline_at == snapshot.deadline_at == expected_deadline
    if entity.state in machine.final_states:
        assert machine.allowed_events(entity) == ()
        assert not any(machine.can_fire(entity, event) for event in machine.events)
    return history


def run(model: Model, plan: list[Step]) -> None:
    clock = ManualClock()
    store = MemoryStore()
    runner = Runner(model.machine, store, clock=clock)
    entity = model.make("e1")
    runner.start(entity)
    check_invariants(model, store, entity)
    for mode, number, choice, idempotency_key in plan:
        if mode == "wait":
            clock.advance(minutes=number)
            continue
        event = choose_event(model.machine, entity, mode, number)
        options = model.payloads.get(event, NO_PAYLOAD)
        payload = options[choice % len(options)]
        before = (attributes(entity), store.load(model.machine.name, "e1"))
        history_before = list(store.history(model.machine.name, "e1"))
        try:
            record = runner.fire(entity, event, idempotency_key=idempotency_key, **payload)
        except TransitionError:
            changed = False
        else:
            changed = not record.replayed
            if changed:
                assert record == store.history(model.machine.name, "e1")[-1]
                assert (record.event, record.target) == (event, entity.state)
        if not changed:
            assert (attributes(entity), store.load(model.machine.name, "e1")) == before
            assert list(store.history(model.machine.name, "e1")) == history_before
        check_invariants(model, store, entity)

    history = check_invariants(model, store, entity)
    replayed = model.make("e1")
    model.machine.start(replayed)
    for record in history:
        model.machine.fire(replayed, record.event, **(record.payload or {}))
    assert (replayed.state, replayed.state_version) == (entity.state, entity.state_version)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_random_event_sequences_keep_every_invariant(name: str) -> None:
    model = MODELS[name]

    @settings(
        max_examples=200,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(plan=steps(model))
    def check(plan: list[Step]) -> None:
        run(model, plan)

    check()


def test_the_strategies_reach_final_states() -> None:
    """Guard against vacuous runs: a plain walk reaches a final state on every model."""
    walks = {
        "order": [("reserve", {}), ("pay", MODELS["order"].payloads["pay"][0]), ("refund", {})],
        "ticket": [("assign", {"agent": "ann"}), ("start", {}), ("resolve", {}), ("close", {})],
        "trip": [("book_flight", {}), ("abort", {})],
    }
    for name, walk in walks.items():
        model = MODELS[name]
        store = MemoryStore()
        runner = Runner(model.machine, store, clock=ManualClock())
        entity = model.make("e1")
        runner.start(entity)
        for event, payload in walk:
            runner.fire(entity, event, **payload)
        assert entity.state in model.machine.final_states
        assert len(check_invariants(model, store, entity)) == len(walk)
