"""The compiled machine: validated once, shared by every entity, deciding transitions.

`Machine(spec, handlers)` checks the spec, resolves every named callable
(`statekit.handlers`) and compiles the transitions into branch tables
(`statekit.branches`). It holds no per-entity data: an entity is any object with the
state attributes named by `StateFields`, and readying one costs nothing. This module
reads entities and decides; applying a plan to an entity is `statekit.staging`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from operator import attrgetter
from typing import Any

from pydantic import BaseModel

from statekit.branches import (
    SYSTEM_BRANCH,
    Branch,
    Handler,
    Note,
    choose_branch,
    compile_branches,
    note_payload,
    unless_failure,
    validate_payload,
    verdict_reason,
)
from statekit.clock import Clock, SystemClock
from statekit.definition import MachineSpec
from statekit.entity import StateFields, StateWriter, check_version
from statekit.errors import (
    DefinitionError,
    DefinitionMismatchError,
    InvalidArgumentError,
    NotStartedError,
    PreconditionFailedError,
    StatekitError,
    TransitionNotAllowedError,
    UnknownEventError,
)
from statekit.handlers import Resolver
from statekit.records import Plan, Snapshot
from statekit.staging import Stager, run_effects
from statekit.validation import graph_problems, reference_problems, signature_problems

__all__ = [
    "Handler",
    "Machine",
    "Note",
    "check_version",
    "verdict_reason",
]


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
        self.resolver = Resolver(handlers, entity_type)
        """Finds the spec's named callables and payload models."""
        resolver = self.resolver

        problems = graph_problems(spec)
        missing = reference_problems(spec, resolver.exists)
        problems.extend(missing)
        if not missing:
            problems.extend(signature_problems(spec, resolver.handler_to_check))
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
            t.compensation: resolver.resolve_object(t.compensation)
            for t in spec.transitions
            if t.compensation is not None
        }
        after = {state: timeout.after for state, timeout in self.timeouts.items()}
        compiled = compile_branches(spec, resolver.resolve, resolver.payload_model, after)
        self.payload_models: dict[str, type[BaseModel] | None] = compiled.payload_models
        self._table = compiled.branches
        self._allowed = compiled.allowed
        self._compensation_by_step = compiled.compensation_by_step
        self.compensated_steps = compiled.compensated_steps
        """Every declared compensation, (handler, attempts) -> the steps (source,
        event, target) it undoes, so a store can schedule an instance's
        compensations from its history rows without reading them back."""
        f = self.fields
        self._read_decision = attrgetter(f.state, f.version, f.definition_version, f.key)
        self._stager = Stager(self.name, f, self._allowed)
        self._write_state = self._stager.write_state

    def __repr__(self) -> str:
        return f"<Machine {self.name} v{self.version}: {len(self.states)} states>"

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
            InvalidArgumentError: `target` is not a declared state.
        """
        if isinstance(entity, Snapshot):
            snapshot = entity
            check_version(self.name, snapshot.key, snapshot.version)
            self._check_stored(snapshot.state, snapshot.definition_version, snapshot.key)
        else:
            snapshot = self.snapshot(entity)
        if target not in self._table:
            raise InvalidArgumentError(
                "target",
                target,
                f"states: {', '.join(self.states)}",
                message=(
                    f"machine {self.name!r} has no state {target!r} "
                    f"(states: {', '.join(self.states)})"
                ),
            )
        timeout = self.timeouts.get(target)
        deadline = None if stuck_reason is not None or timeout is None else now + timeout.after
        payload = None if note is None else note_payload(note)
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
            SYSTEM_BRANCH,
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
        try:
            branches = events.get(event)
        except TypeError:  # an unhashable "event" (a list, say) names none of them
            branches = None
        if branches is None:
            self._refuse(entity, state, event)
        assert branches is not None  # _refuse always raises
        key = None if key_value is None else str(key_value)

        model = branches[0].payload_model
        if model is None and not payload:
            data = None
        else:
            data = validate_payload(
                model,
                payload,
                entity_type=self.name,
                key=key,
                state=state,
                event=event,
                allowed_events=self._allowed[state],
            )
        # The plan is also the context handed to guards and conditions. It starts on
        # the first branch; `choose_branch` moves it along when that branch's guards say no.
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
                chosen = choose_branch(entity, plan, branches, failure, self._allowed)
                break
        else:
            if first.unless:
                failed = unless_failure(first, entity, plan)
                if failed is not None:
                    chosen = choose_branch(
                        entity, plan, branches, (first.target, *failed), self._allowed
                    )
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

    def _refuse(self, entity: object, state: str, event: str) -> None:
        key = self.key_of(entity)
        allowed = self._allowed[state]
        if isinstance(event, str) and event in self._known_events:
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
        return self._stager.stage(entity, plan, write=write)

    def write_snapshot(self, entity: object, plan: Plan) -> None:
        """Set the entity's state attributes to what `plan` leaves behind."""
        self._stager.write_snapshot(entity, plan)

    def run_effects(
        self,
        entity: object,
        plan: Plan,
        on_failure: Callable[[str, Exception], None] | None = None,
    ) -> None:
        """Run the plan's after-commit effects. A failing effect is logged at ERROR and
        passed to `on_failure`, not raised: the transition it follows is committed."""
        run_effects(entity, plan, on_failure)

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
        branch: Branch = plan.branch
        if branch.actions or branch.postconditions:
            self._stager.stage(entity, plan)
        else:  # nothing can fail after the write, so there is nothing to restore
            self._stager.write_snapshot(entity, plan)
        if branch.effects:
            run_effects(entity, plan)
        return plan
