"""The data form of a machine: frozen pydantic specs that round-trip to JSON and YAML.

A spec names its callables (guards, conditions, actions, effects, compensations,
payload models) by string; `statekit.engine.Machine` resolves the names once, when
it compiles the spec, and rejects a missing one.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["MachineSpec", "StateSpec", "TimeoutSpec", "TransitionSpec"]

_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TimeoutSpec(_Frozen):
    """How long an instance may stay in a state, and what happens when it overstays.

    With `event` set, the sweeper fires that event; without it, the instance is
    marked stuck and the compensations of its completed steps are scheduled.
    """

    after: timedelta
    event: str | None = Field(default=None, pattern=_NAME_PATTERN)

    @field_validator("after")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("a timeout must be positive")
        return value


class StateSpec(_Frozen):
    """One declared state."""

    name: str = Field(pattern=_NAME_PATTERN)
    initial: bool = False
    final: bool = False
    timeout: TimeoutSpec | None = None
    description: str = ""


class TransitionSpec(_Frozen):
    """One branch of an event: from any of `sources` to `target`.

    Branches of the same event from the same state are tried in declaration order;
    the first whose guards all pass (and whose `unless` guards all fail) wins.
    """

    event: str = Field(pattern=_NAME_PATTERN)
    sources: tuple[str, ...] = Field(min_length=1)
    target: str = Field(pattern=_NAME_PATTERN)
    guards: tuple[str, ...] = ()
    unless: tuple[str, ...] = ()
    preconditions: tuple[str, ...] = ()
    postconditions: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    effects: tuple[str, ...] = ()
    compensation: str | None = None
    compensation_attempts: int = Field(default=5, ge=1)
    payload: str | None = None
    description: str = ""


class MachineSpec(_Frozen):
    """A whole machine: name, version, states and transitions."""

    name: str = Field(pattern=_NAME_PATTERN)
    version: int = Field(default=1, ge=1)
    compatible_versions: tuple[int, ...] = ()
    states: tuple[StateSpec, ...] = Field(min_length=1)
    transitions: tuple[TransitionSpec, ...] = ()
    compensated_state: str | None = Field(default=None, pattern=_NAME_PATTERN)
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
    def from_json(cls, text: str | bytes) -> MachineSpec:
        """Parse JSON text produced by `to_json` (or written by hand)."""
        return cls.model_validate_json(text)

    def to_yaml(self) -> str:
        """Serialise to YAML text (needs the `yaml` extra)."""
        yaml = _import_yaml()
        return str(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_yaml(cls, text: str) -> MachineSpec:
        """Parse YAML with the safe loader only (needs the `yaml` extra)."""
        yaml = _import_yaml()
        return cls.model_validate(yaml.safe_load(text))


def _import_yaml() -> Any:
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("YAML support needs PyYAML: pip install 'statekit[yaml]'") from exc
    return yaml
