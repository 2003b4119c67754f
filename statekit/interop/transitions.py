"""A bridge to the `transitions` library: export a statekit machine, import theirs.

`to_transitions` builds a `transitions.Machine` that makes the same decisions as a
statekit `Machine`; `from_transitions` reads a `transitions.Machine` back into a
`MachineSpec` plus the named handlers it needs, ready for `statekit.Machine`.

How statekit maps onto transitions (`to_transitions`):

- states, the initial state and final states map one to one (`State(final=True)`).
- each `TransitionSpec` is one `add_transition(event, sources, target)` call, in
  declaration order. transitions tries the transitions of a trigger from a state in
  the order they were added, so statekit's "first branch whose guards pass wins"
  holds.
- guards become `conditions` and `unless` guards become `unless`, evaluated in the
  same order. The exported machine uses `send_event=True`: each condition is an
  adapter that calls `guard(entity, ctx)` and passes only when it returns exactly
  True (False or a reason string fail, anything else raises `TypeError`, as in
  statekit). `ctx` is a statekit `Context` built from the event data.
- the payload is validated against the event's payload model by a `prepare`
  callback, before any condition runs; trigger keyword arguments (or one payload
  model instance as the only positional argument) are the payload. An invalid
  payload raises `InvalidPayloadError` out of the trigger, as `Machine.fire` does.
- pre-conditions become the first `before` callbacks. `before` runs only once
  transitions has picked the branch, so a failing pre-condition cannot fall
  through to a later branch: it raises `PreconditionFailedError` out of the
  trigger and the state is unchanged, as in statekit.
- actions are the next `before` callbacks; post-conditions and effects are `after`
  callbacks. As in `Machine.stage`, the entity is saved before the first action
  and restored exactly when an action raises or a post-condition fails (which
  raises `PostconditionFailedError`). Effects run last; a failing effect is logged
  on the `statekit` logger, not raised.
- given a compiled `Machine`, the adapters call its resolved callables; given a
  bare `MachineSpec`, every name is late-bound to a method of the model, called
  as `entity.<name>(ctx)` (statekit's `entity_type` convention), and payloads are
  not validated (no model to validate with; `ctx.payload` is None).

What has no equivalent in transitions (lost on export):

- timeouts: transitions' `Timeout` state runs a `threading.Timer` in the process;
  statekit deadlines live in the store and are swept, so none is exported.
- compensations (and the compensated state), the definition version and compatible
  versions, descriptions.
- the other state columns: transitions sets only the state attribute; the version,
  `state_entered_at`, deadline and stuck columns are not maintained.
- persistence, history, idempotency and optimistic locking.
- `may_<event>()` checks the payload and the guards but not pre-conditions (they
  run in `before`), and it raises `InvalidPayloadError` where `can_fire` returns
  False. Refusals look different too: an event not allowed in the state raises
  `MachineError`, an undeclared event raises `AttributeError` from
  `model.trigger(...)`, and rejected guards make the trigger return False instead
  of raising `GuardRejectedError` (with `ignore_invalid_triggers=True` the first
  two return False as well).

How transitions maps onto statekit (`from_transitions`):

- states (by name; Enum states are imported by their member names), the initial
  state and the states marked `final`. Extra final states may be named with
  `final=`: statekit requires every state without a way out to be final.
- each `Transition` object is a branch of its trigger. Transitions of one trigger
  that differ only in their source are merged into one `TransitionSpec` with
  several sources. The order of branches from each source state is kept exactly
  (it is all that decides behaviour); across source states transitions stores
  no order, so branches are listed trigger by trigger.
- conditions become guards and unless-conditions `unless` guards. A string names a
  model method (or a dotted import path), resolved on the entity at each call as
  transitions does; a callable keeps its `__name__` (made unique) or gets a
  generated name. Each handler calls the original with the calling convention of
  the machine (`send_event`): a real `EventData` or the trigger's keyword
  arguments, and compares the result as transitions does (`== True`, or
  `== False` for unless). statekit evaluates all guards before all unless
  guards; an interleaved condition list keeps its outcome but not its order.
- `before` callbacks become actions; `after` callbacks become effects (they run
  after the state change, but a failing one is logged, not raised). Internal
  transitions (`dest=None`) become self-transitions.
- trigger arguments reach handlers only through a payload model: pass
  `payload=` (for example a model with `extra="allow"`) and every event declares it.
- `to_<state>` auto transitions are left out unless `include_auto_transitions`.
- a machine exported by `to_transitions` comes back with its original names,
  handlers, pre- and post-conditions and payload models; timeouts, compensations,
  descriptions and versions were lost on export.

What is refused: per-transition `prepare` callbacks, state `on_enter`/`on_exit`
callbacks and machine-wide callbacks have no statekit equivalent (statekit has no
state hooks and its guards must not act). `from_transitions` raises a
`DefinitionError` naming each of them unless `drop_unsupported=True`. Nested
(hierarchical) machines are refused with `TypeError`.

The imported spec is not repaired: when the transitions machine breaks a statekit
rule, `statekit.Machine(spec, handlers)` (or `.compile()`) raises `DefinitionError`
naming every offender. Typical ones: a terminal state not marked final ("non-final
state 'x' has no way out"), a state nothing leads to ("state 'x' is unreachable"),
transitions' implicit `initial` state when the machine was built without
`initial=` ("non-final state 'initial' has no way out"), and an unguarded branch
before a guarded one ("event 'go' is ambiguous").

The bridge reuses the engine's own verdict rule, payload validation and
save/restore, so the exported machine cannot drift from `Machine.fire`.
"""

from __future__ import annotations

import logging
import operator
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple
from weakref import WeakKeyDictionary

from pydantic import BaseModel
from transitions import Machine as TransitionsMachine
from transitions.core import EventData
from transitions.core import Transition as TransitionsTransition

from statekit.clock import Clock, SystemClock
from statekit.definition import HANDLER_NAME, MachineSpec, StateSpec, TransitionSpec, is_name
from statekit.engine import Handler, Machine, StateFields, _failure, _restore, _save
from statekit.errors import (
    DefinitionError,
    DefinitionMismatchError,
    PostconditionFailedError,
    PreconditionFailedError,
)
from statekit.records import Context

if TYPE_CHECKING:
    from transitions.core import CallbackList

__all__ = ["ImportedMachine", "from_transitions", "to_transitions"]

logger = logging.getLogger("statekit")

# -- export ----------------------------------------------------------------------------


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
                payload = self.machine._validate_payload(  # the engine's own rule
                    self.machine.payload_models.get(event),
                    _payload_argument(event_data),
                    transition.source,
                    event,
                    self.key(event_data.model),
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
            _restore(event_data.model, saved)

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
    raise TypeError(
        f"event {event_data.event.name!r} takes its payload as keyword arguments "
        "(or one payload model instance), not positional arguments"
    )


class _Callback:
    """A callable handed to transitions; its class says which statekit part it is."""

    kind = "callback"

    def __init__(self, bridge: _Bridge, name: str, handler: Handler) -> None:
        self.bridge = bridge
        self.name = name
        self.handler = handler

    def __repr__(self) -> str:
        return f"<statekit {self.kind} {self.name!r}>"


class _Guard(_Callback):
    """`conditions` entry: passes when the statekit guard returns exactly True."""

    kind = "guard"

    def __call__(self, event_data: EventData) -> bool:
        verdict = self.handler(event_data.model, self.bridge.context(event_data))
        return _failure("guard", self.name, verdict) is None


class _Unless(_Guard):
    """`unless` entry: transitions passes it when it returns False."""

    kind = "unless"


class _Precondition(_Callback):
    """First `before` entries: a failure rejects the event after the branch is chosen."""

    kind = "precondition"
    error: type[PreconditionFailedError | PostconditionFailedError] = PreconditionFailedError

    def __call__(self, event_data: EventData) -> None:
        context = self.bridge.context(event_data)
        try:
            reason = _failure(self.kind, self.name, self.handler(event_data.model, context))
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


class _Postcondition(_Precondition):
    """`after` entry: a failure restores the entity saved before the actions."""

    kind = "postcondition"
    error = PostconditionFailedError


class _Stage(_Callback):
    """`before` entry between pre-conditions and actions: saves the entity."""

    kind = "stage"

    def __call__(self, event_data: EventData) -> None:
        self.bridge.call(event_data).saved = _save(event_data.model, self.bridge.fields)


class _Action(_Callback):
    """`before` entry: runs the action; restores the entity when it raises."""

    kind = "action"

    def __call__(self, event_data: EventData) -> None:
        try:
            self.handler(event_data.model, self.bridge.context(event_data))
        except BaseException:
            self.bridge.restore(event_data)
            raise


class _Effect(_Callback):
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


class _Prepare(_Callback):
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

    The module docstring lists what maps and what is lost.

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
            resolved[name] = _late_bound(name) if machine is None else machine._resolve(name)
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
            prepare.append(_Prepare(bridge, t.payload, machine.payload_models.get(t.event)))
        elif t.payload is not None:
            prepare.append(_Prepare(bridge, t.payload, None))
        before: CallbackList = [_Precondition(bridge, n, resolve(n)) for n in t.preconditions]
        if t.actions or t.postconditions:
            before.append(_Stage(bridge, "", _no_handler))
        before.extend(_Action(bridge, n, resolve(n)) for n in t.actions)
        after: CallbackList = [_Postcondition(bridge, n, resolve(n)) for n in t.postconditions]
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


# -- import ----------------------------------------------------------------------------


class ImportedMachine(NamedTuple):
    """What `from_transitions` returns: unpack it as `spec, handlers`, or compile it."""

    spec: MachineSpec
    handlers: dict[str, Callable[..., Any]]

    def compile(self, **options: Any) -> Machine:
        """Compile the imported spec with its handlers.

        Args:
            **options: Passed to `statekit.Machine` (`fields`, `clock`, ...).

        Returns:
            The compiled machine.

        Raises:
            DefinitionError: the transitions machine breaks a statekit rule; every
                offender is named.
        """
        return Machine(self.spec, self.handlers, **options)


class _Names:
    """Stable, unique handler names for the callables of one imported machine."""

    def __init__(self) -> None:
        self.handlers: dict[str, Callable[..., Any]] = {}
        self._given: dict[tuple[str, object], str] = {}

    def add(self, base: str, identity: object, make: Callable[[], Callable[..., Any]]) -> str:
        """Name the handler for `identity` (same identity, same name), building it once."""
        try:
            hash(identity)
        except TypeError:
            identity = id(identity)
        marker = (base, identity)
        if marker in self._given:
            return self._given[marker]
        name = re.sub(r"\W", "_", base)[:100]
        if not HANDLER_NAME.fullmatch(name):  # digits first, private or dunder
            name = f"handler_{name}"
        candidate, n = name, 1
        while candidate in self.handlers:
            n += 1
            candidate = f"{name}_{n}"
        self.handlers[candidate] = make()
        self._given[marker] = candidate
        return candidate


def _callable_name(func: object, fallback: str) -> str:
    if isinstance(func, str):
        return func.rsplit(".", 1)[-1]
    name = getattr(func, "__name__", None) or getattr(getattr(func, "func", None), "__name__", "")
    return fallback if not name or name == "<lambda>" else str(name)


class _Foreign:
    """Calls a transitions callback (string or callable) on behalf of statekit."""

    def __init__(self, tm: TransitionsMachine, func: Any, after: bool) -> None:
        self.tm = tm
        self.func = func
        self.after = after

    def invoke(self, entity: object, ctx: Context) -> Any:
        kwargs = ctx.payload.model_dump() if ctx.payload is not None else {}
        state = self.tm.get_state(ctx.target if self.after else ctx.source)
        event_data = EventData(state, self.tm.events[ctx.event], self.tm, entity, (), kwargs)
        candidates = self.tm.events[ctx.event].transitions.get(ctx.source, [])
        event_data.transition = next(
            (t for t in candidates if (t.dest or t.source) == ctx.target), None
        )
        func = self.tm.resolve_callable(self.func, event_data)
        if self.tm.send_event:
            return func(event_data)
        return func(**kwargs)


def _condition_handler(tm: TransitionsMachine, func: Any, target: bool) -> Handler:
    foreign = _Foreign(tm, func, after=False)

    def check(entity: Any, ctx: Context) -> bool:
        met = bool(operator.eq(foreign.invoke(entity, ctx), target))
        return met if target else not met

    return check


def _callback_handler(tm: TransitionsMachine, func: Any, after: bool) -> Handler:
    foreign = _Foreign(tm, func, after)

    def run(entity: Any, ctx: Context) -> None:
        foreign.invoke(entity, ctx)

    return run


class _Importer:
    def __init__(
        self, tm: TransitionsMachine, payload: type[BaseModel] | None, drop_unsupported: bool
    ) -> None:
        self.tm = tm
        self.payload = payload
        self.drop = drop_unsupported
        self.names = _Names()
        self.problems: list[str] = []

    def unsupported(self, what: str) -> None:
        if not self.drop:
            self.problems.append(f"{what} has no statekit equivalent")

    def handler(self, func: Any, kind: str, where: str) -> str:
        """Name (and register) the statekit handler for one transitions callback."""
        if isinstance(func, _Callback):  # exported by to_transitions: the original
            return self.names.add(func.name, func.handler, lambda: func.handler)
        base = _callable_name(func, where)
        if kind in ("guard", "unless"):
            target = kind == "guard"
            return self.names.add(
                base, (func, kind), lambda: _condition_handler(self.tm, func, target)
            )
        after = kind == "effect"
        return self.names.add(base, (func, kind), lambda: _callback_handler(self.tm, func, after))

    def branch(self, event: str, t: TransitionsTransition) -> TransitionSpec:
        """The statekit branch for one transitions `Transition` (from one source)."""
        where = f"{event}_{t.source}"
        guards: list[str] = []
        unless: list[str] = []
        for condition in t.conditions:
            kind = "guard" if condition.target else "unless"
            (guards if condition.target else unless).append(
                self.handler(condition.func, kind, f"{where}_{kind}")
            )
        pre: list[str] = []
        actions: list[str] = []
        for func in t.before:
            if isinstance(func, _Precondition):
                pre.append(self.handler(func, "precondition", where))
            elif not isinstance(func, _Stage):
                actions.append(self.handler(func, "action", f"{where}_action"))
        post: list[str] = []
        effects: list[str] = []
        for func in t.after:
            if isinstance(func, _Postcondition):
                post.append(self.handler(func, "postcondition", where))
            else:
                effects.append(self.handler(func, "effect", f"{where}_effect"))
        payload: type[BaseModel] | str | None = self.payload
        for func in t.prepare:
            if isinstance(func, _Prepare):
                payload = func.model or func.payload or payload
            else:
                self.unsupported(f"'prepare' callback {func!r} of {event!r} from {t.source!r}")
        if isinstance(payload, type):
            self.names.handlers.setdefault(payload.__name__, payload)
            payload = payload.__name__
        return TransitionSpec(
            event=event,
            sources=(t.source,),
            target=t.dest if t.dest is not None else t.source,
            guards=tuple(guards),
            unless=tuple(unless),
            preconditions=tuple(pre),
            postconditions=tuple(post),
            actions=tuple(actions),
            effects=tuple(effects),
            payload=payload,
        )

    def event(
        self, name: str, per_source: dict[str, list[TransitionsTransition]]
    ) -> list[TransitionSpec]:
        """Merge the per-source branch lists of one trigger, keeping each list's order:
        repeatedly take the first pending branch and every source whose next branch
        is the same apart from its source."""
        queues = {
            source: [self.branch(name, t) for t in transitions]
            for source, transitions in per_source.items()
            if transitions
        }
        merged: list[TransitionSpec] = []
        while any(queues.values()):
            head = next(q[0] for q in queues.values() if q)
            sources: list[str] = []
            for source, queue in queues.items():
                if queue and _same_but_source(queue[0], head):
                    queue.pop(0)
                    sources.append(source)
            merged.append(head.model_copy(update={"sources": tuple(sources)}))
        return merged


def _same_but_source(one: TransitionSpec, other: TransitionSpec) -> bool:
    return one.model_dump(exclude={"sources"}) == other.model_dump(exclude={"sources"})


def _auto_transition_names(tm: TransitionsMachine) -> set[str]:
    if not tm.auto_transitions:
        return set()
    prefix = "to_" if tm.model_attribute == "state" else f"to_{tm.model_attribute}_"
    return {prefix + name for name in tm.states}


def _machine_wide_callbacks(tm: TransitionsMachine) -> Iterable[tuple[str, list[Any]]]:
    for name in (
        "prepare_event",
        "before_state_change",
        "after_state_change",
        "finalize_event",
        "on_exception",
        "on_final",
    ):
        yield name, list(getattr(tm, name, None) or [])


def from_transitions(
    tm: TransitionsMachine,
    name: str,
    version: int = 1,
    *,
    final: Collection[str] = (),
    payload: type[BaseModel] | None = None,
    include_auto_transitions: bool = False,
    drop_unsupported: bool = False,
) -> ImportedMachine:
    """Read a `transitions.Machine` into a statekit spec and its handlers.

    The module docstring lists what maps and what is lost. The spec is not
    repaired: compiling it raises `DefinitionError` for every statekit rule the
    transitions machine breaks.

    Args:
        tm: The transitions machine (any model it drives is not needed).
        name: The statekit machine name.
        version: The definition version.
        final: States to mark final besides those transitions marks final.
        payload: A payload model every imported event declares; trigger keyword
            arguments then reach imported callbacks (use `extra="allow"` to take
            any arguments).
        include_auto_transitions: Keep the `to_<state>` triggers transitions adds.
        drop_unsupported: Drop callbacks with no statekit equivalent instead of
            refusing the machine.

    Returns:
        `ImportedMachine(spec, handlers)`; `.compile()` gives a `statekit.Machine`.

    Raises:
        TypeError: `tm` is a hierarchical (nested) machine.
        DefinitionError: a state or trigger name is not an identifier, a name in
            `final` is not a state, or (without `drop_unsupported`) the machine
            uses callbacks statekit cannot express; every offender is listed.
    """
    from transitions.extensions.nesting import HierarchicalMachine

    if isinstance(tm, HierarchicalMachine):
        raise TypeError("nested (hierarchical) transitions machines cannot be imported")
    importer = _Importer(tm, payload, drop_unsupported)
    problems = importer.problems
    state_names = list(tm.states)
    problems.extend(
        f"state {s!r} is not a valid statekit name" for s in state_names if not is_name(s)
    )
    problems.extend(f"'final' names unknown state {s!r}" for s in final if s not in state_names)
    for callback_name, callbacks in _machine_wide_callbacks(tm):
        if callbacks:
            importer.unsupported(f"machine-wide {callback_name!r} callback(s)")
    for state in tm.states.values():
        for hook in ("on_enter", "on_exit"):
            if getattr(state, hook):
                importer.unsupported(f"{hook!r} callback(s) of state {state.name!r}")

    skipped = set() if include_auto_transitions else _auto_transition_names(tm)
    branches: list[TransitionSpec] = []
    for trigger, event in tm.events.items():
        if trigger in skipped:
            continue
        if not is_name(trigger):
            problems.append(f"trigger {trigger!r} is not a valid statekit event name")
            continue
        branches.extend(importer.event(trigger, event.transitions))
    if problems:
        raise DefinitionError(name, problems)
    initial = tm.initial
    spec = MachineSpec(
        name=name,
        version=version,
        states=tuple(
            StateSpec(
                name=s,
                initial=s == initial,
                final=bool(getattr(state, "final", False)) or s in final,
            )
            for s, state in zip(state_names, tm.states.values(), strict=True)
        ),
        transitions=tuple(branches),
    )
    return ImportedMachine(spec, importer.names.handlers)
