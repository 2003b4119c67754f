"""Hostile and oversized definitions: every loader error is one `DefinitionFormatError`
naming field paths without echoing the input, and every name and number must fit
statekit's tables (`statekit.limits`)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from statekit import DefinitionError, DefinitionFormatError, Machine, MachineSpec, StateSpec
from statekit.limits import HANDLER_NAME_MAX, INT_MAX, NAME_MAX, TIMEOUT_MAX
from tests.support import Thing, always

VALID: dict[str, Any] = {
    "name": "m",
    "states": [
        {"name": "a", "initial": True, "timeout": {"after": 60}},
        {"name": "b", "final": True},
    ],
    "transitions": [{"event": "go", "sources": ["a"], "target": "b", "guards": ["ok"]}],
}


def _with(**changes: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(VALID))
    for path, value in changes.items():
        *parents, last = path.split("__")
        node: Any = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value
    return data


def _refused(data: dict[str, Any], *, yaml: bool = True) -> DefinitionFormatError:
    """Load `data` through every loader; each must raise the same typed error."""
    errors = []
    loaders = [
        lambda: MachineSpec.from_dict(data),
        lambda: MachineSpec.from_json(json.dumps(data)),
        lambda: MachineSpec(**data),
    ]
    if yaml:
        loaders.append(lambda: MachineSpec.from_yaml(json.dumps(data)))  # JSON is YAML
    for load in loaders:
        with pytest.raises(DefinitionFormatError) as caught:
            load()
        errors.append(caught.value)
    assert len({e.fields for e in errors}) == 1, [e.fields for e in errors]
    return errors[0]


# -- YAML aliases and nesting -----------------------------------------------------------


def _alias_bomb(levels: int) -> str:
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    for n in range(1, levels):
        lines.append(f"l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_with_a_short_message() -> None:
    bomb = _alias_bomb(6)  # 9**6 = 531,441 strings once expanded
    assert len(bomb) < 400
    with pytest.raises(DefinitionFormatError, match="anchors and aliases") as caught:
        MachineSpec.from_yaml(bomb)
    assert len(str(caught.value)) < 300
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


def test_a_harmless_alias_is_refused_too() -> None:
    text = "name: m\nstates:\n  - &first {name: a, initial: true, final: true}\n  - *first\n"
    with pytest.raises(DefinitionFormatError, match=r"line 3, column 5: .*anchors and aliases"):
        MachineSpec.from_yaml(text)


@pytest.mark.parametrize(
    "load",
    [
        lambda depth: MachineSpec.from_yaml("name: m\nstates: " + "[" * depth + "]" * depth),
        lambda depth: MachineSpec.from_json(
            '{"name": "m", "states": ' + "[" * depth + "]" * depth + "}"
        ),
        lambda depth: MachineSpec.from_dict({"name": "m", "states": _nested(depth)}),
    ],
    ids=["yaml", "json", "dict"],
)
def test_deep_nesting_is_a_definition_error(load: Any) -> None:
    with pytest.raises(DefinitionFormatError) as caught:
        load(50_000)
    assert len(str(caught.value)) < 2_000


def _nested(depth: int) -> list[Any]:
    top: list[Any] = []
    node = top
    for _ in range(depth):
        node.append([])
        node = node[0]
    return top


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: m\nstates: [", r"YAML at line 2, column 10: .*expected"),
        ("name: m\n\tstates: []", r"YAML at line 2, column 1: .*cannot start any token"),
        ("- just\n- a list\n", "must be a mapping"),
        ("", "must be a mapping"),
        ("!!python/object/apply:os.system ['echo unsafe']\n", "python/object/apply"),
        ("name: m\nstates: [{name: a}]\n{[1]: 2}: x\n", "YAML"),
    ],
    ids=["unclosed", "tab", "list", "empty", "python-tag", "unhashable-key"],
)
def test_malformed_yaml_is_a_definition_error(text: str, message: str) -> None:
    with pytest.raises(DefinitionFormatError, match=message) as caught:
        MachineSpec.from_yaml(text)
    assert caught.value.machine == "(unnamed)"


def test_malformed_json_is_a_definition_error() -> None:
    with pytest.raises(DefinitionFormatError, match="Invalid JSON"):
        MachineSpec.from_json('{"name": "m", "states": [')


# -- what an error says ------------------------------------------------------------------


def test_errors_name_field_paths_and_quote_only_a_little_of_the_input() -> None:
    huge = "x" * 100_000
    data = _with(states__0__name=huge + "\x1b]0;owned\x07", description=None)
    data["states"][1][huge] = 1
    data["transitions"][0]["guards"] = ["\x1b[2J" + huge]
    error = _refused(data, yaml=False)  # PyYAML refuses keys over 1024 characters
    assert error.machine == "m"
    assert set(error.fields) == {
        "states.0.name",
        f"states.1.{'x' * 30!r}... (100000 characters)",
        "transitions.0.guards.0",
        "description",
    }
    text = str(error)
    assert len(text) < 2_000
    assert "\x1b" not in text
    assert "\x07" not in text
    assert "\\x1b" in text


def test_the_number_of_listed_problems_is_bounded() -> None:
    data = _with(states=[{"name": f"bad name {n}"} for n in range(1_000)])
    error = _refused(data)
    assert len(error.problems) == 21
    assert error.problems[-1] == "... and 980 more problem(s)"


def test_a_spec_built_in_python_raises_the_same_error() -> None:
    with pytest.raises(DefinitionFormatError) as caught:
        StateSpec(name="not a name")
    assert caught.value.fields == ("name",)
    assert caught.value.machine == "(unnamed)"


# -- handler names -------------------------------------------------------------------------

HANDLER_FIELDS = ["guards", "unless", "preconditions", "postconditions", "actions", "effects"]
BAD_HANDLER_NAMES = ["__init__", "_private", "a;b", "a\nb", "a\x1bb", "", "1a", "a.b", "é"]


@pytest.mark.parametrize("field", HANDLER_FIELDS)
@pytest.mark.parametrize("name", BAD_HANDLER_NAMES)
def test_bad_handler_names_are_refused(field: str, name: str) -> None:
    error = _refused(_with(**{f"transitions__0__{field}": [name]}))
    assert error.fields == (f"transitions.0.{field}.0",)


@pytest.mark.parametrize("name", BAD_HANDLER_NAMES)
def test_bad_compensation_and_payload_names_are_refused(name: str) -> None:
    error = _refused(_with(transitions__0__compensation=name, transitions__0__payload=name))
    assert error.fields == ("transitions.0.compensation", "transitions.0.payload")


def test_an_action_named_init_never_reaches_the_entity() -> None:
    data = _with(transitions__0__actions=["__init__"], transitions__0__guards=[])
    with pytest.raises(DefinitionError, match="private and dunder names are refused"):
        Machine(MachineSpec.from_dict(data), entity_type=Thing)


@pytest.mark.parametrize("name", ["a;b", "a\nb", "a\x1b", "a b"])
def test_state_and_source_names_follow_the_name_rule(name: str) -> None:
    error = _refused(_with(transitions__0__sources=[name], compensated_state=name))
    assert set(error.fields) == {"transitions.0.sources.0", "compensated_state"}


# -- limits: what the tables can hold -----------------------------------------------------

OVER = {
    "name": "m" * (NAME_MAX + 1),
    "states__0__name": "a" * (NAME_MAX + 1),
    "states__0__timeout__event": "e" * (NAME_MAX + 1),
    "transitions__0__event": "g" * (NAME_MAX + 1),
    "transitions__0__sources": ["s" * (NAME_MAX + 1)],
    "transitions__0__target": "t" * (NAME_MAX + 1),
    "transitions__0__guards": ["h" * (HANDLER_NAME_MAX + 1)],
    "transitions__0__compensation": "c" * (HANDLER_NAME_MAX + 1),
    "transitions__0__compensation_attempts": INT_MAX + 1,
    "version": INT_MAX + 1,
    "compatible_versions": [2, INT_MAX + 1],
    "compensated_state": "z" * (NAME_MAX + 1),
}


def test_every_name_and_number_over_the_limits_is_named() -> None:
    error = _refused(_with(**OVER))
    assert error.machine == "(unnamed)"
    assert sorted(error.fields) == sorted(
        [
            "name",
            "version",
            "compatible_versions.1",
            "states.0.name",
            "states.0.timeout.event",
            "transitions.0.event",
            "transitions.0.sources.0",
            "transitions.0.target",
            "transitions.0.guards.0",
            "transitions.0.compensation",
            "transitions.0.compensation_attempts",
            "compensated_state",
        ]
    )
    assert f"longer than {NAME_MAX} characters" in str(error)
    assert f"longer than {HANDLER_NAME_MAX} characters" in str(error)
    assert f"less than or equal to {INT_MAX}" in str(error)


@pytest.mark.parametrize("after", ["P999999999D", "P36526D", 36_526 * 86_400])
def test_a_timeout_that_could_overflow_a_deadline_is_refused(after: object) -> None:
    error = _refused(_with(states__0__timeout__after=after))
    assert error.fields == ("states.0.timeout.after",)
    assert "at most 36525 days" in str(error)


def test_everything_at_the_limits_is_accepted() -> None:
    at = {
        path: (value[:-1] if isinstance(value, str) else value - 1)
        if not isinstance(value, list)
        else [v[:-1] if isinstance(v, str) else v - 1 for v in value]
        for path, value in OVER.items()
    }
    data = _with(**at, states__0__timeout__after=TIMEOUT_MAX.total_seconds())
    data["states"][0]["name"] = "a" * NAME_MAX
    data["states"].append({"name": "s" * NAME_MAX, "final": True})
    data["states"].append({"name": "t" * NAME_MAX, "final": True})
    data["states"].append({"name": "z" * NAME_MAX, "final": True})
    spec = MachineSpec.from_dict(data)
    assert spec.states[0].timeout is not None
    assert spec.states[0].timeout.after == TIMEOUT_MAX
    assert TIMEOUT_MAX == timedelta(days=36_525)
    assert spec.version == INT_MAX


def test_a_machine_at_the_limits_compiles() -> None:
    long_state, long_event = "s" * NAME_MAX, "e" * NAME_MAX
    handler = "h" * HANDLER_NAME_MAX
    spec = MachineSpec.from_dict(
        {
            "name": "m" * NAME_MAX,
            "version": INT_MAX,
            "states": [
                {"name": long_state, "initial": True, "timeout": {"after": "P36525D"}},
                {"name": "done", "final": True},
            ],
            "transitions": [
                {
                    "event": long_event,
                    "sources": [long_state],
                    "target": "done",
                    "guards": [handler],
                    "compensation": handler,
                    "compensation_attempts": INT_MAX,
                }
            ],
        }
    )
    machine = Machine(spec, {handler: always})
    assert machine.events == (long_event,)
