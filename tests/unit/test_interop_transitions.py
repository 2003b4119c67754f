"""The transitions bridge: export, import, round trips, and the same decisions either way."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict
from transitions import Machine as TransitionsMachine
from transitions import MachineError
from transitions.core import EventData
from transitions.extensions.nesting import HierarchicalMachine

from models.order import Order, OrderWorkflow
from models.ticket import Ticket, TicketWorkflow
from models.travel import Trip, TripWorkflow
from statekit import (
    Context,
    DefinitionError,
    DefinitionMismatchError,
    GuardRejectedError,
    InvalidPayloadError,
    Machine,
    MachineSpec,
    PostconditionFailedError,
    PreconditionFailedError,
    State,
    StatefulObject,
    StateSpec,
    TransitionError,
    TransitionNotAllowedError,
    TransitionSpec,
    UnknownEventError,
    Workflow,
)
from statekit.interop.transitions import from_transitions, to_transitions

# -- a machine with guarded branches, pre/post-conditions, actions and effects ---------


@dataclass(eq=False)
class Gadget(StatefulObject):
    """Flags the guards read; the random steps toggle them."""

    id: str = "g1"
    f1: bool = False
    f2: bool = False
    f3: bool = False
    count: int = 0
    effects: int = 0


def f1(g: Gadget, ctx: Context) -> bool | str:
    """Guard that explains itself when it fails."""
    return g.f1 or "f1 is off"


def f2(g: Gadget, ctx: Context) -> bool:
    """Plain boolean guard."""
    return g.f2


def f3(g: Gadget, ctx: Context) -> bool | str:
    """Another explaining guard."""
    return g.f3 or "f3 is off"


def bump(g: Gadget, ctx: Context) -> None:
    """Action: count the step."""
    g.count += 1


def below_limit(g: Gadget, ctx: Context) -> bool | str:
    """Post-condition: fails once the count passes 2 (the bump is then undone)."""
    return g.count <= 2 or f"count {g.count} is over the limit"


def flaky(g: Gadget, ctx: Context) -> None:
    """Effect that counts itself, then fails when f3 is on (failures are only logged)."""
    g.effects += 1
    if g.f3:
        raise RuntimeError("flaky effect")


class GadgetWorkflow(Workflow, name="gadget"):
    """Branches tried in order, a pre-condition that must not fall through, a self-loop."""

    idle = State(initial=True)
    armed = State()
    running = State()
    done = State(final=True)
    failed = State(final=True)

    start = (
        idle.to(armed, guard=f1)
        | idle.to(running, unless=f2)
        | idle.to(armed, guard=[f2, f3])
        | idle.to_self(action=bump, post=below_limit)
    )
    tick = (armed | running).to(running, guard=f3, pre=f1, action=bump, post=below_limit) | (
        armed | running
    ).to(idle, unless=f1)
    finish = running.to(done, guard=f2) | running.to(failed, guard=f3)
    abort = (idle | armed).to(failed)
    reset = armed.to(idle, effect=flaky)


# -- running the same step on both sides -----------------------------------------------


def outcome_of(error: TransitionError) -> Any:
    """Name a statekit refusal; conditions are named with the check that failed."""
    if isinstance(error, PreconditionFailedError | PostconditionFailedError):
        return (error.kind, error.condition)
    names: dict[type[TransitionError], str] = {
        UnknownEventError: "unknown",
        TransitionNotAllowedError: "not allowed",
        GuardRejectedError: "guards",
        InvalidPayloadError: "payload",
    }
    return names[type(error)]


def statekit_outcome(
    machine: Machine, entity: object, event: str, payload: Mapping[str, Any]
) -> Any:
    """Fire through statekit and name the outcome."""
    try:
        machine.fire(entity, event, **payload)
    except TransitionError as exc:
        return outcome_of(exc)
    return "accepted"


def transitions_outcome(model: Any, event: str, payload: Mapping[str, Any]) -> Any:
    """Fire through transitions and name the outcome in statekit's terms."""
    try:
        accepted = model.trigger(event, **payload)
    except AttributeError as exc:
        if "Do not know event named" not in str(exc):
            raise
        return "unknown"
    except MachineError:
        return "not allowed"
    except (PreconditionFailedError, PostconditionFailedError, InvalidPayloadError) as exc:
        return outcome_of(exc)  # the bridge raises these statekit errors itself
    return "accepted" if accepted else "guards"


REFUSED = {"unknown", "not allowed", "guards"}
STRAY = [{}, {}, {}, {"stray": 1}]  # payloads for events that declare none

Step = tuple[str, Any, int]
"""("set", attribute, value index), ("fire", event, payload index) or ("pick", allowed
event index, payload index): "pick" fires one of the events allowed in the current state,
so walks go deep; "fire" also sends events that are not allowed or not declared."""


@dataclass
class Walk:
    """What a differential walk varies: attributes to set and payloads to send."""

    settable: dict[str, list[Any]]
    payloads: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def steps(self, events: list[str]) -> st.SearchStrategy[list[Step]]:
        index = st.integers(0, 7)
        picks = st.tuples(st.just("pick"), index, index)
        fires = st.tuples(st.just("fire"), st.sampled_from(events), index)
        sets = st.tuples(st.just("set"), st.sampled_from(sorted(self.settable)), index)
        return st.lists(st.one_of(picks, picks, fires, sets, sets), min_size=5, max_size=40)

    def payload(self, event: str, index: int) -> dict[str, Any]:
        options = self.payloads.get(event, STRAY)
        return options[index % len(options)]


def run_pair(
    machine: Machine,
    ours: Any,
    theirs: Any,
    walk: Walk,
    steps: list[Step],
    observed: tuple[str, ...],
    *,
    ignore_invalid_triggers: bool | None = None,
) -> set[Any]:
    """Apply `steps` to `ours` through statekit and to `theirs` through transitions,
    asserting the same decision and the same observed attributes after every step."""
    seen: set[Any] = set()
    for kind, name, value in steps:
        if kind == "set":
            options = walk.settable[name]
            setattr(ours, name, options[value % len(options)])
            setattr(theirs, name, options[value % len(options)])
            continue
        event = name
        if kind == "pick":
            allowed = machine.allowed_events(ours) or ("none",)
            event = allowed[name % len(allowed)]
        payload = walk.payload(event, value)
        expected = statekit_outcome(machine, ours, event, payload)
        actual = transitions_outcome(theirs, event, payload)
        if ignore_invalid_triggers and expected in REFUSED:
            expected = "guards"  # transitions returns False for all three
        assert actual == expected, (event, payload, ours.state)
        seen.add(expected if isinstance(expected, str) else expected[0])
        for attribute in ("state", *observed):
            assert getattr(theirs, attribute) == getattr(ours, attribute), (attribute, event)
    return seen


def run_both(
    machine: Machine,
    make: Callable[[], Any],
    walk: Walk,
    steps: list[Step],
    observed: tuple[str, ...],
    *,
    ignore_invalid_triggers: bool | None = None,
) -> set[Any]:
    """A statekit entity against its twin driven by the exported transitions machine."""
    ours, theirs = make(), make()
    machine.start(ours)
    to_transitions(machine, theirs, ignore_invalid_triggers=ignore_invalid_triggers)
    assert theirs.state == machine.initial
    return run_pair(
        machine,
        ours,
        theirs,
        walk,
        steps,
        observed,
        ignore_invalid_triggers=ignore_invalid_triggers,
    )


FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FLAGS = [True, False]

GADGET = Walk({"f1": FLAGS, "f2": FLAGS, "f3": FLAGS, "count": [0, 2]})


@FAST
@given(
    steps=GADGET.steps([*GadgetWorkflow.machine.events, "explode"]),
    ignore=st.sampled_from([None, True]),
)
def test_differential_guarded_branches(steps: list[Step], ignore: bool | None) -> None:
    run_both(
        GadgetWorkflow.machine,
        Gadget,
        GADGET,
        steps,
        ("f1", "f2", "f3", "count", "effects"),
        ignore_invalid_triggers=ignore,
    )


def by_name(walk: Walk, name: str, value: Any) -> Step:
    return ("set", name, walk.settable[name].index(value))


def test_differential_covers_every_outcome() -> None:
    """A fixed walk that reaches each kind of outcome, so the comparisons the property
    tests make are known to exercise all of them."""
    g = GADGET
    steps: list[Step] = [
        ("fire", "explode", 0),  # unknown
        ("fire", "finish", 0),  # not allowed from idle
        ("fire", "start", 3),  # payload
        by_name(g, "f2", True),
        ("fire", "start", 0),  # every guarded branch fails: the self-loop, count 1
        by_name(g, "count", 2),
        ("fire", "start", 0),  # post-condition fails, the bump is undone
        by_name(g, "f1", True),
        ("fire", "start", 0),  # -> armed
        by_name(g, "f1", False),
        by_name(g, "f3", True),
        ("fire", "tick", 0),  # f3 passes, pre-condition f1 fails: no fall-through
        by_name(g, "f3", False),
        ("fire", "tick", 0),  # -> idle through the unless branch
        by_name(g, "f1", True),
        ("fire", "start", 0),  # -> armed
        by_name(g, "f3", True),
        by_name(g, "count", 0),
        ("fire", "tick", 0),  # -> running
        by_name(g, "f2", False),
        by_name(g, "f3", False),
        ("fire", "finish", 0),  # guards
    ]
    seen = run_both(GadgetWorkflow.machine, Gadget, g, steps, ("count",))
    assert seen == {
        "unknown",
        "not allowed",
        "payload",
        "accepted",
        "post-condition",
        "pre-condition",
        "guards",
    }


ORDER = Walk(
    {
        "card_authorized": FLAGS,
        "credit_approved": FLAGS,
        "in_stock": [0, 10],
        "paid_amount": [Decimal(0), Decimal(1)],
    },
    {
        "pay": [
            {"amount": "10", "reference": "r1"},
            {"amount": "10", "reference": "r1", "method": "invoice"},
            {"amount": "9", "reference": "r1"},
            {"amount": "-1", "reference": "r1"},
            {},
        ],
        "ship": [{"carrier": "ups", "tracking_number": "1Z"}, {"carrier": ""}],
    },
)


@FAST
@given(steps=ORDER.steps([*OrderWorkflow.machine.events, "teleport"]))
def test_differential_order(steps: list[Step]) -> None:
    run_both(
        OrderWorkflow.machine,
        lambda: Order(id="o1", total=Decimal(10)),
        ORDER,
        steps,
        ("in_stock", "paid_amount"),
    )


TICKET = Walk({"agent": [None, "bob"]}, {"assign": [{"agent": "ann"}, {"agent": ""}, {}]})


@FAST
@given(steps=TICKET.steps([*TicketWorkflow.machine.events, "teleport"]))
def test_differential_ticket(steps: list[Step]) -> None:
    run_both(
        TicketWorkflow.machine,
        lambda: Ticket(id="t1", subject="help"),
        TICKET,
        steps,
        ("agent",),
    )


TRIP = Walk({"traveller": ["ada", "bo"]})


@FAST
@given(steps=TRIP.steps([*TripWorkflow.machine.events, "teleport"]))
def test_differential_trip(steps: list[Step]) -> None:
    run_both(
        TripWorkflow.machine, lambda: Trip(id="x1", traveller="ada"), TRIP, steps, ("bookings",)
    )


# -- export details -------------------------------------------------------------------


def test_export_structure_of_the_order_machine() -> None:
    tm = to_transitions(OrderWorkflow.machine)
    assert list(tm.states) == [s.name for s in OrderWorkflow.spec.states]
    assert tm.initial == "pending"
    assert {n for n, s in tm.states.items() if s.final} == {"delivered", "cancelled", "refunded"}
    assert tm.send_event is True
    assert list(tm.events) == list(OrderWorkflow.machine.events)
    cancel = tm.events["cancel"].transitions
    assert [(t.source, t.dest) for ts in cancel.values() for t in ts] == [
        ("pending", "cancelled"),
        ("stock_reserved", "cancelled"),
    ]
    (pay,) = tm.events["pay"].transitions["stock_reserved"]
    assert [(repr(c.func), c.target) for c in pay.conditions] == [
        ("<statekit guard 'payment_authorized'>", True)
    ]
    assert [repr(c) for c in pay.before] == [
        "<statekit precondition 'amount_matches_total'>",
        "<statekit stage ''>",
        "<statekit action 'record_payment'>",
    ]
    assert [repr(c) for c in pay.after] == ["<statekit postcondition 'fully_paid'>"]
    assert tm.state == "pending"  # the machine is its own model by default


def test_export_keeps_the_model_state_and_rejects_an_unknown_one() -> None:
    order = Order(id="o1", total=Decimal(10))
    OrderWorkflow.machine.start(order)
    OrderWorkflow.machine.fire(order, "reserve")
    to_transitions(OrderWorkflow.machine, order)
    assert order.state == "stock_reserved"
    assert order.may_cancel() is True
    assert order.may_deliver() is False

    stray = Order(id="o2", total=Decimal(10))
    stray.state = "lost"
    with pytest.raises(DefinitionMismatchError, match="'lost'"):
        to_transitions(OrderWorkflow.machine, stray)


def test_export_raises_statekit_errors_with_their_facts() -> None:
    order = Order(id="o1", total=Decimal(10))
    to_transitions(OrderWorkflow.machine, order)
    order.reserve()
    with pytest.raises(PreconditionFailedError) as caught:
        order.pay(amount="12", reference="r")
    assert caught.value.condition == "amount_matches_total"
    assert caught.value.state == "stock_reserved"
    assert caught.value.allowed_events == ("pay", "cancel")
    with pytest.raises(InvalidPayloadError, match="reference"):
        order.pay(amount="10")
    with pytest.raises(TypeError, match="keyword arguments"):
        order.pay("10", "r")
    assert order.pay(OrderWorkflow.machine.payload_models["pay"](amount="10", reference="r"))
    assert (order.state, order.paid_amount) == ("paid", Decimal(10))


def test_export_restores_the_entity_when_an_action_raises() -> None:
    def explode(g: Gadget, ctx: Context) -> None:
        g.count = 99
        raise RuntimeError("boom")

    class Fragile(Workflow, name="fragile"):
        idle = State(initial=True)
        done = State(final=True)
        go = idle.to(done, action=[bump, explode])

    gadget = Gadget()
    to_transitions(Fragile.machine, gadget)
    with pytest.raises(RuntimeError, match="boom"):
        gadget.trigger("go")
    assert (gadget.state, gadget.count) == ("idle", 0)


def test_export_logs_a_failing_effect(caplog: pytest.LogCaptureFixture) -> None:
    gadget = Gadget(f1=True, f3=True)
    to_transitions(GadgetWorkflow.machine, gadget)
    assert gadget.trigger("start")
    with caplog.at_level(logging.ERROR, logger="statekit"):
        assert gadget.trigger("reset") is True
    assert (gadget.state, gadget.effects) == ("idle", 1)
    assert "effect 'flaky' of gadget g1 (reset) failed" in caplog.text


class Lamp(StatefulObject):
    """An entity whose methods are the guards a bare spec names."""

    def __init__(self) -> None:
        self.id = "lamp"
        self.bulb = True
        self.switched = 0

    def has_bulb(self, ctx: Context) -> bool:
        return self.bulb

    def count(self, ctx: Context) -> None:
        self.switched += 1


LAMP = MachineSpec(
    name="lamp",
    states=(StateSpec(name="off", initial=True), StateSpec(name="on")),
    transitions=(
        TransitionSpec(event="switch", sources=("off",), target="on", guards=("has_bulb",)),
        TransitionSpec(event="switch", sources=("on",), target="off", actions=("count",)),
    ),
)


def test_export_of_a_bare_spec_calls_entity_methods_and_round_trips() -> None:
    lamp = Lamp()
    tm = to_transitions(LAMP, lamp)
    lamp.bulb = False
    assert lamp.switch() is False
    lamp.bulb = True
    assert lamp.switch() is True
    assert lamp.switch() is True
    assert (lamp.state, lamp.switched) == ("off", 1)

    imported = from_transitions(tm, "lamp")
    assert imported.spec == LAMP
    machine = imported.compile()
    other = Lamp()
    machine.start(other)
    machine.fire(other, "switch")
    machine.fire(other, "switch")
    assert (other.state, other.switched) == ("off", 1)


# -- round trips ----------------------------------------------------------------------


def without_lost_fields(spec: MachineSpec) -> MachineSpec:
    """The spec as transitions can carry it: no timeouts, compensations or descriptions."""
    return spec.model_copy(
        update={
            "description": "",
            "compensated_state": None,
            "states": tuple(
                s.model_copy(update={"timeout": None, "description": ""}) for s in spec.states
            ),
            "transitions": tuple(
                t.model_copy(
                    update={"compensation": None, "compensation_attempts": 5, "description": ""}
                )
                for t in spec.transitions
            ),
        }
    )


WORKFLOWS = [OrderWorkflow, TicketWorkflow, TripWorkflow, GadgetWorkflow]


@pytest.mark.parametrize("workflow", WORKFLOWS)
def test_round_trip_of_a_compiled_machine(workflow: type[Workflow]) -> None:
    original = workflow.machine
    imported = from_transitions(to_transitions(original), original.name)
    assert imported.spec == without_lost_fields(original.spec)
    for name, handler in imported.handlers.items():
        assert handler is original.resolver.resolve_object(name)  # the original callables
    assert imported.compile().events == original.events


@pytest.mark.parametrize("workflow", WORKFLOWS)
def test_round_trip_of_a_bare_spec(workflow: type[Workflow]) -> None:
    spec = workflow.spec
    imported = from_transitions(to_transitions(spec), spec.name)
    assert imported.spec == without_lost_fields(spec)
    payloads = {t.payload for t in spec.transitions} - {None}
    named = {
        n
        for t in spec.transitions
        for n in (*t.guards, *t.unless, *t.preconditions, *t.postconditions, *t.actions, *t.effects)
    }
    assert set(imported.handlers) == named  # late-bound to entity methods of those names
    with pytest.raises(DefinitionError) if payloads else nullcontext():
        imported.compile()  # payload models cannot travel without a compiled machine


def test_round_trip_keeps_the_branch_order_of_each_source() -> None:
    spec = MachineSpec(
        name="mix",
        states=(
            StateSpec(name="a", initial=True),
            StateSpec(name="b"),
            StateSpec(name="x", final=True),
            StateSpec(name="y", final=True),
        ),
        transitions=(
            TransitionSpec(event="go", sources=("a",), target="x", guards=("g",)),
            TransitionSpec(event="go", sources=("a", "b"), target="y", unless=("g",)),
            TransitionSpec(event="go", sources=("b",), target="x"),
            TransitionSpec(event="hop", sources=("a",), target="b"),
        ),
    )
    imported = from_transitions(to_transitions(spec), "mix")
    assert imported.spec == spec
    assert sorted(imported.handlers) == ["g"]


# -- importing a hand-built transitions machine ---------------------------------------


class Post:
    """A transitions model: string conditions name its methods and attributes."""

    def __init__(self) -> None:
        self.title: str | None = None
        self.locked = False
        self.spam = False
        self.approved = False
        self.log: list[str] = []

    def has_title(self, event_data: EventData) -> bool:
        return self.title is not None


def is_spam(event_data: EventData) -> bool:
    return bool(getattr(event_data.model, "spam", False))


def write_log(event_data: EventData) -> None:
    log: list[str] = getattr(event_data.model, "log", [])
    log.append(f"{event_data.event.name}:{event_data.state.name}")


def build_posts(model: object = None) -> TransitionsMachine:
    return TransitionsMachine(
        model=model,
        states=[
            "draft",
            "review",
            "published",
            {"name": "archived", "final": True},
            {"name": "rejected", "final": True},
        ],
        initial="draft",
        send_event=True,
        transitions=[
            {
                "trigger": "submit",
                "source": "draft",
                "dest": "review",
                "conditions": "has_title",
                "unless": [lambda ed: ed.model.locked],
            },
            {"trigger": "submit", "source": "draft", "dest": "rejected", "conditions": is_spam},
            {
                "trigger": "approve",
                "source": "review",
                "dest": "published",
                "conditions": "approved",
            },
            {"trigger": "approve", "source": "review", "dest": "draft", "unless": "approved"},
            {
                "trigger": "archive",
                "source": ["published", "review"],
                "dest": "archived",
                "before": write_log,
            },
            {"trigger": "reopen", "source": "published", "dest": "review", "after": [write_log]},
            {"trigger": "touch", "source": "published", "dest": None},
        ],
    )


def test_import_of_a_hand_built_machine() -> None:
    spec, handlers = from_transitions(build_posts(), "post", version=3)
    lam = "submit_draft_unless"
    assert spec == MachineSpec(
        name="post",
        version=3,
        states=(
            StateSpec(name="draft", initial=True),
            StateSpec(name="review"),
            StateSpec(name="published"),
            StateSpec(name="archived", final=True),
            StateSpec(name="rejected", final=True),
        ),
        transitions=(
            TransitionSpec(
                event="submit",
                sources=("draft",),
                target="review",
                guards=("has_title",),
                unless=(lam,),
            ),
            TransitionSpec(
                event="submit", sources=("draft",), target="rejected", guards=("is_spam",)
            ),
            TransitionSpec(
                event="approve", sources=("review",), target="published", guards=("approved",)
            ),
            TransitionSpec(
                event="approve", sources=("review",), target="draft", unless=("approved_2",)
            ),
            TransitionSpec(
                event="archive",
                sources=("published", "review"),
                target="archived",
                actions=("write_log",),
            ),
            TransitionSpec(
                event="reopen", sources=("published",), target="review", effects=("write_log_2",)
            ),
            TransitionSpec(event="touch", sources=("published",), target="published"),
        ),
    )
    assert sorted(handlers) == sorted(
        ["has_title", lam, "is_spam", "approved", "approved_2", "write_log", "write_log_2"]
    )
    post = Post()
    post.approved = True
    ctx = Context("approve", "review", "published", None, datetime.now(UTC), entity_type="post")
    assert handlers["approved"](post, ctx) is True  # a plain attribute, read as transitions does
    assert handlers["approved_2"](post, ctx) is True  # held: the unless branch is blocked


POSTS = Walk({"title": [None, "hello"], "locked": FLAGS, "spam": FLAGS, "approved": FLAGS}, {})


@FAST
@given(steps=POSTS.steps(["submit", "approve", "archive", "reopen", "touch", "publish"]))
def test_differential_imported_machine(steps: list[Step]) -> None:
    """The import direction: transitions' own machine against the compiled import."""
    machine = from_transitions(build_posts(), "post").compile()
    ours, theirs = Post(), Post()
    machine.start(ours)
    build_posts(theirs)
    quiet = Walk(POSTS.settable, {e: [{}] for e in ["publish", *machine.events]})
    run_pair(machine, ours, theirs, quiet, steps, ("log",))


class Loose(BaseModel):
    """A payload model that takes any trigger arguments."""

    model_config = ConfigDict(extra="allow")


def test_import_passes_trigger_arguments_through_a_payload_model() -> None:
    def big(amount: int = 0) -> bool:
        return amount > 10

    tm = TransitionsMachine(
        states=["a", {"name": "b", "final": True}],
        initial="a",
        transitions=[{"trigger": "go", "source": "a", "dest": "b", "conditions": big}],
    )
    imported = from_transitions(tm, "loose", payload=Loose)
    assert imported.spec.transitions[0].payload == "Loose"
    machine = imported.compile()
    entity = StatefulObject()
    machine.start(entity)
    assert machine.can_fire(entity, "go", amount=5) is False
    machine.fire(entity, "go", amount=11)
    assert entity.state == "b"


def test_import_refuses_callbacks_statekit_cannot_express() -> None:
    tm = TransitionsMachine(
        states=[{"name": "a", "on_exit": "leave"}, {"name": "b", "final": True}],
        initial="a",
        after_state_change="audit",
        transitions=[{"trigger": "go", "source": "a", "dest": "b", "prepare": "warm_up"}],
    )
    with pytest.raises(DefinitionError) as caught:
        from_transitions(tm, "hooks")
    assert caught.value.problems == (
        "machine-wide 'after_state_change' callback(s) has no statekit equivalent",
        "'on_exit' callback(s) of state 'a' has no statekit equivalent",
        "'prepare' callback 'warm_up' of 'go' from 'a' has no statekit equivalent",
    )
    spec, _ = from_transitions(tm, "hooks", drop_unsupported=True)
    assert spec.transitions == (TransitionSpec(event="go", sources=("a",), target="b"),)


def test_import_does_not_repair_statekit_rule_violations() -> None:
    tm = TransitionsMachine(
        states=["a", "b", "c", "orphan"],
        initial="a",
        transitions=[["go", "a", "b"], ["go", "b", "c"]],
    )
    imported = from_transitions(tm, "broken")
    with pytest.raises(DefinitionError) as caught:
        imported.compile()
    assert caught.value.problems == (
        "non-final state 'c' has no way out (no transition leaves it)",
        "non-final state 'orphan' has no way out (no transition leaves it)",
        "state 'orphan' is unreachable from initial state 'a'",
    )
    assert "to_a" not in imported.spec.event_names  # auto transitions left out
    fixed = from_transitions(tm, "fixed", final=["c", "orphan"])
    with pytest.raises(DefinitionError, match="'orphan' is unreachable") as caught:
        fixed.compile()
    assert len(caught.value.problems) == 1


def test_import_reports_the_implicit_initial_state() -> None:
    tm = TransitionsMachine(
        states=["a", {"name": "b", "final": True}], transitions=[["go", "a", "b"]]
    )
    with pytest.raises(DefinitionError) as caught:
        from_transitions(tm, "implicit").compile()
    assert "non-final state 'initial' has no way out (no transition leaves it)" in (
        caught.value.problems
    )


def test_import_of_auto_transitions_on_request() -> None:
    tm = TransitionsMachine(states=["a", "b"], initial="a", transitions=[["go", "a", "b"]])
    spec, _ = from_transitions(tm, "auto", include_auto_transitions=True)
    assert spec.event_names == ("to_a", "to_b", "go")


def test_import_refuses_names_statekit_cannot_use() -> None:
    long_state, long_trigger = "s" * 65, "t" * 65  # over the name columns
    tm = TransitionsMachine(
        states=["a", "b-c", long_state],
        initial="a",
        auto_transitions=False,
        transitions=[["go-now", "a", "b-c"], [long_trigger, "a", long_state]],
    )
    with pytest.raises(DefinitionError) as caught:
        from_transitions(tm, "names", final=["zzz"])
    assert caught.value.problems == (
        "state 'b-c' is not a valid statekit name",
        f"state {long_state!r} is not a valid statekit name",
        "'final' names unknown state 'zzz'",
        "trigger 'go-now' is not a valid statekit event name",
        f"trigger {long_trigger!r} is not a valid statekit event name",
    )


def test_import_refuses_nested_machines() -> None:
    tm = HierarchicalMachine(states=["a", {"name": "b", "children": ["x"]}], initial="a")
    with pytest.raises(TypeError, match="nested"):
        from_transitions(tm, "nested")


@dataclass
class Counter:
    """A model for a send_event=False machine (callbacks get the trigger arguments)."""

    seen: list[int] = field(default_factory=list)

    def record(self, amount: int = 0) -> None:
        self.seen.append(amount)


class Judge:
    """A callable object with no `__name__` that cannot be hashed."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Judge)

    def __call__(self, event_data: EventData) -> bool:
        return True


def test_import_names_every_kind_of_callable() -> None:
    def within(event_data: EventData, limit: int) -> bool:
        return True

    tm = TransitionsMachine(
        states=["a", {"name": "b", "final": True}],
        initial="a",
        send_event=True,
        transitions=[
            {
                "trigger": "go",
                "source": "a",
                "dest": "b",
                "conditions": [partial(within, limit=3), "os.path.isabs", Judge(), "2fa"],
            }
        ],
    )
    spec, handlers = from_transitions(tm, "names")
    assert spec.transitions[0].guards == ("within", "isabs", "go_a_guard", "handler_2fa")
    assert sorted(handlers) == ["go_a_guard", "handler_2fa", "isabs", "within"]


def test_import_calls_string_callbacks_without_event_data() -> None:
    tm = TransitionsMachine(
        states=["a", {"name": "b", "final": True}],
        initial="a",
        transitions=[{"trigger": "go", "source": "a", "dest": "b", "before": "record"}],
    )
    machine = from_transitions(tm, "counter", payload=Loose).compile()
    counter = Counter()
    machine.start(counter)
    machine.fire(counter, "go", amount=3)
    assert (counter.seen, getattr(counter, "state", None)) == ([3], "b")
