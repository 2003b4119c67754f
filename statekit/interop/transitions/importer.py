"""Read a `transitions.Machine` back into a statekit spec (`from_transitions`).

What maps, what is refused and what a round trip keeps: docs/interop-transitions.md.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Collection, Iterable
from typing import Any, NamedTuple

from pydantic import BaseModel
from transitions import Machine as TransitionsMachine
from transitions.core import EventData
from transitions.core import Transition as TransitionsTransition

from statekit.definition import HANDLER_NAME, MachineSpec, StateSpec, TransitionSpec, is_name
from statekit.engine import Handler, Machine
from statekit.errors import DefinitionError, InvalidArgumentTypeError
from statekit.interop.transitions.export import (
    Adapter,
    PostconditionAdapter,
    PreconditionAdapter,
    PrepareAdapter,
    StageAdapter,
)
from statekit.records import Context


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
        if isinstance(func, Adapter):  # exported by to_transitions: the original
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
            if isinstance(func, PreconditionAdapter):
                pre.append(self.handler(func, "precondition", where))
            elif not isinstance(func, StageAdapter):
                actions.append(self.handler(func, "action", f"{where}_action"))
        post: list[str] = []
        effects: list[str] = []
        for func in t.after:
            if isinstance(func, PostconditionAdapter):
                post.append(self.handler(func, "postcondition", where))
            else:
                effects.append(self.handler(func, "effect", f"{where}_effect"))
        payload: type[BaseModel] | str | None = self.payload
        for func in t.prepare:
            if isinstance(func, PrepareAdapter):
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

    docs/interop-transitions.md lists what maps and what is lost. The spec is not
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
        InvalidArgumentTypeError: `tm` is a hierarchical (nested) machine (also a
            TypeError).
        DefinitionError: a state or trigger name is not an identifier, a name in
            `final` is not a state, or (without `drop_unsupported`) the machine
            uses callbacks statekit cannot express; every offender is listed.
    """
    from transitions.extensions.nesting import HierarchicalMachine

    if isinstance(tm, HierarchicalMachine):
        raise InvalidArgumentTypeError(
            "tm",
            tm,
            "a flat transitions Machine",
            message=(
                f"{type(tm).__name__} is a nested (hierarchical) transitions machine and "
                "cannot be imported; statekit imports flat machines"
            ),
        )
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
