"""Class syntax for declaring a machine; it compiles to a `MachineSpec` and a `Machine`.

    class OrderWorkflow(Workflow, name="order"):
        pending = State(initial=True)
        paid = State(final=True)
        pay = pending.to(paid, guard=payment_authorized)

The class is compiled when it is defined: a broken definition fails at import time
with a `DefinitionError`, and `OrderWorkflow.machine` is the one shared `Machine`.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel

from statekit.compensation import CompensationContext
from statekit.definition import HANDLER_NAME, MachineSpec, StateSpec, TimeoutSpec, TransitionSpec
from statekit.engine import Machine
from statekit.entity import StateFields
from statekit.errors import DefinitionError, DefinitionFormatError, InvalidArgumentTypeError
from statekit.limits import HANDLER_NAME_MAX
from statekit.records import Context

__all__ = ["Event", "State", "Transition", "Workflow"]

E = TypeVar("E")
"""The entity type the handlers of one transition share."""

Check = Callable[[E, Context], bool | str]
"""A guard or a pre/post-condition: `check(entity, ctx)` returns True, False or why not."""
Step = Callable[[E, Context], object]
"""An action or an effect: `step(entity, ctx)`; what it returns is ignored."""
Undo = Callable[[E, CompensationContext], object]
"""A compensation: `undo(entity, undo_context)`; what it returns is ignored."""

Ref = str | Callable[..., Any]
"""A handler, or the name of one (a function of the class's module or `handlers=`, or
a method of the entity)."""
Refs = Ref | Sequence[Ref] | None
Checks = str | Check[E] | Sequence[str | Check[E]] | None
Steps = str | Step[E] | Sequence[str | Step[E]] | None


class State:
    """A declared state; its attribute name in the workflow class is its name.

    Args:
        initial: The state new instances start in (exactly one per machine).
        final: No transition may leave it.
        timeout: How long an instance may stay here (a `timedelta`).
        on_timeout: Event the sweeper fires when the timeout passes; without it the
            instance is marked stuck and its completed steps are compensated.
        description: Free text for diagrams and docs.
    """

    def __init__(
        self,
        *,
        initial: bool = False,
        final: bool = False,
        timeout: timedelta | None = None,
        on_timeout: str | None = None,
        description: str = "",
    ) -> None:
        if on_timeout is not None and timeout is None:
            raise InvalidArgumentTypeError(
                "on_timeout",
                on_timeout,
                "State(on_timeout=...) needs a timeout as well",
                message=(
                    f"State(on_timeout={on_timeout!r}) needs a timeout as well: "
                    "State(timeout=timedelta(...), on_timeout=...)"
                ),
            )
        self.name = ""
        self.initial = initial
        self.final = final
        self.timeout = timeout
        self.on_timeout = on_timeout
        self.description = description

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"State({self.name or '?'})"

    def __or__(self, other: State | Sources) -> Sources:
        return Sources((self,)) | other

    def to(
        self,
        target: State,
        *,
        guard: Checks[E] = None,
        unless: Checks[E] = None,
        pre: Checks[E] = None,
        post: Checks[E] = None,
        action: Steps[E] = None,
        effect: Steps[E] = None,
        compensate: str | Undo[E] | None = None,
        compensate_attempts: int = 5,
        payload: type[BaseModel] | str | None = None,
        description: str = "",
    ) -> Transition:
        """Declare a transition from this state to `target` (see `Transition`).

        `compensate` names the handler that undoes this step when the instance is
        compensated; it is tried up to `compensate_attempts` times.
        """
        return Sources((self,)).to(
            target,
            guard=guard,
            unless=unless,
            pre=pre,
            post=post,
            action=action,
            effect=effect,
            compensate=compensate,
            compensate_attempts=compensate_attempts,
            payload=payload,
            description=description,
        )

    def to_self(self, **options: Any) -> Transition:
        """Declare a transition that leaves and re-enters this state."""
        return self.to(self, **options)


class Sources:
    """Several source states joined with `|`: `(pending | paid).to(cancelled)`."""

    def __init__(self, states: tuple[State, ...]) -> None:
        self.states = states

    def __or__(self, other: State | Sources) -> Sources:
        more = other.states if isinstance(other, Sources) else (other,)
        return Sources(self.states + more)

    def to(self, target: State, **options: Any) -> Transition:
        """Declare a transition from every one of these states to `target`."""
        return Transition(self.states, target, options)


class Transition:
    """One branch of an event; join branches with `|` to make a guarded choice."""

    def __init__(self, sources: tuple[State, ...], target: State, options: dict[str, Any]) -> None:
        self.sources = sources
        self.target = target
        self.options = options

    def __or__(self, other: Transition | Event) -> Event:
        return Event((self,)) | other


class Event:
    """Branches of one event, tried in order; the first whose guards pass wins."""

    def __init__(self, branches: tuple[Transition, ...]) -> None:
        self.branches = branches

    def __or__(self, other: Transition | Event) -> Event:
        more = other.branches if isinstance(other, Event) else (other,)
        return Event(self.branches + more)


def _default_name(cls_name: str) -> str:
    base = re.sub(r"(Workflow|Machine|Flow)$", "", cls_name) or cls_name
    return re.sub(r"(?<!^)(?=[A-Z])", "_", base).lower()


class _Registry:
    """Names for the callables and models a declaration references."""

    def __init__(self, namespace: dict[str, Any]) -> None:
        self.objects: dict[str, object] = {}
        self.problems: list[str] = []
        for name, value in namespace.items():
            if isinstance(value, staticmethod):
                self.objects[name] = value.__func__
            elif inspect.isfunction(value) or (
                isinstance(value, type) and issubclass(value, BaseModel)
            ):
                self.objects[name] = value

    def name_of(self, ref: Ref | type[BaseModel], where: str) -> str:
        """The spec's name for `ref`: a string as given; a callable's or model's own
        name without leading underscores (spec names are never private); a generated
        `<event>_<option>_<n>` for a lambda or a name that is not a plain identifier."""
        if isinstance(ref, str):
            return ref
        if isinstance(ref, staticmethod):  # referenced inside the class body
            ref = ref.__func__
        name = str(getattr(ref, "__name__", "")).lstrip("_")
        if len(name) > HANDLER_NAME_MAX or not HANDLER_NAME.fullmatch(name):
            name = f"{where.replace('.', '_')}_{len(self.objects)}"
        known = self.objects.get(name)
        if known is not None and known is not ref:
            self.problems.append(f"{where}: two different callables are both named {name!r}")
        self.objects[name] = ref
        return name

    def names(self, refs: Refs, where: str) -> tuple[str, ...]:
        if refs is None:
            return ()
        items: Iterable[Ref] = (refs,) if isinstance(refs, str) or callable(refs) else refs
        return tuple(self.name_of(r, where) for r in items)


def _build_spec(
    cls: type,
    *,
    name: str,
    version: int,
    compatible_versions: Sequence[int],
    compensated_state: str | None,
    registry: _Registry,
    problems: list[str],
) -> MachineSpec | None:
    """The class's spec; appends to `problems` (and returns None when no spec can be
    built) instead of stopping at the first offender."""
    states: list[StateSpec] = []
    transitions: list[TransitionSpec] = []
    attributes = vars(cls)
    for attr, value in attributes.items():
        if isinstance(value, State):
            try:
                timeout = None
                if value.timeout is not None:
                    timeout = TimeoutSpec(after=value.timeout, event=value.on_timeout)
                states.append(
                    StateSpec(
                        name=attr,
                        initial=value.initial,
                        final=value.final,
                        timeout=timeout,
                        description=value.description,
                    )
                )
            except DefinitionFormatError as exc:
                problems.extend(f"state {attr!r}: {p}" for p in exc.problems)
        elif isinstance(value, Transition | Event):
            branches = value.branches if isinstance(value, Event) else (value,)
            for branch in branches:
                used = (*branch.sources, branch.target)
                if any(attributes.get(s.name) is not s for s in used):
                    problems.append(
                        f"event {attr!r} uses a State that is not an attribute of the workflow "
                        "(declare every state it leaves or enters in this class)"
                    )
                    continue
                try:
                    transitions.append(_branch_spec(attr, branch, registry))
                except DefinitionFormatError as exc:
                    problems.extend(f"event {attr!r}: {p}" for p in exc.problems)
    if not any(isinstance(value, State) for value in attributes.values()):
        problems.append("no states declared (declare State attributes on the class)")
    if problems and not states:
        return None
    fields: dict[str, Any] = {
        "name": name,
        "version": version,
        "compatible_versions": tuple(compatible_versions),
        "states": tuple(states),
        "transitions": tuple(transitions),
        "compensated_state": compensated_state,
        "description": inspect.cleandoc(cls.__doc__ or ""),
    }
    try:
        return MachineSpec(**fields)
    except DefinitionFormatError as exc:
        problems.extend(exc.problems)
        if set(exc.fields) != {"name"}:
            return None
    try:  # only the name is wrong: still check the rest of the definition
        return MachineSpec(**{**fields, "name": "unnamed"})
    except DefinitionFormatError:  # pragma: no cover - the same fields passed above
        return None


def _branch_spec(event: str, branch: Transition, registry: _Registry) -> TransitionSpec:
    opts = branch.options
    unknown = sorted(set(opts) - _OPTIONS)
    if unknown:
        known = ", ".join(sorted(_OPTIONS))
        raise InvalidArgumentTypeError(
            "options",
            unknown,
            f"known: {known}",
            message=f"event {event!r}: unknown option(s) {', '.join(unknown)} (known: {known})",
        )
    payload = opts.get("payload")
    compensate = opts.get("compensate")
    return TransitionSpec(
        event=event,
        sources=tuple(s.name for s in branch.sources),
        target=branch.target.name,
        guards=registry.names(opts.get("guard"), f"{event}.guard"),
        unless=registry.names(opts.get("unless"), f"{event}.unless"),
        preconditions=registry.names(opts.get("pre"), f"{event}.pre"),
        postconditions=registry.names(opts.get("post"), f"{event}.post"),
        actions=registry.names(opts.get("action"), f"{event}.action"),
        effects=registry.names(opts.get("effect"), f"{event}.effect"),
        compensation=None
        if compensate is None
        else registry.name_of(compensate, f"{event}.compensate"),
        compensation_attempts=opts.get("compensate_attempts", 5),
        payload=None if payload is None else registry.name_of(payload, f"{event}.payload"),
        description=opts.get("description", ""),
    )


_OPTIONS = frozenset(
    {
        "guard",
        "unless",
        "pre",
        "post",
        "action",
        "effect",
        "compensate",
        "compensate_attempts",
        "payload",
        "description",
    }
)


class Workflow:
    """Base class for declaring a machine with class syntax.

    Class keywords: `name` (defaults to the class name in snake case without a
    `Workflow` suffix), `version`, `compatible_versions`, `compensated_state` (the
    final state an instance enters once its compensations are done), `entity` (a class whose
    methods string references may name), `handlers` (extra places to look names
    up) and `fields` (a `StateFields` naming the entity's state attributes).

    Raises:
        DefinitionError: when the class is defined, listing every problem.
    """

    spec: ClassVar[MachineSpec]
    machine: ClassVar[Machine]

    def __init_subclass__(
        cls,
        *,
        name: str | None = None,
        version: int = 1,
        compatible_versions: Sequence[int] = (),
        compensated_state: str | None = None,
        entity: type | None = None,
        handlers: object = None,
        fields: StateFields | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        registry = _Registry(dict(vars(cls)))
        machine_name = name or _default_name(cls.__name__)
        problems: list[str] = []
        spec = _build_spec(
            cls,
            name=machine_name,
            version=version,
            compatible_versions=compatible_versions,
            compensated_state=compensated_state,
            registry=registry,
            problems=problems,
        )
        problems.extend(registry.problems)
        sources: list[object] = [registry.objects]
        if handlers is not None:
            sources.append(handlers)
        if spec is not None:
            try:
                machine = Machine(spec, sources, entity_type=entity, fields=fields)
            except DefinitionError as exc:
                problems.extend(exc.problems)
        if problems or spec is None:
            raise DefinitionError(machine_name, problems)
        cls.spec = spec
        cls.machine = machine
