"""Export a statekit machine as a `transitions.Machine` (`to_transitions`).

What maps and what is lost: docs/interop-transitions.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from pydantic import BaseModel
from transitions import Machine as TransitionsMachine
from transitions.core import EventData
from transitions.core import Transition as TransitionsTransition

from statekit.branches import validate_payload
from statekit.clock import Clock, SystemClock
from statekit.definition import MachineSpec
from statekit.engine import Handler, Machine, verdict_reason
from statekit.entity import StateFields, restore_attributes, save_attributes
from statekit.errors import (
    DefinitionMismatchError,
    InvalidArgumentTypeError,
    PostconditionFailedError,
    PreconditionFailedError,
)
from statekit.records import Context

if TYPE_CHECKING:
    from transitions.core import CallbackList

logger = logging.getLogger("statekit")


@dataclass(slots=True)
class _Call:
    """What one trigger call carries across its callbacks."""

    context: Context
    saved: dict[str, object] | None = None


class _Bridge:
    """The statekit side of one exported machine, shared by all its adapters."""

    def __init__(self, spec: MachineSpec, machine: Machine | None, fields: StateFields) -> None:
        self.spec = spec
        self.machine = machine
        self.fields = fields
        self.clock: Clock = machine.clock if machine is not None else SystemClock()
        self.calls: WeakKeyDictionary[EventData, _Call] = WeakKeyDictionary()
        allowed: dict[str, dict[str, None]] = {s.name: {} for s in spec.states}
        for t in spec.transitions:
            for source in t.sources:
                allowed.setdefault(source, {})[t.event] = None
        self.allowed = {state: tuple(events) for state, events in allowed.items()}

    def key(self, entity: object) -> str | None:
        key = getattr(entity, self.fields.key, None)
        return None if key is None else str(key)

    def call(self, event_data: EventData) -> _Call:
        """Return this trigger call's context, validating its payload on first use."""
        call = self.calls.get(event_data)
        if call is None:
            transition = _transition(event_data)
            event = event_data.event.name
            payload: BaseModel | None = None
            if self.machine is not None:
                payload = validate_payload(  # the engine's own rule
                    self.machine.payload_models.get(event),
                    _payload_argument(event_data),
                    entity_type=self.machine.name,
                    key=self.key(event_data.model),
                    state=transition.source,
                    event=event,
                    allowed_events=self.machine.events_from(transition.source),
                )
            context = Context(
                event=event,
                source=transition.source,
                target=transition.dest or transition.source,
                payload=payload,
                now=self.clock.now(),
                entity_type=self.spec.name,
                key=self.key(event_data.model),
            )
            call = self.calls[event_data] = _Call(context)
        return call

    def restore(self, event_data: EventData) -> None:
        """Put the entity back as it was before the actions, if it was saved."""
        saved = self.call(event_data).saved
        if saved is not None:
            restore_attributes(event_data.model, saved)

    def context(self, event_data: EventData) -> Context:
        """Return the call's context aimed at the branch being tried."""
        context = self.call(event_data).context
        transition = _transition(event_data)
        context.target = transition.dest or transition.source
        return context


def _transition(event_data: EventData) -> TransitionsTransition:
    transition = event_data.transition
    if transition is None:  # pragma: no cover - transitions always sets it first
        raise RuntimeError("transitions called a transition callback outside a transition")
    return transition


def _payload_argument(event_data: EventData) -> dict[str, Any] | BaseModel:
    args = tuple(event_data.args)
    if not args:
        return dict(event_data.kwargs)
    if len(args) == 1 and isinstance(args[0], BaseModel) and not event_data.kwargs:
        return args[0]
    raise InvalidArgumentTypeError(
        "args",
        args,
        "keyword arguments, or one payload model instance",
        message=(
            f"event {event_data.event.name!r} takes its payload as keyword arguments "
            f"(or one payload model instance), not positional arguments ({len(args)} given)"
        ),
    )


class Adapter:
    """A callable handed to transitions; its class says which statekit part it is.

    `importer.py` reads an exported machine back through these classes (the public
    ones), so a round trip keeps the original names and handlers.
    """

    kind = "callback"

    def __init__(self, bridge: _Bridge, name: str, handler: Handler) -> None:
        self.bridge = bridge
        self.name = name
        self.handler = handler

    def __repr__(self) -> str:
        return f"<statekit {self.kind} {self.name!r}>"


class _Guard(Adapter):
    """`conditions` entry: passes when the statekit guard returns exactly True."""

    kind = "guard"

    def __call__(self, event_data: EventData) -> bool:
        verdict = self.handler(event_data.model, self.bridge.context(event_data))
        return verdict_reason("guard", self.name, verdict) is None


class _Unless(_Guard):
    """`unless` entry: transitions passes it when it returns False."""

    kind = "unless"


class PreconditionAdapter(Adapter):
    """First `before` entries: a failure rejects the event after the branch is chosen."""

    kind = "precondition"
    error: type[PreconditionFailedError | PostconditionFailedError] = PreconditionFailedError

    def __call__(self, event_data: EventData) -> None:
        context = self.bridge.context(event_data)
        try:
            reason = verdict_reason(self.kind, self.name, self.handler(event_data.model, context))
            if reason is not None:
                raise self.error(
                    entity_type=self.bridge.spec.name,
                    key=context.key,
                    state=context.source,
                    event=context.event,
                    allowed_events=self.bridge.allowed.get(context.source, ()),
                    condition=self.name,
                    reason=reason,
                )
        except BaseException:
            self.bridge.restore(event_data)
            raise


class PostconditionAdapter(PreconditionAdapter):
    """`after` entry: a failure restores the entity saved before the actions."""

    kind = "postcondition"
    error = PostconditionFailedError


class StageAdapter(Adapter):
    """`before` entry between pre-conditions and actions: saves the entity."""

    kind = "stage"

    def __call__(self, event_data: EventData) -> None:
        self.bridge.call(event_data).saved = save_attributes(event_data.model, self.bridge.fields)


class _Action(Adapter):
    """`before` entry: runs the action; restores the entity when it raises."""

    kind = "action"

    def __call__(self, event_data: EventData) -> None:
        try:
            self.handler(event_data.model, self.bridge.context(event_data))
        except BaseException:
            self.bridge.restore(event_data)
            raise


class _Effect(Adapter):
    """Last `after` entries: a failing effect is logged, as after a commit."""

    kind = "effect"

    def __call__(self, event_data: EventData) -> None:
        context = self.bridge.context(event_data)
        try:
            self.handler(event_data.model, context)
        except Exception:
            logger.exception(
                "effect %r of %s %s (%s) failed",
                self.name,
                context.entity_type,
                context.key,
                context.event,
                extra={
                    "entity_type": context.entity_type,
                    "entity_key": context.key,
                    "event": context.event,
                    "effect": self.name,
                },
            )


class PrepareAdapter(Adapter):
    """`prepare` entry: validates the payload before any condition runs."""

    kind = "prepare"

    def __init__(self, bridge: _Bridge, payload: str | None, model: type[BaseModel] | None) -> None:
        super().__init__(bridge, payload or "", _no_handler)
        self.payload = payload
        self.model = model

    def __call__(self, event_data: EventData) -> None:
        self.bridge.call(event_data)


def _no_handler(entity: Any, ctx: Context) -> None:  # pragma: no cover - never called
    raise NotImplementedError


def _late_bound(name: str) -> Handler:
    """A handler that calls the entity's method `name` with the context."""

    def call(entity: Any, ctx: Context) -> Any:
        return getattr(entity, name)(ctx)

    call.__name__ = name
    return call


def to_transitions(
    machine_or_spec: Machine | MachineSpec,
    model: object = None,
    *,
    ignore_invalid_triggers: bool | None = None,
    machine_cls: type[TransitionsMachine] = TransitionsMachine,
    fields: StateFields | None = None,
) -> TransitionsMachine:
    """Build a `transitions.Machine` that decides like the statekit machine.

    docs/interop-transitions.md lists what maps and what is lost.

    Args:
        machine_or_spec: A compiled `Machine` (its resolved callables and payload
            models are used) or a bare `MachineSpec` (names are late-bound to
            methods of the model, called as `entity.<name>(ctx)`).
        model: The object the transitions machine drives. It keeps its current
            state when it has one; otherwise it starts in the initial state. With
            None, the transitions machine is its own model, as in transitions.
        ignore_invalid_triggers: Passed to transitions: True makes events that are
            not allowed (or unknown) return False instead of raising.
        machine_cls: A `transitions.Machine` subclass to build, such as
            `transitions.extensions.GraphMachine`.
        fields: The entity's state attribute names; defaults to the machine's.

    Returns:
        The transitions machine, with the model added and its triggers bound.

    Raises:
        DefinitionMismatchError: the model's current state is not a state of
            the machine.
        ValueError: transitions refused a name (for example an event named like
            the state attribute).
    """
    if isinstance(machine_or_spec, Machine):
        machine: Machine | None = machine_or_spec
        spec = machine_or_spec.spec
        fields = fields or machine_or_spec.fields
    else:
        machine = None
        spec = machine_or_spec
        fields = fields or StateFields()
    bridge = _Bridge(spec, machine, fields)
    resolved: dict[str, Handler] = {}

    def resolve(name: str) -> Handler:
        # one handler per name; a compiled machine resolves names as the engine does
        if name not in resolved:
            found = _late_bound(name) if machine is None else machine.resolver.resolve(name)
            resolved[name] = found
        return resolved[name]

    initial = next((s.name for s in spec.states if s.initial), spec.states[0].name)
    tm = machine_cls(
        model=None,
        states=[{"name": s.name, "final": s.final} for s in spec.states],
        initial=initial,
        send_event=True,
        auto_transitions=False,
        ignore_invalid_triggers=ignore_invalid_triggers,
        name=spec.name,
        model_attribute=fields.state,
    )
    for t in spec.transitions:
        prepare: CallbackList = []
        if machine is not None:
            prepare.append(PrepareAdapter(bridge, t.payload, machine.payload_models.get(t.event)))
        elif t.payload is not None:
            prepare.append(PrepareAdapter(bridge, t.payload, None))
        before: CallbackList = [PreconditionAdapter(bridge, n, resolve(n)) for n in t.preconditions]
        if t.actions or t.postconditions:
            before.append(StageAdapter(bridge, "", _no_handler))
        before.extend(_Action(bridge, n, resolve(n)) for n in t.actions)
        after: CallbackList = [
            PostconditionAdapter(bridge, n, resolve(n)) for n in t.postconditions
        ]
        after.extend(_Effect(bridge, n, resolve(n)) for n in t.effects)
        tm.add_transition(
            t.event,
            list(dict.fromkeys(t.sources)),
            t.target,
            conditions=[_Guard(bridge, n, resolve(n)) for n in t.guards],
            unless=[_Unless(bridge, n, resolve(n)) for n in t.unless],
            before=before,
            after=after,
            prepare=prepare,
        )
    if model is None:
        tm.add_model(TransitionsMachine.self_literal)
    else:
        current = getattr(model, fields.state, None)
        if current is not None and current not in tm.states:
            raise DefinitionMismatchError(
                entity_type=spec.name,
                key=bridge.key(model),
                field="state",
                value=current,
                known=[s.name for s in spec.states],
            )
        tm.add_model(model, initial=current or initial)
    return tm
