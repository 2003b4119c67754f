"""Class syntax: declarations compile to a spec and one shared machine at class definition."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from pydantic import BaseModel

from statekit import (
    Context,
    DefinitionError,
    GuardRejectedError,
    Machine,
    State,
    StateFields,
    TimeoutSpec,
    TransitionSpec,
    Workflow,
)
from tests.support import Thing, always, never


def is_big(entity: Thing, ctx: Context) -> bool:
    """Guard: the thing is big."""
    return bool(entity.size > 10)


class Size(BaseModel):
    """A payload."""

    size: int


def test_names_come_from_attributes_and_the_docstring_is_the_description() -> None:
    class Door(Workflow, name="door", version=2, compatible_versions=[1]):
        """A door.

        It opens and closes.
        """

        closed = State(initial=True, description="shut")
        opened = State(timeout=timedelta(minutes=5), on_timeout="close")
        broken = State(final=True)

        open = closed.to(opened, description="push it")
        close = opened.to(closed)
        kick = (closed | opened).to(broken)

    s = Door.spec
    assert s.name == "door"
    assert s.version == 2
    assert s.compatible_versions == (1,)
    assert s.description == "A door.\n\nIt opens and closes."
    assert [st.name for st in s.states] == ["closed", "opened", "broken"]
    assert s.states[0].description == "shut"
    assert s.states[1].timeout == TimeoutSpec(after=timedelta(minutes=5), event="close")
    assert s.transitions == (
        TransitionSpec(event="open", sources=("closed",), target="opened", description="push it"),
        TransitionSpec(event="close", sources=("opened",), target="closed"),
        TransitionSpec(event="kick", sources=("closed", "opened"), target="broken"),
    )
    assert isinstance(Door.machine, Machine)
    assert Door.machine.spec is Door.spec


@pytest.mark.parametrize(
    ("class_name", "expected"),
    [
        ("OrderShippingWorkflow", "order_shipping"),
        ("BookingMachine", "booking"),
        ("ReviewFlow", "review"),
        ("Flow", "flow"),
        ("Lamp", "lamp"),
    ],
)
def test_default_machine_name_is_the_class_name_in_snake_case(
    class_name: str, expected: str
) -> None:
    namespace = {
        "a": State(initial=True),
        "b": State(final=True),
    }
    namespace["go"] = namespace["a"].to(namespace["b"])
    workflow = type(class_name, (Workflow,), namespace)
    assert workflow.spec.name == expected
    assert workflow.machine.name == expected


def test_pipe_joins_sources_and_branches() -> None:
    class Router(Workflow):
        a = State(initial=True)
        b = State()
        c = State()
        big = State(final=True)
        small = State(final=True)

        spread = a.to(b, guard=is_big) | a.to(c)
        finish = (b | (c | a)).to(big, guard=is_big) | (b | c).to(small)
        hop = (b.to(c, guard=never) | b.to(c, guard=always)) | (c.to(b) | a.to(a, guard=never))

    t = Router.spec.transitions
    assert [(x.event, x.sources, x.target) for x in t] == [
        ("spread", ("a",), "b"),
        ("spread", ("a",), "c"),
        ("finish", ("b", "c", "a"), "big"),
        ("finish", ("b", "c"), "small"),
        ("hop", ("b",), "c"),
        ("hop", ("b",), "c"),
        ("hop", ("c",), "b"),
        ("hop", ("a",), "a"),
    ]
    machine = Router.machine
    big, small = Thing(size=20), Thing(size=1)
    for thing in (big, small):
        machine.start(thing)
    assert machine.fire(big, "spread").target == "b"
    assert machine.fire(small, "spread").target == "c"
    assert machine.fire(big, "finish").target == "big"
    assert machine.fire(small, "finish").target == "small"


def test_string_references_resolve_against_the_class_namespace() -> None:
    calls: list[str] = []

    class Checked(Workflow):
        a = State(initial=True)
        b = State(final=True)

        def looks_fine(entity: Thing, ctx: Context) -> bool:  # type: ignore[misc]  # noqa: N805
            calls.append(f"guard {entity.id} {ctx.event}")
            return True

        @staticmethod
        def note(entity: Thing, ctx: Context) -> None:
            calls.append(f"action {ctx.source}->{ctx.target}")

        go = a.to(b, guard="looks_fine", action="note", payload="Note")

        class Note(BaseModel):
            text: str

    thing = Thing()
    Checked.machine.start(thing)
    plan = Checked.machine.fire(thing, "go", text="hi")
    assert calls == ["guard t1 go", "action a->b"]
    assert plan.payload is not None
    assert type(plan.payload).__name__ == "Note"


def test_staticmethods_can_be_referenced_directly_in_the_class_body() -> None:
    class Static(Workflow):
        @staticmethod
        def ready(entity: Thing, ctx: Context) -> bool | str:
            return bool(entity.ready) or "not ready"

        a = State(initial=True)
        b = State(final=True)
        go = a.to(b, guard=ready)

    assert Static.spec.transitions[0].guards == ("ready",)
    thing = Thing(ready=False)
    Static.machine.start(thing)
    with pytest.raises(GuardRejectedError, match="not ready"):
        Static.machine.fire(thing, "go")
    thing.ready = True
    assert Static.machine.fire(thing, "go").target == "b"


def test_handlers_keyword_supplies_names() -> None:
    seen: list[str] = []
    handlers = SimpleNamespace(record=lambda entity, ctx: seen.append(ctx.event), Size=Size)

    class WithHandlers(Workflow, handlers=handlers):
        a = State(initial=True)
        b = State(final=True)
        go = a.to(b, effect="record", payload="Size")

    thing = Thing()
    WithHandlers.machine.start(thing)
    WithHandlers.machine.fire(thing, "go", size=3)
    assert seen == ["go"]

    with pytest.raises(DefinitionError, match="unknown guard 'is_big'"):

        class Missing(Workflow, handlers={"Size": Size}):
            a = State(initial=True)
            b = State(final=True)
            go = a.to(b, guard="is_big", payload="Size")

    class WithList(Workflow, handlers=[{"is_big": is_big}, handlers]):
        a = State(initial=True)
        b = State(final=True)
        go = a.to(b, guard="is_big", effect="record", payload="Size")

    small = Thing(size=1)
    WithList.machine.start(small)
    assert WithList.machine.can_fire(small, "go", size=1) is False
    small.size = 11
    WithList.machine.fire(small, "go", size=1)
    assert seen == ["go", "go"]


class Lamp(Thing):
    """An entity whose methods are the machine's handlers."""

    def has_bulb(self, ctx: Context) -> bool | str:
        return bool(self.bulb) or f"no bulb for {ctx.event}"

    def switch(self, ctx: Context) -> None:
        self.switched = ctx.target

    watts = 60  # not callable: cannot be a handler


def test_entity_methods_are_called_as_entity_method_ctx() -> None:
    class LampWorkflow(Workflow, entity=Lamp):
        off = State(initial=True)
        on = State()
        gone = State(final=True)
        turn_on = off.to(on, guard="has_bulb", action="switch")
        turn_off = on.to(off, action="switch")
        remove = (off | on).to(gone)

    assert LampWorkflow.spec.name == "lamp"
    lamp = Lamp(bulb=False)
    LampWorkflow.machine.start(lamp)
    with pytest.raises(GuardRejectedError, match="no bulb for turn_on"):
        LampWorkflow.machine.fire(lamp, "turn_on")
    lamp.bulb = True
    LampWorkflow.machine.fire(lamp, "turn_on")
    assert lamp.switched == "on"

    with pytest.raises(DefinitionError, match="unknown guard 'watts'"):

        class NotCallable(Workflow, entity=Lamp):
            off = State(initial=True)
            on = State(final=True)
            turn_on = off.to(on, guard="watts")


def test_lambdas_get_distinct_names() -> None:
    class Lambdas(Workflow):
        a = State(initial=True)
        b = State()
        c = State(final=True)
        go = a.to(b, guard=lambda e, c: e.n > 0) | a.to(c, guard=[lambda e, c: True])
        finish = b.to(c, action=lambda e, c: setattr(e, "done", True))

    first, second = Lambdas.spec.transitions[0], Lambdas.spec.transitions[1]
    assert first.guards != second.guards
    assert first.guards[0].startswith("go_guard_")
    thing = Thing(n=1)
    Lambdas.machine.start(thing)
    assert Lambdas.machine.fire(thing, "go").target == "b"
    Lambdas.machine.fire(thing, "finish")
    assert thing.done is True
    other = Thing(n=0)
    Lambdas.machine.start(other)
    assert Lambdas.machine.fire(other, "go").target == "c"


def test_two_callables_with_one_name_conflict() -> None:
    def make_check(result: bool) -> object:
        def check(entity: object, ctx: object) -> bool:
            return result

        return check

    first, second = make_check(True), make_check(False)
    with pytest.raises(DefinitionError) as caught:

        class Conflict(Workflow):
            a = State(initial=True)
            b = State()
            c = State(final=True)
            go = a.to(b, guard=first)
            finish = b.to(c, guard=second)

    assert caught.value.problems == (
        "finish.guard: two different callables are both named 'check'",
    )


def test_the_same_callable_may_be_referenced_twice() -> None:
    class Twice(Workflow):
        a = State(initial=True)
        b = State()
        c = State(final=True)
        go = a.to(b, guard=is_big, compensate=is_big)
        finish = b.to(c, guard=[is_big, "is_big"])

    assert Twice.spec.transitions[1].guards == ("is_big", "is_big")
    assert Twice.machine.compensations == {"is_big": is_big}


def test_payload_models_and_fields_keyword() -> None:
    fields = StateFields(state="status", version="lock", key="code")

    class Custom(Workflow, fields=fields):
        a = State(initial=True)
        b = State(final=True)
        go = a.to(b, payload=Size)

    assert Custom.spec.transitions[0].payload == "Size"
    assert Custom.machine.payload_models == {"go": Size}
    assert Custom.machine.fields is fields
    thing = SimpleNamespace(code=7)
    Custom.machine.start(thing)
    assert thing.status == "a"
    plan = Custom.machine.fire(thing, "go", size=5)
    assert (thing.status, thing.lock, plan.key) == ("b", 1, "7")
    assert plan.payload == Size(size=5)


def test_to_self_reenters_the_state() -> None:
    class Loop(Workflow):
        a = State(initial=True, timeout=timedelta(seconds=30))
        b = State(final=True)
        poke = a.to_self(action=lambda e, c: setattr(e, "poked", True))
        stop = a.to(b)

    assert Loop.spec.transitions[0].sources == ("a",)
    assert Loop.spec.transitions[0].target == "a"
    thing = Thing()
    Loop.machine.start(thing)
    Loop.machine.fire(thing, "poke")
    assert (thing.state, thing.state_version, thing.poked) == ("a", 1, True)


def test_state_repr_and_option_errors() -> None:
    loose = State()
    assert repr(loose) == "State(?)"
    with pytest.raises(TypeError, match="needs a timeout"):
        State(on_timeout="expire")

    class Named(Workflow):
        a = State(initial=True)
        b = State(final=True)
        go = a.to(b)

    assert repr(Named.a) == "State(a)"

    with pytest.raises(TypeError, match=r"event 'go': unknown option\(s\) colour, size"):

        class BadOption(Workflow):
            a = State(initial=True)
            b = State(final=True)
            go = (a | a).to(b, colour="red", size=2)


def test_a_state_that_is_not_a_class_attribute_is_rejected() -> None:
    elsewhere = State()
    with pytest.raises(DefinitionError, match="uses a State that is not an attribute"):

        class Stray(Workflow):
            a = State(initial=True)
            go = a.to(elsewhere)


def test_graph_rules_fail_at_class_definition_listing_every_problem() -> None:
    with pytest.raises(DefinitionError) as caught:

        class Broken(Workflow):
            a = State(initial=True)
            b = State(initial=True, timeout=timedelta(hours=1), on_timeout="expire")
            done = State(final=True, timeout=timedelta(hours=1))
            trap = State()
            go = a.to(b) | a.to(trap)
            revive = done.to(a)
            finish = b.to(done, guard="missing", payload=Size) | b.to(done, guard="missing")

    problems = caught.value.problems
    assert caught.value.machine == "broken"
    expected = [
        "several initial states: a, b",
        "leaves final state 'done'",
        "final state 'done' declares a timeout",
        "non-final state 'trap' has no way out",
        "state 'b' times out by firing 'expire'",
        "event 'go' is ambiguous from state 'a'",
        "event 'finish' is ambiguous from state 'b': two branches share the same guards",
        "event 'finish' declares different payload models",
        "unknown guard 'missing'",
        "unknown guard 'missing'",
    ]
    for fragment in set(expected):
        assert sum(fragment in p for p in problems) == expected.count(fragment), fragment
    assert len(problems) == len(expected)


# -- every problem of a class, as one DefinitionError ------------------------------------


def test_an_empty_workflow_is_a_definition_error() -> None:
    with pytest.raises(DefinitionError, match="no states declared") as caught:

        class Empty(Workflow):
            pass

    assert caught.value.machine == "empty"


def test_a_bad_machine_name_is_a_definition_error_listed_with_the_rest() -> None:
    with pytest.raises(DefinitionError) as caught:

        class Named(Workflow, name="not a name"):
            a = State(initial=True)
            b = State(final=True)
            go = a.to(b, guard="missing")

    assert caught.value.machine == "not a name"
    assert caught.value.problems[0].startswith("name: 'not a name' is not a name")
    assert "transition 'go' (a -> b): unknown guard 'missing'" in caught.value.problems
    assert len(caught.value.problems) == 2


def test_an_undeclared_state_names_the_machine_and_every_other_problem() -> None:
    stray = State()

    class Other(Workflow):
        x = State(initial=True)
        b = State(final=True)
        go = x.to(b)

    with pytest.raises(DefinitionError) as caught:

        class Broken(Workflow):
            a = State(initial=True)
            b = State(final=True)
            lost = a.to(stray)
            borrowed = a.to(Other.b)  # a State of another class, named like this one's
            finish = a.to(b, guard="missing", compensate="_private")
            too_long = State(timeout=timedelta(days=40_000))

    assert caught.value.machine == "broken"
    problems = caught.value.problems
    for fragment in [
        "event 'lost' uses a State that is not an attribute of the workflow",
        "event 'borrowed' uses a State that is not an attribute of the workflow",
        "event 'finish': compensation: '_private' is not a handler name",
        "state 'too_long': after: a timeout must be at most 36525 days",
    ]:
        assert sum(p.startswith(fragment) for p in problems) == 1, (fragment, problems)


def test_private_functions_and_lambdas_get_plain_names() -> None:
    def _is_ready(entity: object, ctx: object) -> bool:
        return True

    class Private(Workflow):
        a = State(initial=True)
        b = State(final=True)
        go = a.to(b, guard=_is_ready, action=lambda e, c: None, compensate=lambda e, u: None)

    branch = Private.spec.transitions[0]
    assert branch.guards == ("is_ready",)
    assert branch.actions[0].startswith("go_action_")
    assert branch.compensation is not None
    assert branch.compensation.startswith("go_compensate_")
    assert Private.machine.can_fire(Thing(state="a"), "go")


@pytest.mark.parametrize("ref", ["__init__", "_reset", "reset;drop"])
def test_a_string_reference_to_a_private_entity_method_is_refused(ref: str) -> None:
    class Entity(Thing):
        def _reset(self, ctx: object) -> None:
            self.__init__()  # type: ignore[misc]

    with pytest.raises(DefinitionError, match="is not a handler name"):

        class Dangerous(Workflow, entity=Entity):
            a = State(initial=True)
            b = State(final=True)
            go = a.to(b, action=ref)
