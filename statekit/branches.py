"""A machine's transitions compiled for deciding: branches, verdicts and payloads.

`compile_branches` turns a spec's transitions into a table of `Branch`es per state and
event, with their handlers resolved and their payload models and timeouts attached,
and indexes the declared compensations. `verdict_reason` reads what a guard or
condition returned, `choose_branch` finds the branch whose guards pass when the first
one's refused, and `validate_payload` checks an event's payload against its model.
`Machine` (statekit.engine) builds these once and shares them with every entity.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from statekit.definition import MachineSpec, TransitionSpec
from statekit.errors import GuardRejectedError, InvalidPayloadError
from statekit.records import Context, Plan

__all__ = [
    "SYSTEM_BRANCH",
    "Branch",
    "BranchTable",
    "Handler",
    "Note",
    "SystemBranch",
    "choose_branch",
    "compile_branches",
    "note_payload",
    "unless_failure",
    "validate_payload",
    "verdict_reason",
]

Handler = Callable[[Any, Context], Any]
"""A guard, condition, action or effect: called as `handler(entity, context)`."""

Step = tuple[str, str, str]
"""A transition as it was taken: (source, event, target)."""


class Branch:
    """One compiled branch of an event from one state."""

    __slots__ = (
        "actions",
        "compensation",
        "effects",
        "event",
        "guards",
        "payload_model",
        "postconditions",
        "preconditions",
        "spec",
        "target",
        "timeout",
        "unless",
    )

    def __init__(
        self,
        spec: TransitionSpec,
        resolve: Callable[[str], Handler],
        payload_model: type[BaseModel] | None,
        timeout: timedelta | None,
    ) -> None:
        self.spec = spec
        self.event = spec.event
        self.target = spec.target
        self.guards = tuple((n, resolve(n)) for n in spec.guards)
        self.unless = tuple((n, resolve(n)) for n in spec.unless)
        self.preconditions = tuple((n, resolve(n)) for n in spec.preconditions)
        self.postconditions = tuple((n, resolve(n)) for n in spec.postconditions)
        self.actions = tuple(resolve(n) for n in spec.actions)
        self.effects = tuple((n, resolve(n)) for n in spec.effects)
        self.compensation = spec.compensation
        self.payload_model = payload_model
        self.timeout = timeout


class SystemBranch:
    """The branch of a system transition: no guards, actions, checks or effects."""

    __slots__ = ()
    actions: tuple[Handler, ...] = ()
    postconditions: tuple[tuple[str, Handler], ...] = ()
    effects: tuple[tuple[str, Handler], ...] = ()
    compensation: str | None = None


SYSTEM_BRANCH = SystemBranch()
"""The one (stateless) branch every system plan carries."""


class Note(BaseModel):
    """Payload of statekit's own transitions (stuck, resolve, retry, compensated)."""

    model_config = ConfigDict(frozen=True)

    note: str


@lru_cache(maxsize=1024)
def note_payload(text: str) -> Note:
    """The (immutable, shared) note payload for `text`: a sweep marks many instances
    stuck for the same reason, and a batch groups them by payload."""
    return Note.model_construct(note=text)  # a str: valid


def verdict_reason(kind: str, name: str, verdict: object) -> str | None:
    """Return None when a check (`kind` named `name`: a guard, a pre- or
    post-condition) passed, else the reason it gave.

    Raises:
        TypeError: the verdict is neither True, False nor a reason string.
    """
    if verdict is True:
        return None
    if verdict is False:
        return "returned False"
    if isinstance(verdict, str):
        return verdict or "returned an empty reason"
    raise TypeError(
        f"{kind} {name!r} returned {verdict!r}; it must return True, False or a reason string"
    )


def choose_branch(
    entity: object,
    plan: Plan,
    branches: tuple[Branch, ...],
    first_failure: tuple[str, str, str],
    allowed: Mapping[str, tuple[str, ...]],
) -> Branch:
    """Try the branches after the first, whose guards refused with `first_failure`
    (target, guard, reason); point `plan` at the first that passes and return it.

    Raises:
        GuardRejectedError: no branch passed; it lists every guard that said no.
    """
    rejections = [first_failure]
    for branch in branches[1:]:
        plan.target = branch.target
        failed = None
        for name, guard in branch.guards:
            verdict = guard(entity, plan)
            if verdict is not True:
                failed = (name, verdict_reason("guard", name, verdict) or "")
                break
        if failed is None and branch.unless:
            failed = unless_failure(branch, entity, plan)
        if failed is None:
            plan.branch = branch
            return branch
        rejections.append((branch.target, *failed))
    raise GuardRejectedError(
        entity_type=plan.entity_type,
        key=plan.key,
        state=plan.source,
        event=plan.event,
        allowed_events=allowed[plan.source],
        rejections=rejections,
    )


def unless_failure(branch: Branch, entity: object, ctx: Context) -> tuple[str, str] | None:
    """The first of `branch`'s 'unless' guards that holds, with why that refuses it."""
    for name, guard in branch.unless:
        if verdict_reason("guard", name, guard(entity, ctx)) is None:
            return name, "held, and it is an 'unless' guard"
    return None


def validate_payload(
    model: type[BaseModel] | None,
    payload: Mapping[str, Any] | BaseModel | None,
    *,
    entity_type: str,
    key: str | None,
    state: str,
    event: str,
    allowed_events: tuple[str, ...],
) -> BaseModel | None:
    """Check `payload` against the event's `model` (None: the event takes none) and
    return the validated model instance, or None when there is no payload.

    Raises:
        InvalidPayloadError: listing every field that is wrong or unexpected.
    """
    if model is None:
        if not payload:
            return None
        errors = [
            f"{name}: unexpected (event {event!r} declares no payload)"
            for name in (payload.model_dump() if isinstance(payload, BaseModel) else payload)
        ]
    else:
        if isinstance(payload, model):
            instance: BaseModel | None = payload
        else:
            raw = payload.model_dump() if isinstance(payload, BaseModel) else (payload or {})
            try:
                instance = model.model_validate(raw)
            except ValidationError as exc:
                instance = None
                errors = [
                    f"{'.'.join(str(p) for p in err['loc']) or '(payload)'}: {err['msg']}"
                    for err in exc.errors()
                ]
        if instance is not None:
            errors = unstorable_fields(instance)
            if not errors:
                return instance
    raise InvalidPayloadError(
        entity_type=entity_type,
        key=key,
        state=state,
        event=event,
        allowed_events=allowed_events,
        errors=errors,
    )


def _strict_json(data: object) -> None:
    """Raise ValueError unless `data` is JSON every database reads: finite numbers,
    Unicode text (a lone surrogate fails to encode: MariaDB's JSON check refuses it)."""
    json.dumps(data, allow_nan=False, ensure_ascii=False).encode("utf-8")


def unstorable_fields(payload: BaseModel) -> list[str]:
    """One error per field of a validated `payload` the history cannot hold as JSON:
    a value pydantic cannot dump, a non-finite number (JSON has no NaN or Infinity;
    SQLite would store it as text no other database reads, PostgreSQL and MariaDB
    refuse it) or a lone surrogate. Empty when the whole payload dumps."""
    try:
        _strict_json(payload.model_dump(mode="json"))
    except (ValueError, TypeError):  # PydanticSerializationError is a ValueError
        pass
    else:
        return []
    names = [*type(payload).model_fields, *(payload.model_extra or {})]
    errors = []
    for name in names:
        try:
            _strict_json(payload.model_dump(mode="json", include={name}))
        except (ValueError, TypeError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            errors.append(f"{name}: cannot be stored as JSON ({reason})")
    return errors or ["(payload): cannot be stored as JSON"]


@dataclass(frozen=True)
class BranchTable:
    """A machine's transitions, compiled: what `compile_branches` returns."""

    branches: dict[str, dict[str, tuple[Branch, ...]]]
    """state -> event -> the branches declared for it, in declaration order."""
    allowed: dict[str, tuple[str, ...]]
    """state -> the events declared from it, in declaration order."""
    payload_models: dict[str, type[BaseModel] | None]
    """event -> its payload model (None: it takes no payload)."""
    compensation_by_step: dict[Step, tuple[str, int]]
    """(source, event, target) -> (handler, attempts) of the branch that took it."""
    compensated_steps: dict[tuple[str, int], tuple[Step, ...]]
    """(handler, attempts) -> every step it undoes."""


def compile_branches(
    spec: MachineSpec,
    resolve: Callable[[str], Handler],
    payload_model: Callable[[str | None], type[BaseModel] | None],
    timeouts: Mapping[str, timedelta],
) -> BranchTable:
    """Compile `spec`'s transitions with their handlers (`resolve`), payload models
    (`payload_model`) and the timeouts of their targets (`timeouts`, state -> after).
    The spec must be valid and every name resolvable."""
    table: dict[str, dict[str, list[Branch]]] = {s.name: {} for s in spec.states}
    payload_models: dict[str, type[BaseModel] | None] = {}
    for t in spec.transitions:
        model = payload_model(t.payload)
        payload_models[t.event] = model
        branch = Branch(t, resolve, model, timeouts.get(t.target))
        for source in dict.fromkeys(t.sources):
            table[source].setdefault(t.event, []).append(branch)
    branches = {
        state: {event: tuple(found) for event, found in events.items()}
        for state, events in table.items()
    }
    # The first branch that declares a compensation for a step wins, as it does when
    # the step is looked up one at a time.
    by_step: dict[Step, tuple[str, int]] = {}
    for source, events in branches.items():
        for event, found in events.items():
            for branch in found:
                if branch.compensation is not None:
                    declared = (branch.compensation, branch.spec.compensation_attempts)
                    by_step.setdefault((source, event, branch.target), declared)
    steps: dict[tuple[str, int], list[Step]] = {}
    for step, declared in by_step.items():
        steps.setdefault(declared, []).append(step)
    return BranchTable(
        branches=branches,
        allowed={state: tuple(events) for state, events in branches.items()},
        payload_models=payload_models,
        compensation_by_step=by_step,
        compensated_steps={declared: tuple(found) for declared, found in steps.items()},
    )
