"""`Runner`: a machine composed with a store, a clock and listeners.

    runner = Runner(OrderWorkflow.machine, MemoryStore())
    runner.start(order)
    runner.fire(order, "pay", amount=100)

`fire` decides in memory, applies the plan to the entity, writes it through the
store in one atomic compare-and-set, and runs effects and listeners only after
the store reports the write committed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import replace
from functools import partial
from typing import Any, TypeVar

from statekit.clock import Clock
from statekit.engine import Machine
from statekit.entity import restore_attributes, save_attributes
from statekit.errors import (
    ConcurrentTransitionError,
    IdempotencyConflictError,
    InstanceNotFoundError,
    InvalidArgumentError,
    InvalidArgumentTypeError,
    NestedTransitionError,
    StatekitError,
    StoreError,
)
from statekit.inputs import check_entity, check_key, check_labels, fits
from statekit.limits import KEY_MAX, LABEL_MAX, unstorable_text
from statekit.quoting import bounded_repr
from statekit.records import Plan, Snapshot, TransitionRecord
from statekit.store.protocol import AfterCommit, Store, Unit

__all__ = ["Listener", "Runner", "retry_on_conflict"]

logger = logging.getLogger("statekit")

T = TypeVar("T")

_Applying = tuple[tuple[str, str, str, str | None], ...]
_APPLYING: ContextVar[_Applying] = ContextVar("statekit_applying", default=())
"""(machine, key, event, state) of each instance whose transition this thread (or task) is
deciding or applying now: firing on one of them again before that commit is refused."""
ForeignError = Callable[[BaseException, str, object, str], StoreError | None]
"""A store's `foreign_error(error, entity_type, entity, event)` (see `Store`)."""


def _count_error(argument: str, value: object, least: int) -> InvalidArgumentError:
    """The error for a count argument that is not a whole number of at least `least`."""
    allowed = f"a whole number, at least {least}"
    if type(value) is not int:
        return InvalidArgumentTypeError(argument, value, allowed)
    return InvalidArgumentError(argument, value, allowed)


def retry_on_conflict(operation: Callable[[], T], *, attempts: int = 3) -> T:
    """Call `operation` until it does not raise `ConcurrentTransitionError`, at most
    `attempts` times; the operation must reload what it decides on each time.

    Raises:
        ConcurrentTransitionError: the last attempt lost its race too.
    """
    if type(attempts) is not int or attempts < 1:
        raise _count_error("attempts", attempts, 1)
    for attempt in range(1, attempts + 1):
        try:
            return operation()
        except ConcurrentTransitionError as exc:
            if attempt == attempts:
                raise
            logger.info(
                "retrying after a lost race on %s %s (attempt %d of %d)",
                exc.entity_type,
                exc.key,
                attempt + 1,
                attempts,
                extra={"entity_type": exc.entity_type, "entity_key": exc.key, "event": exc.event},
            )
    raise AssertionError("unreachable")  # pragma: no cover


class Listener:
    """Hooks called after commit; override the ones you need. Exceptions are logged."""

    def on_transition(self, record: TransitionRecord, entity: object) -> None:
        """A transition was committed."""

    def on_stuck(self, record: TransitionRecord) -> None:
        """An instance was marked stuck (its `@stuck` record is committed)."""

    def on_compensation_failed(self, task: Any, error: BaseException) -> None:
        """An attempt at a compensation failed; it will be retried."""

    def on_dead_lettered(self, task: Any, error: BaseException) -> None:
        """A compensation used its last attempt; the instance needs a person."""

    def on_effect_failed(self, record: TransitionRecord, effect: str, error: BaseException) -> None:
        """An effect raised after its transition committed (the transition stands)."""

    def on_set_aside(self, snapshot: Snapshot, error: BaseException) -> None:
        """The sweeper could not handle an overdue instance and set it aside (its
        stuck marker holds the error); it is tried again after a backoff."""


class Runner:
    """Fires events on entities of one machine and persists them through a store.

    Args:
        machine: The compiled machine.
        store: Where snapshots and history are written.
        clock: Time source; defaults to the machine's clock.
        listeners: Objects whose hooks run after each commit.
    """

    def __init__(
        self,
        machine: Machine,
        store: Store,
        *,
        clock: Clock | None = None,
        listeners: Sequence[Listener] = (),
    ) -> None:
        self.machine = machine
        self.store = store
        self.clock = clock or machine.clock
        self.listeners = tuple(listeners)
        self._unit_of: Callable[[str, str, object], Unit | None] = store.unit_of
        self._foreign_error: ForeignError = store.foreign_error

    def start(self, entity: object) -> Snapshot:
        """Put a new entity in the initial state and store it at version 0.

        Raises:
            StoreError: the store could not create it (for example, it has no key,
                or the key is taken); the entity is left as it was.
        """
        check_entity(self.machine.name, entity)
        check_key(self.machine.name, self.machine.key_of(entity))
        saved = save_attributes(entity, self.machine.fields)
        snapshot = self.machine.start(entity, now=self.clock.now())
        try:
            self.store.create(snapshot, entity=entity)
        except BaseException:
            restore_attributes(entity, saved)
            raise
        if not snapshot.key:  # the database assigned it
            snapshot = replace(snapshot, key=self.machine.key_of(entity) or "")
        return snapshot

    def start_many(self, entities: Sequence[object]) -> list[Snapshot]:
        """Start many new entities at once (imports, migrations from another system,
        test data): the same rows `start` writes, stored together by the store
        (`SQLAlchemyStore` in one transaction: all of them or none).

        Raises:
            StoreError: the store could not create them (a key is taken, say); every
                entity is left as it was.
        """
        if isinstance(entities, str | bytes) or not isinstance(entities, Iterable):
            raise InvalidArgumentTypeError(
                "entities", entities, "a list of entities (start one with `start`)"
            )
        entities = list(entities)
        seen_objects: set[int] = set()
        seen_keys: set[str] = set()
        for entity in entities:
            check_entity(self.machine.name, entity)
            key = self.machine.key_of(entity)
            check_key(self.machine.name, key)
            if id(entity) in seen_objects or (key is not None and key in seen_keys):
                raise InvalidArgumentError(
                    "entities",
                    entities,
                    "each entity once, each with a key of its own",
                    message=f"cannot start {self.machine.name} {bounded_repr(key)} twice in "
                    "one start_many; nothing was stored",
                )
            seen_objects.add(id(entity))
            if key is not None:
                seen_keys.add(key)
        fields = self.machine.fields
        saved = [save_attributes(entity, fields) for entity in entities]
        now = self.clock.now()
        snapshots = [self.machine.start(entity, now=now) for entity in entities]
        try:
            self.store.create_many(snapshots, list(entities))
        except BaseException:
            for entity, attributes in zip(entities, saved, strict=True):
                restore_attributes(entity, attributes)
            raise
        return [
            s if s.key else replace(s, key=self.machine.key_of(e) or "")
            for s, e in zip(snapshots, entities, strict=True)
        ]

    def fire(
        self,
        entity: object,
        event: str,
        /,
        *,
        actor: str | None = None,
        correlation_id: str | None = None,
        idempotency_key: str | None = None,
        **payload: Any,
    ) -> TransitionRecord:
        """Fire `event` on `entity` and persist it; return the history record.

        With an `idempotency_key` already applied for the same event, return that
        recorded transition (with `replayed=True`) and change nothing.

        Raises:
            TransitionError: the machine refused (subclass says why); nothing changed.
            IdempotencyConflictError: the key was used for another event.
            ConcurrentTransitionError: another writer moved the instance first; the
                entity object is left as it was, so reload it before retrying.
            StoreError: the database failed, also where reading the entity itself
                reached it (an expired ORM attribute reloading, say).
        """
        try:
            return self._fire(entity, event, payload, actor, correlation_id, idempotency_key)
        except Exception as exc:
            if isinstance(exc, StatekitError):
                raise
            translated = self._foreign_error(exc, self.machine.name, entity, event)
            if translated is None:
                raise
            raise translated from exc

    def _fire(
        self,
        entity: object,
        event: str,
        payload: dict[str, Any],
        actor: str | None,
        correlation_id: str | None,
        idempotency_key: str | None,
    ) -> TransitionRecord:
        machine = self.machine
        key = machine.key_of(entity) or ""
        if (
            (actor is not None and not fits(actor, LABEL_MAX))
            or (idempotency_key is not None and not fits(idempotency_key, KEY_MAX))
            or (correlation_id is not None and not fits(correlation_id, LABEL_MAX))
        ):
            check_labels(
                self.machine.name, key, event, idempotency_key, actor, correlation_id
            )  # raises
        outside = _APPLYING.get()
        if outside:
            self._refuse_nested(key, event)
        token = _APPLYING.set((*outside, (machine.name, key, event, machine.state_of(entity))))
        try:
            unit = self._unit_of(machine.name, key, entity)  # once: passed to the store
            if idempotency_key is not None:
                recorded = self._recorded_by_key(
                    key,
                    event,
                    idempotency_key,
                    lambda: machine.state_of(entity),
                    entity=entity,
                    unit=unit,
                )
                if recorded is not None:
                    return recorded
            plan = machine.decide(
                entity,
                event,
                payload,
                now=self.clock.now(),
                actor=actor,
                correlation_id=correlation_id,
                idempotency_key=idempotency_key,
            )
            write = None if unit is None else unit.state_writer()
            restore = machine.stage(entity, plan, write=write)
            after_commit: AfterCommit | None = None
            if plan.branch.effects or self.listeners:
                after_commit = partial(self._committed, entity, plan, outside)
            try:
                return self.store.apply(plan, entity=entity, unit=unit, after_commit=after_commit)
            except ConcurrentTransitionError:
                restore()
                if idempotency_key is not None:
                    # The winner committed: read outside this transaction, whose
                    # snapshot (REPEATABLE READ) may not show it.
                    recorded = self._recorded_by_key(
                        key, event, idempotency_key, lambda: machine.state_of(entity)
                    )
                    if recorded is not None:
                        return recorded
                raise
            except BaseException:
                restore()
                raise
        finally:
            _APPLYING.reset(token)

    def _refuse_nested(self, key: str, event: str) -> _Applying:
        """What this thread is applying now; raises if that includes this instance."""
        applying = _APPLYING.get()
        if applying:
            name = self.machine.name
            for machine, held, outer, state in applying:
                if machine == name and held == key:
                    raise NestedTransitionError(
                        entity_type=name, key=key, state=state, event=event, applying=outer
                    )
        return applying

    def fire_by_key(
        self,
        key: object,
        event: str,
        /,
        *,
        retries: int = 0,
        actor: str | None = None,
        correlation_id: str | None = None,
        idempotency_key: str | None = None,
        **payload: Any,
    ) -> TransitionRecord:
        """Load the entity by key in a transaction of its own, fire, and commit.

        On a lost race the whole unit is retried (reload, decide again, apply) up
        to `retries` more times; nothing is retried silently beyond that.

        Raises:
            InstanceNotFoundError: no instance has this key.
            TransitionError: the machine refused; nothing was written.
            ConcurrentTransitionError: every attempt lost its race.
        """

        if type(retries) is not int or retries < 0:
            raise _count_error("retries", retries, 0)
        unit = self.store.firing
        name, text = self.machine.name, str(key)
        if unstorable_text(text) is not None:  # stored under no key (`start` refuses it)
            raise InstanceNotFoundError(entity_type=name, key=text)
        self._refuse_nested(text, event)  # before the unit waits on a lock

        def attempt() -> TransitionRecord:
            with unit(name, text) as entity:
                return self._fire(entity, event, payload, actor, correlation_id, idempotency_key)

        return retry_on_conflict(attempt, attempts=retries + 1)

    def can_fire(self, entity: object, event: str, **payload: Any) -> bool:
        """Whether `fire` would accept `event` now, by this runner's clock (see
        `Machine.can_fire`: statekit's refusals are False, a bug propagates)."""
        return self.machine.can_fire_at(entity, event, payload, self.clock.now())

    def allowed_events(self, entity: object) -> tuple[str, ...]:
        """Events declared from the entity's state; never raises."""
        return self.machine.allowed_events(entity)

    def history(self, entity: object) -> Sequence[TransitionRecord]:
        """The entity's stored transitions, oldest first."""
        return self.store.history(self.machine.name, self.machine.key_of(entity) or "")

    def _recorded_by_key(
        self,
        key: str,
        event: str,
        idempotency_key: str,
        state: Callable[[], str | None],
        *,
        entity: object | None = None,
        unit: Unit | None = None,
    ) -> TransitionRecord | None:
        """The transition recorded under `idempotency_key` as a replay, or None; with
        `entity`, read in its transaction (`unit`, see `Store.recorded`), else outside.

        Raises:
            IdempotencyConflictError: the key was used for another event.
        """
        name = self.machine.name
        record = self.store.recorded(name, key, idempotency_key, entity=entity, unit=unit)
        if record is None:
            return None
        if record.event != event:
            raise IdempotencyConflictError(
                entity_type=name,
                key=key,
                state=state(),
                event=event,
                idempotency_key=idempotency_key,
                recorded_event=record.event,
            )
        return replace(record, replayed=True)

    def _committed(
        self,
        entity: object,
        plan: Plan,
        outside: _Applying,
        record: TransitionRecord,
    ) -> None:
        # Effects may fire the next event on this instance: the commit is done, so
        # they run as the code around the fire would (`outside`), not inside it.
        token = _APPLYING.set(outside)
        try:
            self._run_committed(entity, plan, record)
        finally:
            _APPLYING.reset(token)

    def _run_committed(self, entity: object, plan: Plan, record: TransitionRecord) -> None:
        if plan.branch.effects:
            self.machine.run_effects(
                entity,
                plan,
                lambda name, error: self._notify_effect_failed(record, name, error),
            )
        for listener in self.listeners:
            try:
                listener.on_transition(record, entity)
            except Exception:
                self._listener_failed(listener, record)

    def _notify_effect_failed(
        self, record: TransitionRecord, effect: str, error: BaseException
    ) -> None:
        for listener in self.listeners:
            try:
                listener.on_effect_failed(record, effect, error)
            except Exception:
                self._listener_failed(listener, record)

    @staticmethod
    def _listener_failed(listener: Listener, record: TransitionRecord) -> None:
        logger.exception(
            "listener %r failed on %s %s (%s)",
            listener,
            record.entity_type,
            record.key,
            record.event,
            extra={
                "entity_type": record.entity_type,
                "entity_key": record.key,
                "event": record.event,
            },
        )
