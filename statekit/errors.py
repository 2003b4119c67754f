"""The statekit exception tree.

Every error carries its facts as attributes (entity type and key, state, event,
allowed events, versions) so callers never parse messages; the message says the
same thing in one sentence.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from statekit.quoting import bounded_repr
from statekit.quoting import entity_label as _entity
from statekit.quoting import names_listed as _names
from statekit.quoting import shown as _shown

__all__ = [
    "CompensationError",
    "CompensationTimeoutError",
    "ConcurrentTransitionError",
    "DefinitionError",
    "DefinitionFormatError",
    "DefinitionMismatchError",
    "GuardRejectedError",
    "IdempotencyConflictError",
    "InstanceNotFoundError",
    "InvalidArgumentError",
    "InvalidArgumentTypeError",
    "InvalidPayloadError",
    "NestedTransitionError",
    "NotStartedError",
    "PostconditionFailedError",
    "PreconditionFailedError",
    "ProtectedStateError",
    "StatekitError",
    "StoreError",
    "SweeperError",
    "TransitionError",
    "TransitionNotAllowedError",
    "UnknownEventError",
    "UnknownMachineError",
    "UnstorableTextError",
]


class StatekitError(Exception):
    """Base class of every error statekit raises."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (type(self).__doc__ or type(self).__name__).strip())


class DefinitionError(StatekitError):
    """A machine definition breaks a rule; `problems` lists every offender."""

    def __init__(self, machine: str, problems: Sequence[str]) -> None:
        self.machine = machine
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"machine {bounded_repr(machine, 64)} is invalid ({len(self.problems)} problem"
            f"{'' if len(self.problems) == 1 else 's'}):\n{lines}"
        )


class DefinitionFormatError(DefinitionError):
    """A definition's data could not be read: malformed JSON or YAML, or fields of the
    wrong shape or out of bounds. `fields` names each offending field path; the
    input itself is never echoed beyond a short quote."""

    def __init__(self, machine: str, problems: Sequence[str], *, fields: Sequence[str]) -> None:
        self.fields = tuple(fields)
        super().__init__(machine, problems)


class TransitionError(StatekitError):
    """A transition was refused; nothing was changed."""

    def __init__(
        self,
        message: str,
        *,
        entity_type: str,
        key: str | None,
        state: str | None,
        event: str,
        allowed_events: Sequence[str] = (),
    ) -> None:
        self.entity_type = entity_type
        self.key = key
        self.state = state
        self.event = event
        self.allowed_events = tuple(allowed_events)
        super().__init__(message)


class NestedTransitionError(TransitionError):
    """An event was fired on an instance while one of its transitions was being
    decided or applied (from a guard, condition or action of that transition)."""

    def __init__(
        self,
        *,
        entity_type: str,
        key: str | None,
        state: str | None,
        event: str,
        applying: str,
    ) -> None:
        self.applying = applying
        super().__init__(
            f"cannot fire {event!r} on {_entity(entity_type, key)} in state {state!r} while "
            f"its {applying!r} transition is being applied (from that transition's guard, "
            f"condition or action); nothing was written. Fire it from an effect, which runs "
            f"after the commit",
            entity_type=entity_type,
            key=key,
            state=state,
            event=event,
        )


class UnknownEventError(TransitionError):
    """The event is not declared anywhere in the machine."""

    def __init__(
        self,
        *,
        entity_type: str,
        key: str | None,
        state: str | None,
        event: str,
        allowed_events: Sequence[str],
        known_events: Sequence[str],
    ) -> None:
        self.known_events = tuple(known_events)
        super().__init__(
            f"{_entity(entity_type, key)} has no event {event!r} (machine {entity_type!r} "
            f"declares: {_names(known_events)}); allowed in state {state!r}: "
            f"{_names(allowed_events)}",
            entity_type=entity_type,
            key=key,
            state=state,
            event=event,
            allowed_events=allowed_events,
        )


class TransitionNotAllowedError(TransitionError):
    """The event exists but is not allowed from the entity's current state."""

    def __init__(
        self,
        *,
        entity_type: str,
        key: str | None,
        state: str,
        event: str,
        allowed_events: Sequence[str],
    ) -> None:
        super().__init__(
            f"cannot fire {event!r} on {_entity(entity_type, key)} in state {state!r}; "
            f"allowed: {_names(allowed_events)}",
            entity_type=entity_type,
            key=key,
            state=state,
            event=event,
            allowed_events=allowed_events,
        )


class GuardRejectedError(TransitionError):
    """No branch of the event had all its guards pass.

    `rejections` holds one `(target, guard, reason)` triple per branch tried.
    """

    def __init__(
        self,
        *,
        entity_type: str,
        key: str | None,
        state: str,
        event: str,
        allowed_events: Sequence[str],
        rejections: Sequence[tuple[str, str, str]],
    ) -> None:
        self.rejections = tuple(rejections)
        detail = "; ".join(
            f"guard {guard!r} (to {target!r}) said: {reason}"
            for target, guard, reason in rejections
        )
        super().__init__(
            f"cannot fire {event!r} on {_entity(entity_type, key)} in state {state!r}: {detail}",
            entity_type=entity_type,
            key=key,
            state=state,
            event=event,
            allowed_events=allowed_events,
        )


class _ConditionFailedError(TransitionError):
    kind = "condition"

    def __init__(
        self,
        *,
        entity_type: str,
        key: str | None,
        state: str,
        event: str,
        allowed_events: Sequence[str],
        condition: str,
        reason: str,
    ) -> None:
        self.condition = condition
        self.reason = reason
        super().__init__(
            f"cannot fire {event!r} on {_entity(entity_type, key)} in state {state!r}: "
            f"{self.kind} {condition!r} failed: {reason}",
            entity_type=entity_type,
            key=key,
            state=state,
            event=event,
            allowed_events=allowed_events,
        )


class PreconditionFailedError(_ConditionFailedError):
    """A pre-condition of the transition did not hold; nothing ran."""

    kind = "pre-condition"


class PostconditionFailedError(_ConditionFailedError):
    """A post-condition did not hold; the entity was restored and nothing written."""

    kind = "post-condition"


class InvalidPayloadError(TransitionError):
    """The event's payload failed validation; `errors` lists each bad field."""

    def __init__(
        self,
        *,
        entity_type: str,
        key: str | None,
        state: str | None,
        event: str,
        allowed_events: Sequence[str],
        errors: Sequence[str],
    ) -> None:
        self.errors = tuple(errors)
        super().__init__(
            f"invalid payload for {event!r} on {_entity(entity_type, key)}: " + "; ".join(errors),
            entity_type=entity_type,
            key=key,
            state=state,
            event=event,
            allowed_events=allowed_events,
        )


class NotStartedError(TransitionError):
    """The entity has no state yet: start it before firing events."""

    def __init__(self, *, entity_type: str, key: str | None, event: str) -> None:
        super().__init__(
            f"{_entity(entity_type, key)} has no state; start it before firing {event!r}",
            entity_type=entity_type,
            key=key,
            state=None,
            event=event,
        )


class IdempotencyConflictError(TransitionError):
    """An idempotency key already recorded for a different event was reused."""

    def __init__(
        self,
        *,
        entity_type: str,
        key: str | None,
        state: str | None,
        event: str,
        idempotency_key: str,
        recorded_event: str,
    ) -> None:
        self.idempotency_key = idempotency_key
        self.recorded_event = recorded_event
        super().__init__(
            f"idempotency key {idempotency_key!r} on {_entity(entity_type, key)} was already "
            f"used for {recorded_event!r}; cannot reuse it for {event!r}",
            entity_type=entity_type,
            key=key,
            state=state,
            event=event,
        )


CREATE_EVENT = "(create)"
"""The `event` of a `ConcurrentTransitionError` raised when a started instance is
stored a second time (`Store.create`)."""


class StoreError(StatekitError):
    """The store failed; the backend's exception, if any, is in `__cause__`."""


class ConcurrentTransitionError(StoreError):
    """Another writer changed the entity first; reload and decide again."""

    def __init__(
        self,
        *,
        entity_type: str,
        key: str,
        event: str,
        expected_version: int,
        actual_version: int | None,
    ) -> None:
        self.entity_type = entity_type
        self.key = key
        self.event = event
        self.expected_version = expected_version
        self.actual_version = actual_version
        actual = "unknown" if actual_version is None else str(actual_version)
        if event == CREATE_EVENT:
            super().__init__(
                f"cannot start {_entity(entity_type, key)}: it is already stored (at version "
                f"{actual}); another start won"
            )
            return
        if actual_version is not None and actual_version < expected_version:
            super().__init__(
                f"cannot fire {event!r} on {_entity(entity_type, key)}: expected version "
                f"{expected_version} but the store has {actual}; the object is ahead of "
                "the store (a transaction that wrote it rolled back): reload it"
            )
            return
        super().__init__(
            f"cannot fire {event!r} on {_entity(entity_type, key)}: expected version "
            f"{expected_version} but the store has {actual}; another transition won"
        )


class ProtectedStateError(StoreError):
    """The entity's state was changed in memory outside a transition: statekit writes
    nothing from it. Fire events to change the state; reload an entity you changed.

    `state` is the state in memory, `stored_state` the one the store holds; `event`
    is the event that was refused (None where a plain save was refused).
    """

    def __init__(
        self,
        message: str | None = None,
        *,
        entity_type: str,
        key: str | None,
        state: str | None,
        stored_state: str | None,
        event: str | None = None,
    ) -> None:
        self.entity_type = entity_type
        self.key = key
        self.state = state
        self.stored_state = stored_state
        self.event = event
        if message is None:
            message = (
                f"cannot fire {event!r} on {_entity(entity_type, key)}: its state was "
                f"changed outside a transition (the entity has {state!r}, the store "
                f"{stored_state!r} at the same version); reload it, and change the state "
                "only by firing events"
            )
        super().__init__(message)


class UnknownMachineError(StoreError, LookupError):
    """No machine of this name is registered where it was asked for (a store, a CLI
    host, a framework's models); `known` lists the names there are."""

    def __init__(self, names: Sequence[str], *, known: Iterable[str]) -> None:
        self.names = tuple(names)
        self.known = tuple(sorted(known))
        asked = ", ".join(bounded_repr(name) for name in self.names)
        plural = "s" if len(self.names) > 1 else ""
        super().__init__(f"unknown machine{plural} {asked}; known: {_names(self.known)}")


class InstanceNotFoundError(StoreError):
    """No stored instance has this key."""

    def __init__(self, *, entity_type: str, key: str) -> None:
        self.entity_type = entity_type
        self.key = key
        super().__init__(f"{_entity(entity_type, key)} not found")


class DefinitionMismatchError(StoreError):
    """A stored state, definition version or state version is unknown to the machine
    (or impossible); `expected` says what is allowed where `known` cannot list it."""

    def __init__(
        self,
        *,
        entity_type: str,
        key: str | None,
        field: str,
        value: object,
        known: Sequence[object] = (),
        expected: str | None = None,
    ) -> None:
        self.entity_type = entity_type
        self.key = key
        self.field = field
        self.value = value
        self.known = tuple(known)
        self.expected = expected
        if expected is not None:
            message = f"{_entity(entity_type, key)} has {field} {value!r}; {expected}"
        else:
            message = (
                f"{_entity(entity_type, key)} has {field} {value!r}, which machine "
                f"{entity_type!r} does not know (known: {', '.join(map(str, known)) or 'none'})"
            )
        super().__init__(message)


class InvalidArgumentError(StatekitError, ValueError):
    """statekit was given an argument or setting it does not accept. `argument` names
    it, `value` is what was given and `allowed` says what is accepted. Also a
    `ValueError`, as these refusals were before they joined the tree."""

    def __init__(
        self, argument: str, value: object, allowed: str, *, message: str | None = None
    ) -> None:
        self.argument = argument
        self.value = value
        self.allowed = allowed
        super().__init__(message or f"{argument}={_shown(value)} refused: {allowed}")


class InvalidArgumentTypeError(InvalidArgumentError, TypeError):
    """An `InvalidArgumentError` for an argument of the wrong type; also a `TypeError`."""


class UnstorableTextError(StoreError, InvalidArgumentError):
    """A key or label (idempotency key, actor, correlation id) that statekit's
    history cannot hold alike on every database: too long, a NUL, a lone surrogate.
    Refused before anything is written: a `StoreError`, as the store would have
    refused it, and an `InvalidArgumentError` (`argument`, `value`, `allowed`), as it
    is the caller's input (Flask answers 422)."""

    def __init__(self, argument: str, value: object, allowed: str, *, message: str) -> None:
        InvalidArgumentError.__init__(self, argument, value, allowed, message=message)


class SweeperError(StatekitError):
    """A sweeper lever (`compensate`, `retry`) refused an instance in its current
    state: `lever`, `entity_type`, `key` and `state` say which, the message why."""

    def __init__(
        self, message: str, *, lever: str, entity_type: str, key: str, state: str | None
    ) -> None:
        self.lever = lever
        self.entity_type = entity_type
        self.key = key
        self.state = state
        super().__init__(message)


class CompensationError(StatekitError):
    """A compensation could not be completed."""


class CompensationTimeoutError(CompensationError):
    """A compensation handler did not return within the sweeper's handler timeout.

    The attempt counts as failed; the handler's thread cannot be stopped and may
    still finish, but nothing it writes through the entity's Session is committed.
    """

    def __init__(
        self, *, entity_type: str, key: str, step: int, action: str, timeout: float
    ) -> None:
        self.entity_type = entity_type
        self.key = key
        self.step = step
        self.action = action
        self.timeout = timeout
        super().__init__(
            f"compensation {action!r} of {_entity(entity_type, key)} step {step} did not return "
            f"within {timeout:g}s (handler_timeout); counted as a failed attempt"
        )
