"""The data form of a machine: round trips, shape errors and build-time graph rules."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

import models.order
import models.ticket
import models.travel
from models.order import OrderWorkflow
from models.ticket import TicketWorkflow
from models.travel import TripWorkflow
from statekit import (
    DefinitionError,
    DefinitionFormatError,
    Machine,
    MachineSpec,
    StateSpec,
    TimeoutSpec,
    Workflow,
)
from tests.support import always, never, spec

MODELS: list[tuple[type[Workflow], object]] = [
    (OrderWorkflow, models.order),
    (TicketWorkflow, models.ticket),
    (TripWorkflow, models.travel),
]
MODEL_IDS = ["order", "ticket", "trip"]


# -- round trips -----------------------------------------------------------------------


@pytest.mark.parametrize(("workflow", "module"), MODELS, ids=MODEL_IDS)
def test_json_round_trip_gives_an_equal_spec(workflow: type[Workflow], module: object) -> None:
    text = workflow.spec.to_json()
    again = MachineSpec.from_json(text)
    assert again == workflow.spec
    assert MachineSpec.from_json(text.encode()) == workflow.spec
    assert json.loads(text) == workflow.spec.to_dict()


@pytest.mark.parametrize(("workflow", "module"), MODELS, ids=MODEL_IDS)
def test_yaml_round_trip_gives_an_equal_spec(workflow: type[Workflow], module: object) -> None:
    text = workflow.spec.to_yaml()
    assert MachineSpec.from_yaml(text) == workflow.spec
    assert yaml.safe_load(text) == workflow.spec.to_dict()


@pytest.mark.parametrize(("workflow", "module"), MODELS, ids=MODEL_IDS)
def test_a_parsed_spec_compiles_against_the_model_module(
    workflow: type[Workflow], module: object
) -> None:
    machine = Machine(MachineSpec.from_json(workflow.spec.to_json()), module)
    assert machine.states == workflow.machine.states
    assert machine.events == workflow.machine.events
    assert machine.initial == workflow.machine.initial
    assert machine.final_states == workflow.machine.final_states


def test_to_dict_leaves_defaults_out() -> None:
    data = TripWorkflow.spec.to_dict()
    assert "version" not in data
    assert data["states"][0] == {"name": "requested", "initial": True}
    assert data["states"][1]["timeout"] == {"after": "PT15M"}


@pytest.mark.parametrize(
    "document",
    [
        "!!python/object/apply:os.system ['echo unsafe']\n",
        "name: !!python/object:models.order.Order {}\nstates: [{name: a, initial: true}]\n",
        "!!python/name:os.system\n",
    ],
    ids=["apply", "object", "name"],
)
def test_yaml_is_loaded_safely(document: str) -> None:
    with pytest.raises(DefinitionFormatError, match="python/"):
        MachineSpec.from_yaml(document)


def test_spec_properties() -> None:
    m = spec(
        [{"name": "a", "initial": True}, {"name": "b", "final": True}],
        [
            {"event": "go", "sources": ["a"], "target": "b"},
            {"event": "jump", "sources": ["a"], "target": "b", "guards": ["g"]},
            {"event": "go", "sources": ["a"], "target": "a", "guards": ["g"]},
        ],
        version=3,
        compatible_versions=[1, 2],
    )
    assert m.event_names == ("go", "jump")
    assert m.accepted_versions == frozenset({1, 2, 3})
    assert isinstance(m.transitions[0].sources, tuple)


# -- shape errors are DefinitionFormatErrors naming the field ---------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "1bad", "states": [{"name": "a"}]}, "name"),
        ({"name": "", "states": [{"name": "a"}]}, "name"),
        ({"name": "m", "states": [{"name": "with space"}]}, "states.0.name"),
        ({"name": "m", "states": []}, "states"),
        ({"name": "m", "version": 0, "states": [{"name": "a"}]}, "version"),
        (
            {"name": "m", "states": [{"name": "a"}, {"name": "b"}, {"name": "a"}]},
            "duplicate state names: a",
        ),
        (
            {
                "name": "m",
                "states": [{"name": "a"}],
                "transitions": [{"event": "go-now", "sources": ["a"], "target": "a"}],
            },
            "transitions.0.event",
        ),
        (
            {
                "name": "m",
                "states": [{"name": "a"}],
                "transitions": [{"event": "go", "sources": [], "target": "a"}],
            },
            "transitions.0.sources",
        ),
        (
            {
                "name": "m",
                "states": [{"name": "a"}],
                "transitions": [{"event": "go", "sources": ["a"], "target": "a.b"}],
            },
            "transitions.0.target",
        ),
        ({"name": "m", "states": [{"name": "a", "colour": "red"}]}, "colour"),
        (
            {"name": "m", "states": [{"name": "a", "timeout": {"after": 0}}]},
            "a timeout must be positive",
        ),
        (
            {"name": "m", "states": [{"name": "a", "timeout": {"after": -60}}]},
            "a timeout must be positive",
        ),
        (
            {"name": "m", "states": [{"name": "a", "timeout": {"after": 5, "event": "x y"}}]},
            "timeout.event",
        ),
    ],
    ids=[
        "machine-name-digit",
        "machine-name-empty",
        "state-name-space",
        "no-states",
        "version-zero",
        "duplicate-states",
        "event-name",
        "no-sources",
        "target-name",
        "extra-field",
        "zero-timeout",
        "negative-timeout",
        "timeout-event-name",
    ],
)
def test_shape_errors_are_definition_format_errors(data: dict[str, Any], message: str) -> None:
    for load in (MachineSpec.model_validate, MachineSpec.from_dict):
        with pytest.raises(DefinitionFormatError, match=message):
            load(data)


def test_duplicate_states_are_named_once_each() -> None:
    with pytest.raises(DefinitionFormatError, match=r"duplicate state names: a, b\b"):
        spec([{"name": n} for n in ("a", "b", "a", "b", "c", "b")])


def test_specs_are_frozen() -> None:
    state = StateSpec(name="a")
    with pytest.raises(ValidationError, match="frozen"):
        state.name = "b"  # type: ignore[misc]
    assert TimeoutSpec(after=timedelta(seconds=1)).event is None


# -- graph rules: one DefinitionError naming every offender ----------------------------

A_TO_B = [
    {"name": "a", "initial": True},
    {"name": "b"},
    {"name": "c", "final": True},
]
VALID_TRANSITIONS = [
    {"event": "go", "sources": ["a"], "target": "b"},
    {"event": "finish", "sources": ["b"], "target": "c"},
]


class First(BaseModel):
    """One payload model."""

    n: int


class Second(BaseModel):
    """Another payload model."""

    s: str


def not_a_model(entity: object, ctx: object) -> None:
    """A callable that is not a payload model."""


HANDLERS: dict[str, object] = {
    "ok": always,
    "no": never,
    "First": First,
    "Second": Second,
    "not_a_model": not_a_model,
    "number": 42,
}


def problems_of(states: list[dict[str, Any]], transitions: list[dict[str, Any]]) -> list[str]:
    """Compile the spec and return the problems its DefinitionError lists."""
    with pytest.raises(DefinitionError) as caught:
        Machine(spec(states, transitions), HANDLERS)
    assert caught.value.machine == "m"
    for problem in caught.value.problems:
        assert problem in str(caught.value)
    return list(caught.value.problems)


def test_a_valid_spec_compiles() -> None:
    machine = Machine(spec(A_TO_B, VALID_TRANSITIONS), HANDLERS)
    assert machine.initial == "a"
    assert machine.final_states == frozenset({"c"})
    assert repr(machine) == "<Machine m v1: 3 states>"


@pytest.mark.parametrize(
    ("states", "transitions", "expected"),
    [
        (
            [{"name": "a"}, {"name": "b", "final": True}],
            [{"event": "go", "sources": ["a"], "target": "b"}],
            ["no initial state (mark exactly one state initial)"],
        ),
        (
            [{"name": "a", "initial": True}, {"name": "b", "initial": True, "final": True}],
            [{"event": "go", "sources": ["a"], "target": "b"}],
            ["several initial states: a, b (mark exactly one)"],
        ),
        (
            A_TO_B,
            [*VALID_TRANSITIONS, {"event": "back", "sources": ["zzz"], "target": "a"}],
            ["transition 'back' (zzz -> a): unknown source state 'zzz'"],
        ),
        (
            A_TO_B,
            [*VALID_TRANSITIONS, {"event": "away", "sources": ["b"], "target": "nowhere"}],
            ["transition 'away' (b -> nowhere): unknown target state 'nowhere'"],
        ),
        (
            [*A_TO_B, {"name": "island"}],
            [*VALID_TRANSITIONS, {"event": "leave", "sources": ["island"], "target": "c"}],
            ["state 'island' is unreachable from initial state 'a'"],
        ),
        (
            [*A_TO_B, {"name": "trap"}],
            [*VALID_TRANSITIONS, {"event": "fall", "sources": ["a"], "target": "trap"}],
            ["non-final state 'trap' has no way out (no transition leaves it)"],
        ),
        (
            A_TO_B,
            [*VALID_TRANSITIONS, {"event": "revive", "sources": ["c"], "target": "a"}],
            ["transition 'revive' (c -> a): leaves final state 'c'"],
        ),
        (
            A_TO_B,
            [
                {"event": "go", "sources": ["a"], "target": "b"},
                {"event": "go", "sources": ["a"], "target": "c", "guards": ["ok"]},
                VALID_TRANSITIONS[1],
            ],
            [
                "event 'go' is ambiguous from state 'a': the branch to 'b' has no guard, so "
                "the branches to 'c' can never be taken (guard it, or declare the unguarded "
                "branch last)"
            ],
        ),
        (
            A_TO_B,
            [
                {"event": "go", "sources": ["a"], "target": "b", "guards": ["ok"]},
                {"event": "go", "sources": ["a"], "target": "c", "guards": ["ok"]},
                VALID_TRANSITIONS[1],
            ],
            ["event 'go' is ambiguous from state 'a': two branches share the same guards (ok)"],
        ),
        (
            [{"name": "a", "initial": True}, {"name": "b", "timeout": {"after": 60}}, A_TO_B[2]],
            [
                {"event": "go", "sources": ["a"], "target": "b"},
                {"event": "finish", "sources": ["b"], "target": "c"},
                {"event": "expire", "sources": ["a"], "target": "c"},
            ],
            [],
        ),
        (
            [
                {"name": "a", "initial": True},
                {"name": "b", "timeout": {"after": 60, "event": "expire"}},
                A_TO_B[2],
            ],
            [
                {"event": "go", "sources": ["a"], "target": "b"},
                {"event": "finish", "sources": ["b"], "target": "c"},
                {"event": "expire", "sources": ["a"], "target": "c"},
            ],
            ["state 'b' times out by firing 'expire', but no transition 'expire' leaves 'b'"],
        ),
        (
            [*A_TO_B[:2], {"name": "c", "final": True, "timeout": {"after": 60}}],
            VALID_TRANSITIONS,
            ["final state 'c' declares a timeout"],
        ),
        (
            A_TO_B,
            [
                {"event": "go", "sources": ["a"], "target": "b", "payload": "First"},
                {"event": "go", "sources": ["b"], "target": "c", "payload": "Second"},
            ],
            ["event 'go' declares different payload models on its branches: First, Second"],
        ),
        (
            A_TO_B,
            [
                {"event": "go", "sources": ["a"], "target": "b", "payload": "First"},
                {"event": "go", "sources": ["b"], "target": "c"},
            ],
            ["event 'go' declares different payload models on its branches: First, None"],
        ),
    ],
    ids=[
        "no-initial",
        "several-initial",
        "unknown-source",
        "unknown-target",
        "unreachable",
        "dead-end",
        "leaves-final",
        "unguarded-branch-first",
        "identical-guards",
        "timeout-without-event-is-fine-as-is",
        "timeout-event-cannot-fire",
        "final-with-timeout",
        "different-payloads",
        "payload-and-none",
    ],
)
def test_each_graph_rule(
    states: list[dict[str, Any]], transitions: list[dict[str, Any]], expected: list[str]
) -> None:
    if not expected:
        Machine(spec(states, transitions), HANDLERS)
        return
    assert problems_of(states, transitions) == expected


def test_unguarded_last_branch_and_distinct_guards_are_not_ambiguous() -> None:
    machine = Machine(
        spec(
            A_TO_B,
            [
                {"event": "go", "sources": ["a"], "target": "c", "guards": ["ok"]},
                {"event": "go", "sources": ["a"], "target": "c", "unless": ["ok"]},
                {"event": "go", "sources": ["a"], "target": "b"},
                VALID_TRANSITIONS[1],
            ],
        ),
        HANDLERS,
    )
    assert machine.events == ("go", "finish")


def test_every_unknown_reference_is_named() -> None:
    transition = {
        "event": "go",
        "sources": ["a"],
        "target": "b",
        "guards": ["g1", "number"],
        "unless": ["u1"],
        "preconditions": ["pre1"],
        "postconditions": ["post1"],
        "actions": ["act1"],
        "effects": ["eff1"],
        "compensation": "comp1",
        "payload": "Missing",
    }
    label = "transition 'go' (a -> b)"
    assert problems_of(A_TO_B, [transition, VALID_TRANSITIONS[1]]) == [
        f"{label}: unknown guard 'g1'",
        f"{label}: unknown guard 'number'",
        f"{label}: unknown guard 'u1'",
        f"{label}: unknown precondition 'pre1'",
        f"{label}: unknown postcondition 'post1'",
        f"{label}: unknown action 'act1'",
        f"{label}: unknown effect 'eff1'",
        f"{label}: unknown compensation 'comp1'",
        f"{label}: unknown payload model 'Missing'",
    ]


@pytest.mark.parametrize("name", ["not_a_model", "number", "ok"])
def test_a_payload_must_name_a_pydantic_model(name: str) -> None:
    transitions = [{**VALID_TRANSITIONS[0], "payload": name}, VALID_TRANSITIONS[1]]
    assert problems_of(A_TO_B, transitions) == [
        f"transition 'go' (a -> b): unknown payload model {name!r}"
    ]


def test_many_problems_are_reported_together() -> None:
    states = [
        {"name": "a", "initial": True},
        {"name": "b", "timeout": {"after": 60, "event": "expire"}},
        {"name": "c", "final": True, "timeout": {"after": 60}},
        {"name": "island"},
        {"name": "trap"},
    ]
    transitions = [
        {"event": "go", "sources": ["a"], "target": "b"},
        {"event": "go", "sources": ["a"], "target": "trap"},
        {"event": "finish", "sources": ["b"], "target": "c", "guards": ["missing_guard"]},
        {"event": "revive", "sources": ["c"], "target": "a"},
        {"event": "leave", "sources": ["island", "ghost"], "target": "void"},
        {"event": "finish", "sources": ["island"], "target": "c", "payload": "First"},
    ]
    problems = problems_of(states, transitions)
    expected = [
        "transition 'revive' (c -> a): leaves final state 'c'",
        "unknown source state 'ghost'",
        "unknown target state 'void'",
        "final state 'c' declares a timeout",
        "non-final state 'trap' has no way out",
        "state 'b' times out by firing 'expire'",
        "state 'island' is unreachable",
        "event 'go' is ambiguous from state 'a'",
        "event 'finish' declares different payload models",
        "unknown guard 'missing_guard'",
    ]
    for fragment in expected:
        assert sum(fragment in p for p in problems) == 1, (fragment, problems)
    assert len(problems) == len(expected)


def test_no_initial_and_several_problems_at_once() -> None:
    states = [{"name": "a"}, {"name": "b", "final": True}, {"name": "c", "final": True}]
    transitions = [
        {"event": "go", "sources": ["a"], "target": "b"},
        {"event": "stop", "sources": ["b"], "target": "c"},
        {"event": "go", "sources": ["a"], "target": "c", "effects": ["nope"]},
    ]
    problems = problems_of(states, transitions)
    assert problems[0] == "no initial state (mark exactly one state initial)"
    assert any("leaves final state 'b'" in p for p in problems)
    assert any("ambiguous from state 'a'" in p for p in problems)
    assert any("unknown effect 'nope'" in p for p in problems)
    assert not any("unreachable" in p for p in problems)
    assert len(problems) == 4


def test_definition_error_message_counts_problems() -> None:
    with pytest.raises(DefinitionError, match=r"machine 'm' is invalid \(1 problem\):\n  - "):
        Machine(spec([{"name": "a", "final": True}]), None)


# -- where names are looked up ---------------------------------------------------------


class _Namespace:
    """Handlers as class attributes."""

    ok = staticmethod(always)


def test_handlers_can_be_a_mapping_an_object_or_a_list_searched_in_order() -> None:
    data = spec(
        [{"name": "a", "initial": True}, {"name": "b", "final": True}],
        [{"event": "go", "sources": ["a"], "target": "b", "guards": ["ok"]}],
    )
    first = Machine(data, [{"unrelated": never}, {"ok": never}, _Namespace])
    second = Machine(data, [_Namespace, {"ok": never}])
    entity = type("E", (), {"state": "a", "id": 1})()
    assert first.can_fire(entity, "go") is False
    assert second.can_fire(entity, "go") is True
    assert Machine(data, _Namespace).can_fire(entity, "go") is True
    with pytest.raises(DefinitionError, match="unknown guard 'ok'"):
        Machine(data)
