"""The compiled machine: deciding, refusing with reasons, staging and restoring entities."""

from __future__ import annotations

import gc
import logging
import weakref
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

import models.order
from models.order import Order, OrderWorkflow, Payment, Shipment
from models.ticket import Assignment, TicketWorkflow
from statekit import (
    Clock,
    Context,
    DefinitionMismatchError,
    GuardRejectedError,
    InvalidPayloadError,
    Machine,
    ManualClock,
    MemoryStore,
    NotStartedError,
    PostconditionFailedError,
    PreconditionFailedError,
    Runner,
    Snapshot,
    State,
    StateFields,
    SystemClock,
    TransitionError,
    TransitionNotAllowedError,
    UnknownEventError,
    Workflow,
)
from statekit import engine as engine_module
from statekit.branches import validate_payload
from tests.support import Thing, attributes, new_order, one_step, state_attributes

PAYMENT = {"amount": "10", "reference": "r-1"}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def machine(clock: ManualClock) -> Machine:
    """The order machine, compiled with a manual clock."""
    return Machine(OrderWorkflow.spec, models.order, clock=clock)


@pytest.fixture
def reserved(machine: Machine) -> Order:
    """An order whose stock is reserved, ready to pay."""
    order = new_order()
    machine.start(order)
    machine.fire(order, "reserve")
    return order


# -- guards ----------------------------------------------------------------------------

CALLS: list[str] = []


def spy(name: str, verdict: object) -> Any:
    """A check that records its call and returns `verdict`."""

    def check(entity: object, ctx: Context) -> object:
        CALLS.append(name)
        return verdict

    check.__name__ = name
    return check


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    CALLS.clear()


class Choice(Workflow, name="choice"):
    start = State(initial=True)
    left = State(final=True)
    middle = State(final=True)
    right = State(final=True)

    pick = (
        start.to(left, guard=[spy("warm", True), spy("cold", False)])
        | start.to(middle, guard=spy("picky", "not in the mood"), unless=spy("late", False))
        | start.to(right, unless=spy("closed", True))
    )
    leap = start.to(left, guard=spy("first", True)) | start.to(right, guard=spy("second", True))


def test_the_first_branch_whose_guards_pass_wins() -> None:
    thing = Thing()
    Choice.machine.start(thing)
    assert Choice.machine.fire(thing, "leap").target == "left"
    assert CALLS == ["first"]


def test_guard_rejection_names_every_guard_tried_and_its_reason() -> None:
    thing = Thing(key="42")
    Choice.machine.start(thing)
    before = attributes(thing)
    with pytest.raises(GuardRejectedError) as caught:
        Choice.machine.fire(thing, "pick")
    err = caught.value
    assert err.rejections == (
        ("left", "cold", "returned False"),
        ("middle", "picky", "not in the mood"),
        ("right", "closed", "held, and it is an 'unless' guard"),
    )
    assert str(err) == (
        "cannot fire 'pick' on choice 42 in state 'start': "
        "guard 'cold' (to 'left') said: returned False; "
        "guard 'picky' (to 'middle') said: not in the mood; "
        "guard 'closed' (to 'right') said: held, and it is an 'unless' guard"
    )
    assert (err.entity_type, err.key, err.state, err.event) == ("choice", "42", "start", "pick")
    assert err.allowed_events == ("pick", "leap")
    assert CALLS == ["warm", "cold", "picky", "closed"]
    assert attributes(thing) == before


SEEN: list[tuple[Context, str]] = []


def looks_right(entity: object, ctx: Context) -> bool:
    SEEN.append((ctx, ctx.target))
    return ctx.target == "right"


def looks_anywhere(entity: object, ctx: Context) -> bool:
    SEEN.append((ctx, ctx.target))
    return True


class Handed(Workflow, name="handed"):
    start = State(initial=True)
    left = State(final=True)
    right = State(final=True)

    pick = start.to(left, guard=looks_right) | start.to(right, guard=looks_anywhere)


def test_guards_are_handed_the_plan_being_decided() -> None:
    SEEN.clear()
    thing = Thing()
    Handed.machine.start(thing)
    plan = Handed.machine.fire(thing, "pick", actor="ann")
    # Each guard saw the branch it was asked about; both saw the plan that resulted.
    assert [target for _, target in SEEN] == ["left", "right"]
    assert all(ctx is plan for ctx, _ in SEEN)
    assert plan.context is plan
    assert (plan.target, plan.actor, plan.at, plan.version) == ("right", "ann", plan.now, 1)
    assert thing.state == "right"


def test_an_unless_guard_that_fails_lets_the_branch_through() -> None:
    machine, thing = one_step(unless=spy("blocked", False))
    assert machine.fire(thing, "go").target == "b"


@pytest.mark.parametrize(
    ("kind", "verdict", "message"),
    [
        ("guard", None, "guard 'check' returned None"),
        ("guard", 1, "guard 'check' returned 1"),
        ("unless", [], "guard 'check' returned []"),
        ("pre", 0, "pre-condition 'check' returned 0"),
        ("post", None, "post-condition 'check' returned None"),
    ],
)
def test_a_check_returning_neither_bool_nor_str_is_a_type_error(
    kind: str, verdict: object, message: str
) -> None:
    machine, thing = one_step(**{kind: spy("check", verdict)})
    before = attributes(thing)
    with pytest.raises(TypeError) as caught:
        machine.fire(thing, "go")
    assert str(caught.value) == f"{message}; it must return True, False or a reason string"
    assert attributes(thing) == before


def test_an_empty_reason_string_still_rejects() -> None:
    machine, thing = one_step(guard=spy("terse", ""))
    with pytest.raises(GuardRejectedError, match="said: returned an empty reason"):
        machine.fire(thing, "go")


# -- pre- and post-conditions ----------------------------------------------------------


def test_precondition_failure_names_the_condition_and_nothing_runs(
    machine: Machine, reserved: Order
) -> None:
    before = attributes(reserved)
    with pytest.raises(PreconditionFailedError) as caught:
        machine.fire(reserved, "pay", amount="9.50", reference="r-1")
    err = caught.value
    assert err.condition == "amount_matches_total"
    assert err.reason == "payment of 9.50 does not match the order total 10"
    assert str(err) == (
        "cannot fire 'pay' on order o1 in state 'stock_reserved': pre-condition "
        "'amount_matches_total' failed: payment of 9.50 does not match the order total 10"
    )
    assert err.allowed_events == ("pay", "cancel")
    assert attributes(reserved) == before


def test_preconditions_run_after_guards_and_before_actions() -> None:
    machine, thing = one_step(
        guard=spy("guard", True),
        pre=[spy("pre_ok", True), spy("pre_no", "no way"), spy("pre_never", True)],
        action=spy("action", None),
    )
    with pytest.raises(PreconditionFailedError, match="pre-condition 'pre_no' failed: no way"):
        machine.fire(thing, "go")
    assert CALLS == ["guard", "pre_ok", "pre_no"]


def test_postcondition_failure_restores_the_entity_exactly() -> None:
    def rewrite(entity: Thing, ctx: Context) -> None:
        entity.label = "changed"
        entity.items = [*entity.items, "more"]
        entity.extra = {"added": True}
        del entity.temporary

    class Careful(Workflow):
        a = State(initial=True, timeout=timedelta(hours=1))
        b = State(final=True)
        go = a.to(b, action=rewrite, post=spy("balanced", "books do not balance"))

    thing = Thing(label="original", items=["one"], temporary=1)
    Careful.machine.start(thing)
    items = thing.items
    before = attributes(thing)
    with pytest.raises(PostconditionFailedError) as caught:
        Careful.machine.fire(thing, "go")
    assert caught.value.condition == "balanced"
    assert caught.value.reason == "books do not balance"
    assert caught.value.state == "a"
    assert attributes(thing) == before
    assert thing.items is items
    assert not hasattr(thing, "extra")
    assert thing.state == "a"


def test_postcondition_failure_on_the_order_model(machine: Machine, reserved: Order) -> None:
    reserved.paid_amount = Decimal(3)
    before = attributes(reserved)
    with pytest.raises(PostconditionFailedError, match="paid amount 13 differs from total 10"):
        machine.fire(reserved, "pay", **PAYMENT)
    assert attributes(reserved) == before


def test_an_action_that_raises_leaves_the_entity_unchanged() -> None:
    def explode(entity: Thing, ctx: Context) -> None:
        entity.count = 99
        raise RuntimeError("boom")

    machine, thing = one_step(action=explode)
    thing.count = 1
    before = attributes(thing)
    with pytest.raises(RuntimeError, match="boom"):
        machine.fire(thing, "go")
    assert attributes(thing) == before


# -- payloads --------------------------------------------------------------------------


def test_a_bad_payload_names_the_event_and_each_field_and_nothing_runs(
    machine: Machine, reserved: Order
) -> None:
    before = attributes(reserved)
    with pytest.raises(InvalidPayloadError) as caught:
        machine.fire(reserved, "pay", amount="-1", method="cash")
    err = caught.value
    assert err.event == "pay"
    fields = sorted(e.split(":")[0] for e in err.errors)
    assert fields == ["amount", "method", "reference"]
    assert str(err).startswith("invalid payload for 'pay' on order o1: ")
    assert "reference: Field required" in str(err)
    assert attributes(reserved) == before


def test_payload_is_validated_before_guards_run() -> None:
    machine, thing = one_step(guard=spy("guard", True), payload=Payment)
    with pytest.raises(InvalidPayloadError):
        machine.fire(thing, "go", amount="abc")
    assert CALLS == []


def test_a_payload_for_an_event_without_a_model_is_refused(
    machine: Machine, reserved: Order
) -> None:
    with pytest.raises(InvalidPayloadError) as caught:
        machine.fire(reserved, "cancel", reason="changed my mind")
    assert caught.value.errors == ("reason: unexpected (event 'cancel' declares no payload)",)
    with pytest.raises(InvalidPayloadError, match="carrier: unexpected"):
        machine.decide(
            reserved, "cancel", Shipment(carrier="x", tracking_number="1"), now=machine.clock.now()
        )
    assert reserved.state == "stock_reserved"


def test_a_payload_may_be_a_model_instance(machine: Machine, reserved: Order) -> None:
    payment = Payment(amount=Decimal(10), reference="r-1")
    plan = machine.decide(reserved, "pay", payment, now=machine.clock.now())
    assert plan.payload is payment
    assert plan.context.payload is payment

    class LooksAlike(BaseModel):
        amount: str
        reference: str

    converted = machine.decide(
        reserved, "pay", LooksAlike(amount="10", reference="r-2"), now=machine.clock.now()
    )
    assert converted.payload == Payment(amount=Decimal(10), reference="r-2")
    assert converted.payload_data() == {"amount": "10", "method": "card", "reference": "r-2"}


def test_payload_as_checks_the_model(machine: Machine, reserved: Order) -> None:
    plan = machine.decide(reserved, "pay", PAYMENT, now=machine.clock.now())
    assert plan.context.payload_as(Payment).reference == "r-1"
    with pytest.raises(TypeError, match="event 'pay' carries Payment, not Assignment"):
        plan.context.payload_as(Assignment)
    cancel = machine.decide(reserved, "cancel", now=machine.clock.now())
    assert cancel.payload_data() is None
    with pytest.raises(TypeError, match="carries NoneType, not Payment"):
        cancel.context.payload_as(Payment)


# -- refusals --------------------------------------------------------------------------


@pytest.mark.parametrize("event", [["reserve"], {"reserve": 1}, None, 3, b"reserve"])
def test_an_event_that_is_not_a_name_is_an_unknown_event(machine: Machine, event: Any) -> None:
    """Not a raw TypeError from the dispatch table (a list is unhashable), and
    `can_fire` answers False, as for any other refusal."""
    order = new_order()
    machine.start(order)
    with pytest.raises(UnknownEventError) as unknown:
        machine.fire(order, event)
    assert unknown.value.event == event
    assert unknown.value.allowed_events == ("reserve", "abandon", "cancel")
    assert machine.can_fire(order, event) is False
    runner = Runner(machine, MemoryStore())
    runner.start(started := new_order("o2"))
    with pytest.raises(UnknownEventError):
        runner.fire(started, event)
    with pytest.raises(UnknownEventError):
        runner.fire_by_key("o2", event)
    assert (started.state, started.state_version) == ("pending", 0)


def test_unknown_event_and_not_allowed_event_are_different_errors(machine: Machine) -> None:
    order = new_order()
    machine.start(order)
    with pytest.raises(TransitionNotAllowedError) as not_allowed:
        machine.fire(order, "ship", carrier="x", tracking_number="1")
    with pytest.raises(UnknownEventError) as unknown:
        machine.fire(order, "teleport")
    assert not isinstance(not_allowed.value, UnknownEventError)
    assert not isinstance(unknown.value, TransitionNotAllowedError)
    assert isinstance(unknown.value, TransitionError)
    assert not_allowed.value.allowed_events == ("reserve", "abandon", "cancel")
    assert unknown.value.allowed_events == ("reserve", "abandon", "cancel")
    assert unknown.value.known_events == OrderWorkflow.machine.events
    assert str(not_allowed.value) == (
        "cannot fire 'ship' on order o1 in state 'pending'; allowed: reserve, abandon, cancel"
    )
    assert str(unknown.value) == (
        "order o1 has no event 'teleport' (machine 'order' declares: reserve, pay, ship, "
        "deliver, abandon, cancel, refund); allowed in state 'pending': reserve, abandon, cancel"
    )


def test_a_final_state_allows_nothing(machine: Machine) -> None:
    order = new_order()
    machine.start(order)
    machine.fire(order, "cancel")
    assert machine.allowed_events(order) == ()
    with pytest.raises(TransitionNotAllowedError, match="allowed: none"):
        machine.fire(order, "reserve")


def test_not_started(machine: Machine) -> None:
    order = new_order(key="7")
    with pytest.raises(NotStartedError) as caught:
        machine.fire(order, "reserve")
    assert str(caught.value) == "order 7 has no state; start it before firing 'reserve'"
    assert caught.value.state is None
    with pytest.raises(NotStartedError, match=r"before firing '\(snapshot\)'"):
        machine.snapshot(order)


def test_an_unknown_state_is_a_definition_mismatch(machine: Machine) -> None:
    order = new_order()
    machine.start(order)
    order.state = "limbo"
    for call in (
        lambda: machine.fire(order, "reserve"),
        lambda: machine.snapshot(order),
    ):
        with pytest.raises(DefinitionMismatchError) as caught:
            call()
        err = caught.value
        assert (err.field, err.value, err.key) == ("state", "limbo", "o1")
        assert err.known == machine.states
        assert str(err).startswith("order o1 has state 'limbo', which machine 'order' does not")


def test_an_unknown_definition_version_is_a_definition_mismatch(machine: Machine) -> None:
    order = new_order()
    machine.start(order)
    order.state_definition_version = 7
    with pytest.raises(DefinitionMismatchError) as caught:
        machine.fire(order, "reserve")
    assert (caught.value.field, caught.value.value, caught.value.known) == (
        "definition version",
        7,
        (1,),
    )
    with pytest.raises(DefinitionMismatchError, match="definition version 7"):
        machine.snapshot(order)
    assert order.state == "pending"


def test_compatible_versions_are_accepted_and_upgraded() -> None:
    upgraded = OrderWorkflow.spec.model_copy(update={"version": 3, "compatible_versions": (1, 2)})
    machine = Machine(upgraded, models.order)
    order = new_order()
    OrderWorkflow.machine.start(order)
    assert order.state_definition_version == 1
    assert machine.snapshot(order).definition_version == 1
    plan = machine.fire(order, "reserve")
    assert plan.definition_version == 3
    assert order.state_definition_version == 3
    order.state_definition_version = 4
    with pytest.raises(DefinitionMismatchError, match=r"known: 1, 2, 3\)"):
        machine.fire(order, "cancel")


# -- the non-raising pair --------------------------------------------------------------


def test_can_fire_refuses_quietly_but_lets_a_bug_out(machine: Machine, reserved: Order) -> None:
    def explode(entity: object, ctx: Context) -> bool:
        raise RuntimeError("guard crashed")

    crashy, thing = one_step(guard=explode)
    with pytest.raises(RuntimeError, match="guard crashed"):  # a bug is not a refusal
        crashy.can_fire(thing, "go")
    assert crashy.allowed_events(thing) == ("go",)
    assert crashy.can_fire(Thing(), "go") is False
    assert crashy.allowed_events(Thing()) == ()

    assert machine.can_fire(reserved, "pay", **PAYMENT) is True
    assert machine.can_fire(reserved, "pay", amount="1", reference="r") is False
    assert machine.can_fire(reserved, "pay") is False
    assert machine.can_fire(reserved, "teleport") is False
    assert machine.can_fire(reserved, "ship") is False
    reserved.card_authorized = False
    assert machine.can_fire(reserved, "pay", **PAYMENT) is False
    reserved.state = "limbo"
    assert machine.can_fire(reserved, "cancel") is False
    assert machine.allowed_events(reserved) == ()
    reserved.state = "stock_reserved"
    reserved.state_definition_version = 99
    assert machine.can_fire(reserved, "cancel") is False
    assert machine.allowed_events(object()) == ()
    assert machine.can_fire(object(), "pay") is False


class Haunted:
    """An entity whose state attribute cannot be read (like a detached ORM row)."""

    id = "h1"

    @property
    def state(self) -> str:
        raise RuntimeError("instance is detached")


@pytest.mark.parametrize("entity", [Haunted(), Thing(state=["not", "hashable"])])
def test_unreadable_states_allow_nothing_and_can_fire_says_why(
    machine: Machine, entity: object
) -> None:
    assert machine.allowed_events(entity) == ()  # never raises
    with pytest.raises((RuntimeError, TypeError)):  # not a refusal: the entity is broken
        machine.can_fire(entity, "reserve")


def test_can_fire_does_not_change_the_entity(machine: Machine, reserved: Order) -> None:
    before = attributes(reserved)
    assert machine.can_fire(reserved, "pay", **PAYMENT) is True
    assert attributes(reserved) == before


# -- time ------------------------------------------------------------------------------


def test_deadlines_follow_the_injected_clock(machine: Machine, clock: ManualClock) -> None:
    t0 = clock.now()
    order = new_order()
    snapshot = machine.start(order)
    assert snapshot == Snapshot(
        entity_type="order",
        key="o1",
        state="pending",
        version=0,
        entered_at=t0,
        deadline_at=t0 + timedelta(days=1),
        definition_version=1,
    )
    t1 = clock.advance(hours=1)
    machine.fire(order, "reserve")
    assert (order.state_entered_at, order.state_deadline_at) == (t1, t1 + timedelta(minutes=30))
    t2 = clock.advance(minutes=10)
    machine.fire(order, "pay", **PAYMENT)
    assert (order.state_entered_at, order.state_deadline_at) == (t2, t2 + timedelta(days=2))
    t3 = clock.advance(days=1)
    machine.fire(order, "ship", carrier="DHL", tracking_number="1Z")
    assert (order.state_entered_at, order.state_deadline_at) == (t3, None)
    assert order.state_version == 3


def test_start_without_a_timeout_has_no_deadline() -> None:
    now = datetime(2030, 5, 1, tzinfo=UTC)
    thing = Thing()
    snapshot = Choice.machine.start(thing, now=now)
    assert (snapshot.entered_at, snapshot.deadline_at) == (now, None)
    assert Choice.machine.snapshot(thing) == snapshot


def test_manual_clock_rules() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ManualClock(datetime(2026, 1, 1))
    eastern = timezone(timedelta(hours=5))
    clock = ManualClock(datetime(2026, 1, 1, 12, tzinfo=eastern))
    assert clock.now() == datetime(2026, 1, 1, 7, tzinfo=UTC)
    assert clock.now().tzinfo == UTC
    assert clock.advance(timedelta(seconds=30)) == datetime(2026, 1, 1, 7, 0, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(seconds=-1)
    with pytest.raises(ValueError, match="timezone-aware"):
        clock.set(datetime(2027, 1, 1))
    with pytest.raises(ValueError, match="backwards"):
        clock.set(datetime(2025, 1, 1, tzinfo=UTC))
    clock.set(datetime(2027, 1, 1, 3, tzinfo=eastern))
    assert clock.now() == datetime(2026, 12, 31, 22, tzinfo=UTC)
    assert ManualClock().now() == datetime(2026, 1, 1, 9, tzinfo=UTC)


def test_system_clock_is_aware_utc() -> None:
    clock = SystemClock()
    assert isinstance(clock, Clock)
    assert isinstance(ManualClock(), Clock)
    before = datetime.now(UTC)
    now = clock.now()
    assert now.tzinfo is UTC
    assert before <= now <= datetime.now(UTC)


# -- one machine, no per-entity cost ---------------------------------------------------


def _shape(machine: Machine) -> dict[str, object]:
    """Identity and size of every attribute the machine holds."""
    return {
        name: (id(value), len(value) if hasattr(value, "__len__") else None)
        for name, value in vars(machine).items()
    }


def test_one_machine_per_workflow_and_nothing_per_entity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    machine = TicketWorkflow.machine
    assert TicketWorkflow.machine is machine
    assert TicketWorkflow.spec is machine.spec
    built: list[Machine] = []
    original = engine_module.Machine.__init__

    def counting(self: Machine, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(engine_module.Machine, "__init__", counting)
    shape = _shape(machine)
    tables = {k: dict(v) for k, v in machine._table.items()}
    tickets = [models.ticket.Ticket(id=str(n), subject="help") for n in range(1000)]
    for ticket in tickets:
        machine.start(ticket)
        machine.fire(ticket, "assign", agent="ann")
        machine.fire(ticket, "start")
    assert built == []
    assert _shape(machine) == shape
    assert {k: dict(v) for k, v in machine._table.items()} == tables
    assert all(not isinstance(v, Machine) for t in tickets for v in vars(t).values())
    refs = [weakref.ref(t) for t in tickets]
    del tickets, ticket
    gc.collect()
    assert all(ref() is None for ref in refs)


# -- slotted entities ------------------------------------------------------------------


class Slotted:
    """An entity without a __dict__."""

    __slots__ = (
        "__weakref__",
        "id",
        "note",
        "state",
        "state_deadline_at",
        "state_definition_version",
        "state_entered_at",
        "state_version",
        "stuck_at",
        "stuck_reason",
    )

    def __init__(self, key: str) -> None:
        self.id = key


class SlottedChild(Slotted):
    __slots__ = ("__secret", "count")

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.count = 0
        self.__secret = "kept"

    def secret(self) -> str:
        return self.__secret


def scribble(entity: SlottedChild, ctx: Context) -> None:
    """Action: change a slot, set an unset slot, overwrite a private slot."""
    entity.count += 1
    entity.note = "written"
    entity._SlottedChild__secret = "lost"  # type: ignore[attr-defined]


class SlotFlow(Workflow):
    a = State(initial=True)
    b = State()
    c = State(final=True)
    go = a.to(b, action=scribble)
    finish = b.to(c, action=scribble, post=spy("never_ok", False))


def test_slotted_entities_fire_and_restore() -> None:
    assert not hasattr(SlottedChild("x"), "__dict__")
    entity = SlottedChild("s1")
    SlotFlow.machine.start(entity)
    SlotFlow.machine.fire(entity, "go")
    assert (entity.state, entity.state_version, entity.count, entity.note) == ("b", 1, 1, "written")

    fresh = SlottedChild("s2")
    SlotFlow.machine.start(fresh)
    fresh.state = "b"
    before = state_attributes(fresh)
    with pytest.raises(PostconditionFailedError):
        SlotFlow.machine.fire(fresh, "finish")
    assert state_attributes(fresh) == before
    assert fresh.count == 0
    assert fresh.secret() == "kept"
    assert not hasattr(fresh, "note")


def test_a_plain_slotted_entity_without_optional_slots_starts() -> None:
    class Minimal:
        __slots__ = ("id", "state", "state_version")

    machine, _ = one_step()
    with pytest.raises(AttributeError):
        machine.start(Minimal())


# -- effects ---------------------------------------------------------------------------


def test_effects_run_after_the_state_change_and_failures_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[tuple[str, str]] = []

    def watch(entity: Thing, ctx: Context) -> None:
        seen.append((entity.state, ctx.event))

    def broken(entity: Thing, ctx: Context) -> None:
        raise RuntimeError("mail server down")

    machine, thing = one_step(effect=[broken, watch])
    with caplog.at_level(logging.ERROR, logger="statekit"):
        plan = machine.fire(thing, "go", actor="ann")
    assert thing.state == "b"
    assert seen == [("b", "go")]
    assert plan.actor == "ann"
    assert plan.context.actor == "ann"
    [record] = caplog.records
    assert record.getMessage() == "effect 'broken' of one_step t1 (go) failed after commit"
    assert record.effect == "broken"  # type: ignore[attr-defined]
    assert record.entity_key == "t1"  # type: ignore[attr-defined]
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "mail server down"


# -- plans and snapshots ---------------------------------------------------------------


def test_plan_carries_what_the_store_writes(machine: Machine, reserved: Order) -> None:
    now = machine.clock.now()
    plan = machine.decide(
        reserved,
        "pay",
        PAYMENT,
        now=now,
        actor="ann",
        correlation_id="c-1",
        idempotency_key="k-1",
    )
    assert (plan.source, plan.target, plan.expected_version, plan.version) == (
        "stock_reserved",
        "paid",
        1,
        2,
    )
    assert plan.deadline_at == now + timedelta(days=2)
    snapshot = plan.snapshot()
    assert (snapshot.state, snapshot.version, snapshot.stuck_at) == ("paid", 2, None)
    record = plan.record()
    assert (record.seq, record.event, record.actor, record.correlation_id) == (
        2,
        "pay",
        "ann",
        "c-1",
    )
    assert record.idempotency_key == "k-1"
    assert record.payload == {"amount": "10", "method": "card", "reference": "r-1"}
    plan.stuck_reason = "overdue"
    assert plan.snapshot().stuck_at == now
    assert plan.snapshot().stuck_reason == "overdue"
    assert reserved.state == "stock_reserved"


def test_write_snapshot_marks_stuck(machine: Machine, reserved: Order) -> None:
    plan = machine.decide(reserved, "cancel", now=machine.clock.now())
    plan.stuck_reason = "gave up"
    machine.write_snapshot(reserved, plan)
    assert (reserved.state, reserved.stuck_reason, reserved.stuck_at) == (
        "cancelled",
        "gave up",
        plan.at,
    )


def test_key_and_state_readers(machine: Machine) -> None:
    order = Order(id=None, total=Decimal(1))  # type: ignore[arg-type]
    assert machine.key_of(order) is None
    assert machine.state_of(order) is None
    machine.start(order)
    assert machine.state_of(order) == "pending"
    assert machine.snapshot(order).key == ""
    order.id = 12  # type: ignore[assignment]
    assert machine.key_of(order) == "12"


def test_an_orm_objects_bookkeeping_is_left_alone_on_restore() -> None:
    bookkeeping = object()

    def rewrite(entity: Thing, ctx: Context) -> None:
        entity.label = "changed"
        entity._sa_extra = "kept"

    machine, thing = one_step(action=rewrite, post=spy("never_ok", False))
    thing._sa_instance_state = bookkeeping
    thing.label = "original"
    with pytest.raises(PostconditionFailedError):
        machine.fire(thing, "go")
    assert thing.label == "original"
    assert thing._sa_instance_state is bookkeeping
    assert thing._sa_extra == "kept"
    assert thing.state == "a"


def test_events_from_a_state(machine: Machine) -> None:
    assert machine.events_from("pending") == ("reserve", "abandon", "cancel")
    assert machine.events_from("stock_reserved") == ("pay", "cancel")
    assert machine.events_from("delivered") == ()
    assert machine.events_from("limbo") == ()


def test_payload_validation_without_a_model_or_data(machine: Machine) -> None:
    """The rule the interop bridge reuses: no model and no data is no payload."""
    allowed = machine.events_from("pending")
    for payload in ({}, None):
        found = validate_payload(
            None,
            payload,
            entity_type=machine.name,
            key="o1",
            state="pending",
            event="cancel",
            allowed_events=allowed,
        )
        assert found is None


def test_a_failed_post_condition_restores_dicts_and_sets_in_place() -> None:
    def tag(entity: Any, ctx: Context) -> None:
        entity.labels.add("shipped")
        entity.meta["carrier"] = "DHL"

    def never(entity: Any, ctx: Context) -> bool | str:
        return "refused"

    class Tagged(Workflow, name="tagged"):
        a = State(initial=True)
        b = State(final=True)
        go = a.to(b, action=tag, post=never)

    thing = Thing(id="t-1")
    Tagged.machine.start(thing)
    labels, meta = {"new"}, {"source": "web"}
    thing.labels, thing.meta = labels, meta  # type: ignore[attr-defined]
    with pytest.raises(PostconditionFailedError):
        Tagged.machine.fire(thing, "go")
    assert thing.labels is labels  # type: ignore[attr-defined]
    assert thing.meta is meta  # type: ignore[attr-defined]
    assert (labels, meta) == ({"new"}, {"source": "web"})


@pytest.mark.parametrize("state_name", ["class", "order-state", "\ufb01eld"])  # "ﬁ" folds to "fi"
def test_state_attributes_need_not_be_identifiers(state_name: str) -> None:
    """Names Python cannot assign as `entity.name = ...` are still written and restored."""

    def positive(entity: object, ctx: Context) -> bool | str:
        return getattr(entity, "amount", 0) > 0 or "amount must be positive"

    class Odd(Workflow, name="odd", fields=StateFields(state=state_name)):
        a = State(initial=True)
        b = State(final=True)
        go = a.to(b, action=lambda e, c: setattr(e, "amount", -1), post=positive)
        skip = a.to(b)

    thing = Thing()
    Odd.machine.start(thing)
    assert getattr(thing, state_name) == "a"
    before = attributes(thing)
    with pytest.raises(PostconditionFailedError):
        Odd.machine.fire(thing, "go")
    assert attributes(thing) == before
    Odd.machine.fire(thing, "skip")
    assert (getattr(thing, state_name), thing.state_version) == ("b", 1)
