"""Core benchmark: one guarded trigger and readying a loaded entity, against peers.

The same 5-state order machine is declared in every library:

    pending --reserve--> reserved --pay--> paid --ship--> shipped --deliver--> delivered

`pay` is guarded by a check that reads `card_authorized` on the entity. Each case
fires `pay` once on an entity that sits in `reserved`; every entity is built fresh
for it before the timed loop, so no library pays for a reset (see README.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from bench import Case, Config, Report, Row, Target, environment, measure
from statekit import Context, MemoryStore, Runner, State, StatefulObject, Workflow

DESCRIPTION = "guarded trigger and entity readying: statekit vs transitions, python-statemachine, django-fsm-2, hand-written"  # noqa: E501

TRIGGER = "trigger"
READY = "ready"

GROUPS = {
    TRIGGER: (
        "Guarded trigger: fire `pay` on an entity in `reserved`",
        "median / statekit Machine.fire median; >1 is slower than statekit",
    ),
    READY: (
        "Readying a loaded entity: from a row of plain values to an entity that can fire",
        "median / plain object median; 'beyond baseline' is the readying cost",
    ),
}

PACKAGES = ("statekit", "transitions", "python-statemachine", "django-fsm-2", "Django", "pydantic")

LOADED_AT = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
"""`state_entered_at` of every loaded statekit entity."""

STATES = ("pending", "reserved", "paid", "shipped", "delivered")
STEPS = (
    ("reserve", "pending", "reserved"),
    ("ship", "paid", "shipped"),
    ("deliver", "shipped", "delivered"),
)
"""The unguarded transitions as (event, source, target); `pay` is added per library."""


# -- the plain object every library starts from -----------------------------------------


class PlainOrder:
    """What a row load gives any library: the key, the data the guard reads, the state."""

    def __init__(self, id: int, card_authorized: bool, state: str) -> None:
        self.id = id
        self.card_authorized = card_authorized
        self.state = state


Row3 = tuple[int, bool, str]


def plain_rows(n: int) -> list[Row3]:
    """`n` rows of an order in `reserved` whose card is authorised."""
    return [(i, True, "reserved") for i in range(n)]


def plain_entities(n: int) -> list[PlainOrder]:
    """`n` plain orders in `reserved`."""
    return [PlainOrder(*row) for row in plain_rows(n)]


# -- statekit ---------------------------------------------------------------------------


@dataclass(eq=False)
class StatekitOrder(StatefulObject):
    """A plain dataclass carrying statekit's state columns, as a row load fills them."""

    id: int
    card_authorized: bool
    state: str | None = None
    state_version: int = 0
    state_entered_at: datetime | None = None
    state_deadline_at: datetime | None = None
    stuck_at: datetime | None = None
    stuck_reason: str | None = None
    state_definition_version: int | None = None


def card_authorized(order: StatekitOrder, ctx: Context) -> bool:
    """Guard of `pay`."""
    return order.card_authorized


class BenchOrderWorkflow(Workflow, name="bench_order"):
    """The benchmark's 5-state order machine."""

    pending = State(initial=True)
    reserved = State()
    paid = State()
    shipped = State()
    delivered = State(final=True)

    reserve = pending.to(reserved)
    pay = reserved.to(paid, guard=card_authorized)
    ship = paid.to(shipped)
    deliver = shipped.to(delivered)


StatekitRow = tuple[int, bool, str, int, datetime, None, None, None, int]


def statekit_rows(n: int) -> list[StatekitRow]:
    """Rows with all seven state columns, as the entity table holds them."""
    return [(i, True, "reserved", 1, LOADED_AT, None, None, None, 1) for i in range(n)]


def statekit_entities(n: int) -> list[StatekitOrder]:
    """`n` loaded statekit orders in `reserved` at version 1."""
    return [StatekitOrder(*row) for row in statekit_rows(n)]


def _statekit_cases() -> Iterator[Case]:
    machine = BenchOrderWorkflow.machine

    def fire(items: list[StatekitOrder]) -> None:
        fire = machine.fire
        for order in items:
            fire(order, "pay")

    yield Case(TRIGGER, "statekit", "Machine.fire(order, 'pay'), no store", statekit_entities, fire)

    runner: list[Runner] = []

    def stored(n: int) -> list[StatekitOrder]:
        store = MemoryStore()
        items = statekit_entities(n)
        for order in items:
            store.create(machine.snapshot(order))
        runner[:] = [Runner(machine, store)]
        return items

    def fire_stored(items: list[StatekitOrder]) -> None:
        fire = runner[0].fire
        for order in items:
            fire(order, "pay")

    yield Case(
        TRIGGER,
        "statekit",
        "Runner(MemoryStore).fire: + version CAS, history",
        stored,
        fire_stored,
    )

    def ready(rows: list[StatekitRow]) -> list[StatekitOrder]:
        out = []
        for row in rows:
            out.append(StatekitOrder(*row))  # nothing else: the machine is shared
        return out

    yield Case(READY, "statekit", "StatekitOrder(*row) with 7 state columns", statekit_rows, ready)


# -- hand-written dict dispatch ------------------------------------------------------------


def _hand_card_authorized(order: PlainOrder) -> bool:
    return order.card_authorized


HAND_TABLE: dict[tuple[str, str], tuple[str, Callable[[PlainOrder], bool] | None]] = {
    (source, event): (target, None) for event, source, target in STEPS
}
HAND_TABLE["reserved", "pay"] = ("paid", _hand_card_authorized)


class TransitionRefusedError(Exception):
    """The hand-written machine refused an event."""


def hand_fire(order: PlainOrder, event: str) -> None:
    """Look the (state, event) pair up, check the guard, move."""
    try:
        target, guard = HAND_TABLE[order.state, event]
    except KeyError:
        raise TransitionRefusedError(f"cannot {event} from {order.state}") from None
    if guard is not None and not guard(order):
        raise TransitionRefusedError(f"guard of {event} failed")
    order.state = target


def _hand_cases() -> Iterator[Case]:
    def fire(items: list[PlainOrder]) -> None:
        for order in items:
            hand_fire(order, "pay")

    yield Case(TRIGGER, "hand-written", "dict dispatch + guard", plain_entities, fire)

    def ready(rows: list[Row3]) -> list[PlainOrder]:
        out = []
        for row in rows:
            out.append(PlainOrder(*row))
        return out

    yield Case(READY, "plain object", "PlainOrder(*row) (baseline)", plain_rows, ready)


# -- transitions ----------------------------------------------------------------------------


def _transitions_spec() -> dict[str, Any]:
    steps = [{"trigger": e, "source": s, "dest": t} for e, s, t in STEPS]
    pay = {"trigger": "pay", "source": "reserved", "dest": "paid", "conditions": "card_authorized"}
    return {"states": list(STATES), "transitions": [*steps, pay], "auto_transitions": False}


def _transitions_cases() -> Iterator[Case]:
    from transitions import Machine as TMachine

    spec = _transitions_spec()

    def shared(n: int) -> list[Any]:
        machine = TMachine(model=None, initial="pending", **spec)
        items = plain_entities(n)
        for order in items:
            machine.add_model(order, initial=order.state)
        return items

    def fire(items: list[Any]) -> None:
        for order in items:
            order.pay()

    yield Case(TRIGGER, "transitions (shared)", "order.pay(), one Machine", shared, fire)

    def per_instance(n: int) -> list[Any]:
        items = plain_entities(n)
        for order in items:
            TMachine(model=order, initial=order.state, **spec)
        return items

    yield Case(TRIGGER, "transitions (per-instance)", "order.pay()", per_instance, fire)

    machine = TMachine(model=None, initial="pending", **spec)

    def ready_shared(rows: list[Row3]) -> list[PlainOrder]:
        add, remove = machine.add_model, machine.remove_model
        out = []
        for row in rows:
            order = PlainOrder(*row)
            add(order, initial=order.state)
            remove(order)
            out.append(order)
        return out

    yield Case(
        READY,
        "transitions (shared)",
        "PlainOrder(*row) + add_model + remove_model",
        plain_rows,
        ready_shared,
    )

    def ready_per_instance(rows: list[Row3]) -> list[PlainOrder]:
        out = []
        for row in rows:
            order = PlainOrder(*row)
            TMachine(model=order, initial=order.state, **spec)
            out.append(order)
        return out

    yield Case(
        READY,
        "transitions (per-instance)",
        "PlainOrder(*row) + Machine(model=order)",
        plain_rows,
        ready_per_instance,
    )


# -- python-statemachine ------------------------------------------------------------------


@cache
def _psm_class() -> type[Any]:
    from statemachine import State as PState
    from statemachine import StateMachine

    class OrderMachine(StateMachine):
        pending = PState(initial=True)
        reserved = PState()
        paid = PState()
        shipped = PState()
        delivered = PState(final=True)

        reserve = pending.to(reserved)
        pay = reserved.to(paid, cond="card_authorized")
        ship = paid.to(shipped)
        deliver = shipped.to(delivered)

    return OrderMachine


def _psm_cases() -> Iterator[Case]:
    machine_class = _psm_class()

    def machines(n: int) -> list[Any]:
        return [machine_class(model) for model in plain_entities(n)]

    def fire(items: list[Any]) -> None:
        for sm in items:
            sm.pay()

    yield Case(TRIGGER, "python-statemachine", "sm.pay(), one sm per order", machines, fire)

    def ready(rows: list[Row3]) -> list[Any]:
        out = []
        for row in rows:
            out.append(machine_class(PlainOrder(*row)))
        return out

    yield Case(
        READY,
        "python-statemachine",
        "PlainOrder(*row) + OrderMachine(order)",
        plain_rows,
        ready,
    )


# -- django-fsm-2 -------------------------------------------------------------------------


@cache
def _django_model() -> type[Any]:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
            INSTALLED_APPS=["django.contrib.contenttypes", "django_fsm"],
            DEFAULT_AUTO_FIELD="django.db.models.AutoField",
            USE_TZ=True,
        )
        django.setup()

    from django.db import models
    from django_fsm import FSMField, transition

    def card_ok(order: Any) -> bool:
        return bool(order.card_authorized)

    class DjangoOrder(models.Model):
        state = FSMField(default="pending")
        card_authorized: models.BooleanField[bool, bool] = models.BooleanField(default=True)

        class Meta:
            app_label = "statekit_bench"

        @transition(field=state, source="pending", target="reserved")
        def reserve(self) -> None:
            pass

        @transition(field=state, source="reserved", target="paid", conditions=[card_ok])
        def pay(self) -> None:
            pass

        @transition(field=state, source="paid", target="shipped")
        def ship(self) -> None:
            pass

        @transition(field=state, source="shipped", target="delivered")
        def deliver(self) -> None:
            pass

    return DjangoOrder


def _django_cases() -> Iterator[Case]:
    model = _django_model()

    def instances(n: int) -> list[Any]:
        return [model(id=i, card_authorized=c, state=s) for i, c, s in plain_rows(n)]

    def fire(items: list[Any]) -> None:
        for order in items:
            order.pay()

    yield Case(TRIGGER, "django-fsm-2", "order.pay(), unsaved model", instances, fire)

    def ready(rows: list[Row3]) -> list[Any]:
        out = []
        for i, c, s in rows:
            out.append(model(id=i, card_authorized=c, state=s))
        return out

    yield Case(READY, "django-fsm-2", "Order(id=, card_authorized=, state=)", plain_rows, ready)


# -- running --------------------------------------------------------------------------------


def cases() -> list[Case]:
    """Every case: the hand-written baselines first, then statekit, then the peers."""
    found: list[Case] = []
    for source in (_hand_cases, _statekit_cases, _transitions_cases, _psm_cases, _django_cases):
        found.extend(source())
    return found


def check(case: Case) -> None:
    """Fire once outside the timing and make sure the case did what it claims."""
    items = case.make(3)
    made = case.run(items)
    if case.group == READY and (not isinstance(made, list) or len(made) != len(items)):
        raise AssertionError(f"{case.library}: {case.operation} did not return its entities")
    if case.group == TRIGGER:
        for item in items:
            state = getattr(getattr(item, "model", item), "state", None)
            if state != "paid":
                raise AssertionError(f"{case.library}: {case.operation} left state {state!r}")


def run(config: Config) -> Report:
    """Measure every case and check the issue's targets."""
    report = Report(name="core", groups=dict(GROUPS))
    selected = cases()
    for case in selected:
        check(case)
    for case, timing in zip(selected, measure(selected, config), strict=True):
        report.rows.append(Row(case.group, case.library, case.operation, timing))

    def find(group: str, library: str) -> Row:
        return next(r for r in report.rows if r.group == group and r.library == library)

    statekit_fire = find(TRIGGER, "statekit")
    plain = find(READY, "plain object")
    for row in report.rows:
        if row.group == TRIGGER:
            row.ratio = row.median_ns / statekit_fire.median_ns
        else:
            row.ratio = row.median_ns / plain.median_ns
            if row is not plain:
                row.delta_ns = row.median_ns - plain.median_ns

    django = find(TRIGGER, "django-fsm-2")
    speedup = django.median_ns / statekit_fire.median_ns
    stored = [r for r in report.rows if r.group == TRIGGER and r.library == "statekit"][1]
    ready = find(READY, "statekit")
    assert ready.delta_ns is not None
    report.targets = [
        Target(
            "guarded trigger vs django-fsm-2",
            "django-fsm-2 / statekit Machine.fire >= 2.00x",
            f"{_us(django.median_ns)} / {_us(statekit_fire.median_ns)} = {speedup:.2f}x",
            speedup >= 2.0,
        ),
        Target(
            "readying a loaded entity",
            "statekit entity - plain object < 1.000 µs",
            f"{_us(ready.median_ns)} - {_us(plain.median_ns)} = {_us(ready.delta_ns)}",
            ready.delta_ns < 1000.0,
        ),
    ]
    report.environment = env = environment(PACKAGES)
    report.notes = [
        f"statekit Runner(MemoryStore).fire takes {stored.median_ns / django.median_ns:.2f}x "
        "django-fsm-2's time, and also checks the version and records history; "
        "django-fsm-2's unsaved model writes nothing",
        f"median of {config.samples} samples; batch sizes "
        f"{min(r.measurement.batch for r in report.rows)}-"
        f"{max(r.measurement.batch for r in report.rows)}; gc paused while timing",
        "versions: " + ", ".join(f"{k} {v}" for k, v in env.items()),
    ]
    return report


def _us(ns: float) -> str:
    return f"{ns / 1000:.3f} µs"
