"""The compiled machine: validated once, shared by every entity, deciding transitions.

`Machine(spec, handlers)` checks the spec, resolves every named callable and builds
dispatch tables. It holds no per-entity data: an entity is any object with the
state attributes named by `StateFields`, and readying one costs nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from functools import lru_cache
from operator import attrgetter
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from statekit.clock import Clock, SystemClock
from statekit.definition import MachineSpec, TransitionSpec
from statekit.entity import (
    StateFields,
    StateWriter,
    attribute_writer,
    restore_attributes,
    save_attributes,
)
from statekit.errors import (
    DefinitionError,
    DefinitionMismatchError,
    GuardRejectedError,
    InvalidPayloadError,
    NotStartedError,
    PostconditionFailedError,
    PreconditionFailedError,
    StatekitError,
    TransitionNotAllowedError,
    UnknownEventError,
)
from statekit.records import Context, Plan, Snapshot
from statekit.validation import graph_problems, reference_problems, signature_problems

__all__ = [
    "Handler",
    "Machine",
    "Note",
    "check_version",
    "verdict_reason",
]

logger = logging.getLogger("statekit")

Handler = Callable[[Any, Context], Any]
"""A guard, condition, action or effect: called as `handler(entity, context)`."""

_MISSING = object()


class _Branch:
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


class Note(BaseModel):
    """Payload of statekit's own transitions (stuck, resolve, retry, compensated)."""

    model_config = ConfigDict(frozen=True)

    note: str


@lru_cache(maxsize=1024)
def _note(text: str) -> Note:
    """The (immutable, shared) note payload for `text`: a sweep marks many instances
    stuck for the same reason, and a batch groups them by payload."""
    return Note.model_construct(note=text)  # a str: valid


class _SystemBranch:
    """The branch of a system transition: no guards, actions, checks or effects."""

    __slots__ = ()
    actions: tuple[Handler, ...] = ()
    postconditions: tuple[tuple[str, Handler], ...] = ()
    effects: tuple[tuple[str, Handler], ...] = ()
    compensation: str | None = None


_SYSTEM_BRANCH = _SystemBranch()


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


def check_version(entity_type: str, key: str | None, version: object) -> None:
    """Refuse a stored state version no transition can follow: anything but a whole
    number from 0 up (None counts as 0, an entity not yet stored).

    Raises:
        DefinitionMismatchError: naming the entity and the version.
    """
    if version is None or (type(version) is int and version >= 0):
        return
    raise DefinitionMismatchError(
        entity_type=entity_type,
        key=key,
        field="state version",
        value=version,
        expected=(
            "a state version counts the instance's transitions, a whole number from 0 up; "
            "repair the row (its history has one row per version) before firing again"
        ),
    )


class Machine:
    """A compiled, immutable machine. Build one per definition and share it.

    Args:
        spec: The machine's definition.
        handlers: Where named callables and payload models are found: a mapping of
            name to object, any object (module, class) whose attributes are looked up,
            or a list of those searched in order.
        entity_type: Optional entity class; names not found in `handlers` resolve to
            its methods, called as `entity.method(context)`.
        fields: Attribute names of the state columns on the entity.
        clock: Where `fire`, `start` and `can_fire` read the time.

    Raises:
        DefinitionError: listing every rule the spec breaks and every name that
            cannot be resolved.
    """

    def __init__(
        self,
        spec: MachineSpec,
        handlers: object = None,
        *,
        entity_type: type | None = None,
        fields: StateFields | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.version = spec.version
        self.fields = fields or StateFields()
        self.clock: Clock = clock or SystemClock()
        self._lookup = _lookup_in(handlers)
        self._entity_type = entity_type

        problems = graph_problems(spec)
        missing = reference_problems(spec, self._exists)
        problems.extend(missing)
        if not missing:
            problems.extend(signature_problems(spec, self._handler_to_check))
        if problems:
            raise DefinitionError(spec.name, problems)

        self.states = tuple(s.name for s in spec.states)
        self.initial = next(s.name for s in spec.states if s.initial)
        self.final_states = frozenset(s.name for s in spec.states if s.final)
        self.events = spec.event_names
        self._known_events = frozenset(self.events)
        self._accepted_versions = spec.accepted_versions
        self.timeouts = {s.name: s.timeout for s in spec.states if s.timeout is not None}
        self.compensated_state = spec.compensated_state
        self.compensations: dict[str, object] = {
            t.compensation: self._resolve_object(t.compensation)
            for t in spec.transitions
            if t.compensation is not None
        }
        self.payload_models: dict[str, type[BaseModel] | None] = {}
        table: dict[str, dict[str, list[_Branch]]] = {name: {} for name in self.states}
        for t in spec.transitions:
            model = self._payload_model(t.payload)
            self.payload_models[t.event] = model
            timeout = self.timeouts.get(t.target)
            branch = _Branch(t, self._resolve, model, timeout.after if timeout else None)
            for source in dict.fromkeys(t.sources):
                table[source].setdefault(t.event, []).append(branch)
        self._table: dict[str, dict[str, tuple[_Branch, ...]]] = {
            state: {event: tuple(bs) for event, bs in events.items()}
            for state, events in table.items()
        }
        self._allowed = {state: tuple(events) for state, events in self._table.items()}
        # (source, event, target) -> (handler, attempts); the first branch that
        # declares one wins, as it does when the step is looked up one at a time.
        self._compensation_by_step: dict[tuple[str, str, str], tuple[str, int]] = {}
        for source, events in self._table.items():
            for event, branches in events.items():
                for branch in branches:
                    if branch.compensation is not None:
                        declared = (branch.compensation, branch.spec.compensation_attempts)
                        step = (source, event, branch.target)
                        self._compensation_by_step.setdefault(step, declared)
        steps: dict[tuple[str, int], list[tuple[str, str, str]]] = {}
        for step, declared in self._compensation_by_step.items():
            steps.setdefault(declared, []).append(step)
        self.compensated_steps = {declared: tuple(found) for declared, found in steps.items()}
        """Every declared compensation, (handler, attempts) -> the steps (source,
        event, target) it undoes, so a store can schedule an instance's
        compensations from its history rows without reading them back."""
        f = self.fields
        self._read_decision = attrgetter(f.state, f.version, f.definition_version, f.key)
        self._state_names = f.state_attributes()
        self._read_state = attrgetter(*self._state_names)
        self._write_state = attribute_writer(self._state_names)

    def __repr__(self) -> str:
        return f"<Machine {self.name} v{self.version}: {len(self.states)} states>"

    # -- name resolution -------------------------------------------------------------

    def _resolve_object(self, name: str) -> object:
        found = self._lookup(name)
        if found is not _MISSING:
            return found
        if self._entity_type is not None and callable(getattr(self._entity_type, name, None)):
            return _entity_method(name)
        raise LookupError(name)

    def _resolve(self, name: str) -> Handler:
        handler = self._resolve_object(name)
        return handler  # type: ignore[return-value]  # checked callable by _exists

    def _handler_to_check(self, name: str) -> Callable[..., object] | None:
        """The function behind `name` as the signature check should see it."""
        found = self._lookup(name)
        if found is not _MISSING:
            return found if callable(found) else None
        method = getattr(self._entity_type, name, None)
        return method if callable(method) else None

    def _exists(self, kind: str, name: str) -> bool:
        if kind == "payload":
            found = self._lookup(name)
            return isinstance(found, type) and issubclass(found, BaseModel)
        try:
            return callable(self._resolve_object(name))
        except LookupError:
            return False

    def _payload_model(self, name: str | None) -> type[BaseModel] | None:
        if name is None:
            return None
        model = self._lookup(name)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):  # pragma: no cover
            raise LookupError(name)  # reference_problems rejected this already
        return model

    # -- reading entities ------------------------------------------------------------

    def key_of(self, entity: object) -> str | None:
        """Return the entity's key as text, or None when it has none yet."""
        key = getattr(entity, self.fields.key, None)
        return None if key is None else str(key)

    def state_of(self, entity: object) -> str | None:
        """Return the entity's current state name (None when not started)."""
        state: str | None = getattr(entity, self.fields.state, None)
        return state

    def snapshot(self, entity: object) -> Snapshot:
        """Read the entity's state attributes into a `Snapshot`.

        Raises:
            NotStartedError: the entity has no state.
            DefinitionMismatchError: its state or definition version is unknown here.
        """
        f = self.fields
        state = getattr(entity, f.state, None)
        key = self.key_of(entity)
        if state is None:
            raise NotStartedError(entity_type=self.name, key=key, event="(snapshot)")
        self._check_known(entity, state, key)
        return Snapshot(
            entity_type=self.name,
            key=key or "",
            state=state,
            version=getattr(entity, f.version, 0) or 0,
            entered_at=getattr(entity, f.entered_at, None),
            deadline_at=getattr(entity, f.deadline_at, None),
            stuck_at=getattr(entity, f.stuck_at, None),
            stuck_reason=getattr(entity, f.stuck_reason, None),
            definition_version=getattr(entity, f.definition_version, None),
        )

    def _check_known(self, entity: object, state: str, key: str | None) -> None:
        check_version(self.name, key, getattr(entity, self.fields.version, None))
        stored = getattr(entity, self.fields.definition_version, None)
        self._check_stored(state, stored, key)

    def _check_stored(self, state: str, stored: int | None, key: str | None) -> None:
        """Raise `DefinitionMismatchError` for a state or definition version this
        machine does not know."""
        if state not in self._table:
            raise DefinitionMismatchError(
                entity_type=self.name, key=key, field="state", value=state, known=self.states
            )
        if stored is not None and stored not in self._accepted_versions:
            raise DefinitionMismatchError(
                entity_type=self.name,
                key=key,
                field="definition version",
                value=stored,
                known=sorted(self._accepted_versions),
            )

    def system_plan(
        self,
        entity: object,
        event: str,
        target: str,
        *,
        now: datetime,
        actor: str | None,
        note: str | None = None,
        stuck_reason: str | None = None,
    ) -> Plan:
        """Plan one of statekit's own transitions (`@stuck`, `@resolve`, `@retry`,
        `@compensated`): no guards or handlers run, but it is versioned and recorded
        like any other. A stuck plan clears the deadline so the sweeper skips it;
        marking stuck in place keeps the instance's entry time. `entity` may be the
        entity object or its stored `Snapshot`.

        Raises:
            NotStartedError, DefinitionMismatchError: as for `decide`.
            ValueError: `target` is not a declared state.
        """
        if isinstance(entity, Snapshot):
            snapshot = entity
            check_version(self.name, snapshot.key, snapshot.version)
            self._check_stored(snapshot.state, snapshot.definition_version, snapshot.key)
        else:
            snapshot = self.snapshot(entity)
        if target not in self._table:
            raise ValueError(f"machine {self.name!r} has no state {target!r}")
        timeout = self.timeouts.get(target)
        deadline = None if stuck_reason is not None or timeout is None else now + timeout.after
        payload = None if note is None else _note(note)
        key = snapshot.key or None
        # A stuck mark in place is no move: the instance keeps its entry time.
        entered_at = None
        if stuck_reason is not None and target == snapshot.state:
            entered_at = snapshot.entered_at or now
        return Plan(
            event,
            snapshot.state,
            target,
            payload,
            now,
            actor,
            self.name,
            key,
            snapshot.version,
            deadline,
            self.version,
            _SYSTEM_BRANCH,
            None,
            None,
            stuck_reason,
            entered_at,
        )

    def compensation_of(self, source: str, event: str, target: str) -> tuple[str, int] | None:
        """The compensation (handler name, attempts) declared on the branch that
        took `source --event--> target`, or None."""
        return self._compensation_by_step.get((source, event, target))

    def events_from(self, state: str) -> tuple[str, ...]:
        """Events declared from `state`, in declaration order (empty if unknown)."""
        return self._allowed.get(state, ())

    def allowed_events(self, entity: object) -> tuple[str, ...]:
        """Events declared from the entity's current state, in declaration order.

        Guards are not evaluated (use `can_fire` for that); never raises.
        """
        try:
            return self._allowed.get(getattr(entity, self.fields.state, None), ())  # type: ignore[arg-type]
        except Exception:  # an unhashable state, a property that raises: "never raises"
            return ()

    def can_fire(self, entity: object, event: str, **payload: Any) -> bool:
        """Whether `fire(entity, event, **payload)` would be accepted now. statekit's
        refusals (any `StatekitError`) are False; any other exception (a bug in a guard,
        an entity whose state cannot be read) propagates instead of reading as "no"."""
        return self.can_fire_at(entity, event, payload, self.clock.now())

    def can_fire_at(
        self, entity: object, event: str, payload: Mapping[str, Any], now: datetime
    ) -> bool:
        """`can_fire` by a given clock reading (the `Runner` passes its own)."""
        try:
            self.decide(entity, event, dict(payload), now=now)
        except StatekitError:  # statekit's own "no": a refusal, or a state it does not know
            return False
        return True

    # -- deciding --------------------------------------------------------------------

    def decide(
        self,
        entity: object,
        event: str,
        payload: Mapping[str, Any] | BaseModel | None = None,
        *,
        now: datetime,
        actor: str | None = None,
        correlation_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Plan:
        """Decide what firing `event` on `entity` would do; change nothing.

        Reads the entity's state attributes, validates the payload, evaluates guards
        (first passing branch wins) and pre-conditions, and returns the `Plan`.

        Raises:
            NotStartedError, DefinitionMismatchError, UnknownEventError,
            TransitionNotAllowedError, InvalidPayloadError, GuardRejectedError,
            PreconditionFailedError: each naming the entity, state and event.
        """
        try:
            state, version, stored_definition, key_value = self._read_decision(entity)
        except AttributeError:  # a plain object without some of the attributes
            f = self.fields
            state, version, stored_definition, key_value = (
                getattr(entity, name, None)
                for name in (f.state, f.version, f.definition_version, f.key)
            )
        events = self._table.get(state)
        if (
            events is None
            or (stored_definition is not None and stored_definition not in self._accepted_versions)
            or (version is not None and (type(version) is not int or version < 0))
        ):
            if state is None:
                raise NotStartedError(entity_type=self.name, key=self.key_of(entity), event=event)
            self._check_known(entity, state, self.key_of(entity))
        assert events is not None  # narrowed: _check_known raised otherwise
        branches = events.get(event)
        if branches is None:
            self._refuse(entity, state, event)
        assert branches is not None  # _refuse always raises
        key = None if key_value is None else str(key_value)

        model = branches[0].payload_model
        if model is None and not payload:
            data = None
        else:
            data = self._validate_payload(model, payload, state, event, key)
        # The plan is also the context handed to guards and conditions. It starts on
        # the first branch; `_choose` moves it along when that branch's guards say no.
        first = branches[0]
        plan = Plan(
            event,
            state,
            first.target,
            data,
            now,
            actor,
            self.name,
            key,
            version or 0,
            None,
            self.version,
            first,
            correlation_id,
            idempotency_key,
        )
        chosen = first
        for name, guard in first.guards:
            verdict = guard(entity, plan)
            if verdict is not True:
                failure = (first.target, name, verdict_reason("guard", name, verdict) or "")
                chosen = self._choose(entity, plan, branches, failure)
                break
        else:
            if first.unless:
                failed = self._unless_failure(first, entity, plan)
                if failed is not None:
                    chosen = self._choose(entity, plan, branches, (first.target, *failed))
        for name, check in chosen.preconditions:
            reason = verdict_reason("pre-condition", name, check(entity, plan))
            if reason is not None:
                raise PreconditionFailedError(
                    entity_type=self.name,
                    key=key,
                    state=state,
                    event=event,
                    allowed_events=self._allowed[state],
                    condition=name,
                    reason=reason,
                )
        timeout = chosen.timeout
        if timeout is not None:
            plan.deadline_at = now + timeout
        return plan

    def _choose(
        self,
        entity: object,
        plan: Plan,
        branches: tuple[_Branch, ...],
        first_failure: tuple[str, str, str],
    ) -> _Branch:
        """Try the branches after the first, whose guards refused with `first_failure`
        (target, guard, reason); point `plan` at the first that passes.

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
                failed = self._unless_failure(branch, entity, plan)
            if failed is None:
                plan.branch = branch
                return branch
            rejections.append((branch.target, *failed))
        raise GuardRejectedError(
            entity_type=self.name,
            key=plan.key,
            state=plan.source,
            event=plan.event,
            allowed_events=self._allowed[plan.source],
            rejections=rejections,
        )

    @staticmethod
    def _unless_failure(branch: _Branch, entity: object, ctx: Context) -> tuple[str, str] | None:
        for name, guard in branch.unless:
            if verdict_reason("guard", name, guard(entity, ctx)) is None:
                return name, "held, and it is an 'unless' guard"
        return None

    def _refuse(self, entity: object, state: str, event: str) -> None:
        key = self.key_of(entity)
        allowed = self._allowed[state]
        if event in self._known_events:
            raise TransitionNotAllowedError(
                entity_type=self.name, key=key, state=state, event=event, allowed_events=allowed
            )
        raise UnknownEventError(
            entity_type=self.name,
            key=key,
            state=state,
            event=event,
            allowed_events=allowed,
            known_events=self.events,
        )

    def _validate_payload(
        self,
        model: type[BaseModel] | None,
        payload: Mapping[str, Any] | BaseModel | None,
        state: str,
        event: str,
        key: str | None,
    ) -> BaseModel | None:
        if model is None:
            if not payload:
                return None
            errors = [
                f"{name}: unexpected (event {event!r} declares no payload)"
                for name in (payload.model_dump() if isinstance(payload, BaseModel) else payload)
            ]
        elif isinstance(payload, model):
            return payload
        else:
            raw = payload.model_dump() if isinstance(payload, BaseModel) else (payload or {})
            try:
                return model.model_validate(raw)
            except ValidationError as exc:
                errors = [
                    f"{'.'.join(str(p) for p in err['loc']) or '(payload)'}: {err['msg']}"
                    for err in exc.errors()
                ]
        raise InvalidPayloadError(
            entity_type=self.name,
            key=key,
            state=state,
            event=event,
            allowed_events=self._allowed[state],
            errors=errors,
        )

    # -- applying to the entity in memory --------------------------------------------

    def start(self, entity: object, *, now: datetime | None = None) -> Snapshot:
        """Put a new entity into the initial state at version 0 and return its snapshot."""
        moment = now or self.clock.now()
        timeout = self.timeouts.get(self.initial)
        deadline = moment + timeout.after if timeout else None
        self._write_state(entity, self.initial, 0, moment, deadline, None, None, self.version)
        return self.snapshot(entity)

    def stage(
        self, entity: object, plan: Plan, *, write: StateWriter | None = None
    ) -> Callable[[], None]:
        """Run the plan's actions, move the entity to its target state in memory and
        check post-conditions. Returns a function that restores the entity exactly.

        `write`, when given, sets the state attributes (and restores them) when
        nothing else changes: a store passes one for entities it loaded itself
        (see `Store`).

        Raises:
            PostconditionFailedError: after restoring the entity.
        """
        branch: _Branch = plan.branch
        if not branch.actions and not branch.postconditions:
            # Only the state attributes change: save and restore just those.
            try:
                before = self._read_state(entity)
            except AttributeError:
                saved = save_attributes(entity, self.fields)
            else:
                put = write or self._write_state
                self._write_plan(put, entity, plan)
                return lambda: put(entity, *before)
        else:
            saved = save_attributes(entity, self.fields)

        def restore() -> None:
            restore_attributes(entity, saved)

        ctx = plan.context
        try:
            for action in branch.actions:
                action(entity, ctx)
            self.write_snapshot(entity, plan)
            for name, check in branch.postconditions:
                reason = verdict_reason("post-condition", name, check(entity, ctx))
                if reason is not None:
                    raise PostconditionFailedError(
                        entity_type=self.name,
                        key=plan.key,
                        state=plan.source,
                        event=plan.event,
                        allowed_events=self._allowed[plan.source],
                        condition=name,
                        reason=reason,
                    )
        except BaseException:
            restore()
            raise
        return restore

    def write_snapshot(self, entity: object, plan: Plan) -> None:
        """Set the entity's state attributes to what `plan` leaves behind."""
        self._write_plan(self._write_state, entity, plan)

    @staticmethod
    def _write_plan(write: StateWriter, entity: object, plan: Plan) -> None:
        at = plan.now
        stuck = plan.stuck_reason
        write(
            entity,
            plan.target,
            plan.expected_version + 1,
            plan.entered,
            plan.deadline_at,
            None if stuck is None else at,
            stuck,
            plan.definition_version,
        )

    def run_effects(
        self,
        entity: object,
        plan: Plan,
        on_failure: Callable[[str, Exception], None] | None = None,
    ) -> None:
        """Run the plan's after-commit effects. A failing effect is logged at ERROR and
        passed to `on_failure`, not raised: the transition it follows is committed."""
        branch: _Branch = plan.branch
        for name, effect in branch.effects:
            try:
                effect(entity, plan.context)
            except Exception as exc:
                logger.exception(
                    "effect %r of %s %s (%s) failed after commit",
                    name,
                    plan.entity_type,
                    plan.key,
                    plan.event,
                    extra={
                        "entity_type": plan.entity_type,
                        "entity_key": plan.key,
                        "event": plan.event,
                        "effect": name,
                    },
                )
                if on_failure is not None:
                    on_failure(name, exc)

    def fire(
        self,
        entity: object,
        event: str,
        /,
        *,
        actor: str | None = None,
        **payload: Any,
    ) -> Plan:
        """Decide and apply `event` to an in-memory entity, with no store.

        Use a `Runner` to persist transitions; this is for entities that live only in
        memory. Returns the applied plan.
        """
        plan = self.decide(entity, event, payload, now=self.clock.now(), actor=actor)
        branch: _Branch = plan.branch
        if branch.actions or branch.postconditions:
            self.stage(entity, plan)
        else:  # nothing can fail after the write, so there is nothing to restore
            self.write_snapshot(entity, plan)
        if branch.effects:
            self.run_effects(entity, plan)
        return plan


def _lookup_in(handlers: object) -> Callable[[str], object]:
    """Build a name lookup over a mapping, an object's attributes, or a list/tuple of
    such sources searched in order."""
    if handlers is None:
        return lambda name: _MISSING
    if isinstance(handlers, Mapping):
        mapping: Mapping[str, object] = handlers
        return lambda name: mapping.get(name, _MISSING)
    if isinstance(handlers, list | tuple):
        lookups = [_lookup_in(source) for source in handlers]

        def chained(name: str) -> object:
            for lookup in lookups:
                found = lookup(name)
                if found is not _MISSING:
                    return found
            return _MISSING

        return chained
    return lambda name: getattr(handlers, name, _MISSING)


def _entity_method(name: str) -> Handler:
    def call(entity: Any, ctx: Context) -> Any:
        return getattr(entity, name)(ctx)

    call.__name__ = name
    return call
