"""The data form of a machine: frozen pydantic specs that round-trip to JSON and YAML.

A spec names its callables (guards, conditions, actions, effects, compensations,
payload models) by string; `statekit.engine.Machine` resolves the names once, when
it compiles the spec, and rejects a missing one. Every name, number and timeout is
checked against `statekit.limits`, so a spec that validates fits statekit's tables.

Building or loading a spec that breaks a field rule raises `DefinitionFormatError`
naming each field path; the input is never echoed beyond a short quote.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from datetime import timedelta
from functools import cache
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from statekit.errors import DefinitionFormatError
from statekit.limits import HANDLER_NAME_MAX, INT_MAX, NAME_MAX, TIMEOUT_MAX
from statekit.quoting import bounded_repr

__all__ = [
    "HANDLER_NAME",
    "NAME",
    "MachineSpec",
    "StateSpec",
    "TimeoutSpec",
    "TransitionSpec",
    "is_name",
]

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
"""What a machine, state or event name must fully match (and be at most `NAME_MAX`)."""

HANDLER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
"""What a guard, condition, action, effect, compensation or payload name must fully
match (and be at most `HANDLER_NAME_MAX`): names are looked up as attributes, so
private and dunder names (`_x`, `__init__`) are refused."""

_VALIDATING: ContextVar[bool] = ContextVar("statekit_validating_spec", default=False)
_MAX_LISTED = 20  # problems listed in one error; the rest are counted


def is_name(text: str) -> bool:
    """Whether `text` may name a machine, state or event (pattern and length)."""
    return len(text) <= NAME_MAX and NAME.fullmatch(text) is not None


def _name_rule(pattern: re.Pattern[str], limit: int, column: str, rule: str) -> AfterValidator:
    """A validator refusing a name longer than `limit` or not matching `pattern`."""

    def check(value: str) -> str:
        if len(value) > limit:
            raise ValueError(
                f"{bounded_repr(value)} is longer than {limit} characters "
                f"(the width of statekit's {column} columns)"
            )
        if not pattern.fullmatch(value):
            raise ValueError(f"{bounded_repr(value)} is not a {rule}")
        return value

    return AfterValidator(check)


Name = Annotated[
    str,
    _name_rule(
        NAME, NAME_MAX, "name", "name: use letters, digits and '_', not starting with a digit"
    ),
]
HandlerName = Annotated[
    str,
    _name_rule(
        HANDLER_NAME,
        HANDLER_NAME_MAX,
        "handler name",
        "handler name: start with a letter, then use letters, digits and '_' "
        "(private and dunder names are refused)",
    ),
]
Count = Annotated[int, Field(ge=1, le=INT_MAX)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, /, **data: Any) -> None:
        if _VALIDATING.get():  # a nested spec: the outer validation reports its errors
            super().__init__(**data)
            return
        machine_data = data if isinstance(self, MachineSpec) else None
        _validated(lambda: super(_Frozen, self).__init__(**data), machine_data)


class TimeoutSpec(_Frozen):
    """How long an instance may stay in a state, and what happens when it overstays.

    With `event` set, the sweeper fires that event; without it, the instance is
    marked stuck and the compensations of its completed steps are scheduled.
    """

    after: timedelta
    event: Name | None = None

    @field_validator("after")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("a timeout must be positive")
        if value > TIMEOUT_MAX:
            raise ValueError(f"a timeout must be at most {TIMEOUT_MAX.days} days (100 years)")
        return value


class StateSpec(_Frozen):
    """One declared state."""

    name: Name
    initial: bool = False
    final: bool = False
    timeout: TimeoutSpec | None = None
    description: str = ""


class TransitionSpec(_Frozen):
    """One branch of an event: from any of `sources` to `target`.

    Branches of the same event from the same state are tried in declaration order;
    the first whose guards all pass (and whose `unless` guards all fail) wins.
    """

    event: Name
    sources: tuple[Name, ...] = Field(min_length=1)
    target: Name
    guards: tuple[HandlerName, ...] = ()
    unless: tuple[HandlerName, ...] = ()
    preconditions: tuple[HandlerName, ...] = ()
    postconditions: tuple[HandlerName, ...] = ()
    actions: tuple[HandlerName, ...] = ()
    effects: tuple[HandlerName, ...] = ()
    compensation: HandlerName | None = None
    compensation_attempts: Count = 5
    payload: HandlerName | None = None
    description: str = ""


class MachineSpec(_Frozen):
    """A whole machine: name, version, states and transitions."""

    name: Name
    version: Count = 1
    compatible_versions: tuple[Count, ...] = ()
    states: tuple[StateSpec, ...] = Field(min_length=1)
    transitions: tuple[TransitionSpec, ...] = ()
    compensated_state: Name | None = None
    description: str = ""

    @model_validator(mode="after")
    def _unique_state_names(self) -> MachineSpec:
        names = [s.name for s in self.states]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate state names: {', '.join(duplicates)}")
        return self

    @property
    def accepted_versions(self) -> frozenset[int]:
        """The definition versions an instance may be stored under."""
        return frozenset((self.version, *self.compatible_versions))

    @property
    def event_names(self) -> tuple[str, ...]:
        """Every declared event, in declaration order."""
        return tuple(dict.fromkeys(t.event for t in self.transitions))

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as JSON-compatible data (defaults left out)."""
        return self.model_dump(mode="json", exclude_defaults=True)

    def to_json(self, *, indent: int | None = 2) -> str:
        """Serialise to JSON text."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MachineSpec:
        """Validate plain data (as `to_dict` returns it).

        Raises:
            DefinitionFormatError: naming every offending field path.
        """
        return _validated(lambda: cls.model_validate(data), data)

    @classmethod
    def from_json(cls, text: str | bytes) -> MachineSpec:
        """Parse JSON text produced by `to_json` (or written by hand).

        Raises:
            DefinitionFormatError: for malformed JSON or any offending field.
        """
        return _validated(lambda: cls.model_validate_json(text), None)

    def to_yaml(self) -> str:
        """Serialise to YAML text (needs the `yaml` extra)."""
        yaml = _import_yaml()
        return str(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_yaml(cls, text: str) -> MachineSpec:
        """Parse YAML with the safe loader only (needs the `yaml` extra). Anchors and
        aliases (`&a`, `*a`) are refused: a definition never needs them, and a few
        hundred bytes of nested aliases expand to gigabytes.

        Raises:
            DefinitionFormatError: for malformed YAML, an anchor or alias, a tag
                other than the standard ones, or any offending field.
        """
        yaml = _import_yaml()
        problem: str | None = None
        try:
            data = yaml.load(text, Loader=_plain_yaml_loader())
        except yaml.MarkedYAMLError as exc:
            problem = _yaml_problem(exc)
        except yaml.YAMLError as exc:
            problem = f"YAML: {bounded_repr(exc, 200)}"
        except RecursionError:
            problem = "YAML: nested too deeply"
        if problem is not None:
            raise DefinitionFormatError(_UNNAMED, [problem], fields=())
        if not isinstance(data, Mapping):
            raise DefinitionFormatError(
                _UNNAMED, ["the YAML document must be a mapping of the machine's fields"], fields=()
            )
        return cls.from_dict(data)


_UNNAMED = "(unnamed)"
_T = TypeVar("_T")


def _machine_name(data: object) -> str:
    """The machine's name for an error about `data`, if it has a usable one."""
    name = data.get("name") if isinstance(data, Mapping) else None
    return name if isinstance(name, str) and is_name(name) else _UNNAMED


def _validated(build: Callable[[], _T], data: object) -> _T:
    """Run a pydantic validation, turning its errors into one `DefinitionFormatError`
    that names each field path and quotes no more than a short piece of the input.
    The pydantic error is dropped, not chained: its text can hold the whole input."""
    fields: list[str] = []
    problems: list[str] = []
    token = _VALIDATING.set(True)
    try:
        return build()
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        # A tuple whose items all failed also reports being too short: say it once.
        nested = {error["loc"][:n] for error in errors for n in range(1, len(error["loc"]))}
        errors = [e for e in errors if not (e["type"] == "too_short" and e["loc"] in nested)]
        for error in errors[:_MAX_LISTED]:
            path = ".".join(_path_part(part) for part in error["loc"])
            fields.append(path)
            message = " ".join(str(error["msg"]).removeprefix("Value error, ").split())
            problems.append(f"{path or '(the definition)'}: {_cut(message, 300)}")
        if len(errors) > _MAX_LISTED:
            problems.append(f"... and {len(errors) - _MAX_LISTED} more problem(s)")
    except RecursionError:
        problems.append("the definition is nested too deeply")
    finally:
        _VALIDATING.reset(token)
    raise DefinitionFormatError(_machine_name(data), problems, fields=fields)


def _path_part(part: object) -> str:
    text = str(part)
    return text if is_name(text) or text.isdigit() else bounded_repr(text, 30)


def _cut(text: str, limit: int) -> str:
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[: limit + 1])
    return text if len(text) <= limit else text[:limit] + "..."


def _yaml_problem(exc: Any) -> str:
    """One line for a PyYAML error: what went wrong and where, quoting no input."""
    what = " ".join(str(part) for part in (exc.context, exc.problem) if part)
    mark = exc.problem_mark or exc.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"YAML{where}: {_cut(what or 'cannot be read', 200)}"


@cache
def _plain_yaml_loader() -> Any:
    """PyYAML's safe loader, refusing anchors and aliases."""
    yaml = _import_yaml()

    class PlainLoader(yaml.SafeLoader):  # type: ignore[misc,name-defined]
        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    "anchors and aliases (&name, *name) are not allowed in a definition",
                    event.start_mark,
                )
            return super().compose_node(parent, index)

    return PlainLoader


def _import_yaml() -> Any:
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("YAML support needs PyYAML: pip install 'statekit[yaml]'") from exc
    return yaml
