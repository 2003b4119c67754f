"""`DjangoStore`'s `Store` tier: create, load, apply, history, units of work."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, models, transaction

from statekit.clock import Clock, SystemClock
from statekit.contrib.django.mixin import changed_fields, mark_synced
from statekit.contrib.django.models import RetiredTransition, Transition
from statekit.contrib.django.signals import post_transition, pre_transition
from statekit.contrib.django.store.binding import ModelBinding
from statekit.contrib.django.store.lives import purge, retire
from statekit.contrib.django.store.statements import (
    direct,
    insert_transition,
    load_locked,
    transition,
)
from statekit.contrib.django.store.units import (
    DjangoUnit,
    database_errors,
    open_unit,
    unit_of_entity,
    write_back,
)
from statekit.engine import Machine
from statekit.entity import restore_attributes, save_attributes
from statekit.errors import (
    CREATE_EVENT,
    ConcurrentTransitionError,
    InstanceNotFoundError,
    InvalidArgumentError,
    InvalidArgumentTypeError,
    StoreError,
    UnknownMachineError,
)
from statekit.limits import held_alike
from statekit.records import HISTORY_FIELDS, Plan, Snapshot, TransitionRecord
from statekit.store.protocol import AfterCommit, Store, Unit

__all__ = ["RECORD_FIELDS", "StoreCore", "record_of"]

RECORD_FIELDS = HISTORY_FIELDS


def record_of(entity_type: str, key: str, row: Sequence[Any]) -> TransitionRecord:
    """A record from a history row read with `values_list(*RECORD_FIELDS)`."""
    return TransitionRecord(entity_type, key, *row)


class StoreCore(Store):
    """The `Store` tier of `DjangoStore` (see there)."""

    def __init__(
        self,
        bindings: Iterable[type[models.Model]] | Mapping[Machine, type[models.Model]] | None = None,
        *,
        using: str = DEFAULT_DB_ALIAS,
        clock: Clock | None = None,
    ) -> None:
        if using not in connections:
            raise InvalidArgumentError(
                "using", using, f"a database alias of settings.DATABASES: {', '.join(connections)}"
            )
        self.db = using
        self.clock = clock or SystemClock()
        self._bindings: dict[str, ModelBinding] = {}
        if bindings is None:
            bindings = installed_models()
        if isinstance(bindings, Mapping):
            for machine, model in bindings.items():
                if not isinstance(machine, Machine):
                    raise _bindings_error(machine)
                self.register(model, machine)
        elif isinstance(bindings, str) or not isinstance(bindings, Iterable):
            raise _bindings_error(bindings)
        else:
            for model in bindings:
                self.register(model)

    def register(self, model: type[models.Model], machine: Machine | None = None) -> None:
        """Store the instances of `machine` (default: `model.__statekit_machine__`) as
        rows of `model`.

        Raises:
            StoreError: no machine given and the model names none, or the model lacks
                a state field of the machine.
            InvalidArgumentTypeError: `model` is not a Django model class.
        """
        if not (isinstance(model, type) and issubclass(model, models.Model)):
            raise _bindings_error(model)
        machine = machine or getattr(model, "__statekit_machine__", None)
        if machine is None:
            raise StoreError(
                f"model {model._meta.label} names no machine: give it "
                "__statekit_machine__ = SomeWorkflow.machine, or pass {machine: model}"
            )
        self._bindings[machine.name] = ModelBinding(machine, model)

    def binding(self, entity_type: str) -> ModelBinding:
        """The binding of machine `entity_type`.

        Raises:
            StoreError: no model is registered for it.
        """
        try:
            return self._bindings[entity_type]
        except KeyError:
            raise UnknownMachineError([entity_type], known=self._bindings) from None

    # -- create, load, delete ---------------------------------------------------------

    def load(self, entity_type: str, key: str) -> Snapshot:
        """Return the stored snapshot (see `Store.load`)."""
        binding = self.binding(entity_type)
        pk = binding.coerce_key(key)
        with database_errors(f"loading {entity_type} {key}"):
            row = binding.rows(self.db).filter(pk=pk).values_list(*binding.snapshot_fields())
            found = list(row)
        if not found:
            raise InstanceNotFoundError(entity_type=entity_type, key=key)
        return binding.snapshot(found[0])

    def create(self, snapshot: Snapshot, *, entity: object | None = None) -> None:
        """Insert the entity's row (see `Store.create`); rows an earlier instance left
        under its key move to the retired tables in the same transaction."""
        self.create_many([snapshot], [entity])

    def create_many(self, snapshots: Sequence[Snapshot], entities: Sequence[object | None]) -> None:
        """Insert the rows of many new instances in one transaction, all or none."""
        pairs = list(zip(snapshots, entities, strict=True))
        for snapshot, entity in pairs:
            if not isinstance(entity, models.Model):
                raise StoreError(
                    f"DjangoStore stores {snapshot.entity_type} {snapshot.key or '(new)'} as a "
                    f"model row: pass the model instance (got {_described(entity)})"
                )
        with database_errors(
            "creating " + ", ".join(f"{s.entity_type} {s.key}" for s in snapshots)
        ):
            try:
                with transaction.atomic(using=self.db):
                    for snapshot, entity in pairs:
                        self._insert(snapshot, entity)  # type: ignore[arg-type]
            except IntegrityError as exc:
                for snapshot, entity in pairs:
                    self._refuse_taken(snapshot, entity)  # type: ignore[arg-type]
                raise StoreError(f"creating {snapshots[0].entity_type} failed: {exc}") from exc

    def _insert(self, snapshot: Snapshot, entity: models.Model) -> None:
        self.binding(snapshot.entity_type)  # an unknown machine is refused first
        if snapshot.key:
            self._refuse_taken(snapshot, entity)
        entity.save(force_insert=True, using=self.db)
        retire(self.db, snapshot.entity_type, str(entity.pk), self.clock.now())

    def _refuse_taken(self, snapshot: Snapshot, entity: models.Model) -> None:
        binding = self.binding(snapshot.entity_type)
        if entity.pk is None:
            return
        versions = list(
            binding.rows(self.db).filter(pk=entity.pk).values_list(binding.names[1], flat=True)
        )
        if versions:
            raise ConcurrentTransitionError(
                entity_type=snapshot.entity_type,
                key=str(entity.pk),
                event=CREATE_EVENT,
                expected_version=snapshot.version,
                actual_version=versions[0],
            )

    def delete(self, entity_type: str, key: str, *, keep_history: bool = False) -> None:
        """Delete the instance's row and its history, compensations and attempts in one
        transaction; with `keep_history`, retire those instead (see `retired_history`).

        Raises:
            InstanceNotFoundError: no row has this key.
        """
        binding = self.binding(entity_type)
        pk = binding.coerce_key(key)
        with database_errors(f"deleting {entity_type} {key}"):
            with transaction.atomic(using=self.db):
                gone, _ = binding.rows(self.db).filter(pk=pk).delete()
                if not gone:
                    raise InstanceNotFoundError(entity_type=entity_type, key=key)
                if keep_history:
                    retire(self.db, entity_type, str(pk), self.clock.now())
                else:
                    purge(self.db, entity_type, str(pk))

    def retired_history(self, entity_type: str, key: str) -> list[TransitionRecord]:
        """The transitions of the key's earlier lives, oldest life first."""
        with database_errors(f"reading the retired history of {entity_type} {key}"):
            rows = (
                RetiredTransition.objects.using(self.db)
                .filter(entity_type=entity_type, entity_key=key)
                .order_by("retired_id")
                .values_list(*RECORD_FIELDS)
            )
            return [record_of(entity_type, key, row) for row in rows]

    # -- apply and history ------------------------------------------------------------

    def apply(
        self,
        plan: Plan,
        *,
        entity: object | None = None,
        unit: Unit | None = None,
        after_commit: AfterCommit | None = None,
    ) -> TransitionRecord:
        """Compare-and-set the row's version and insert the history row in one atomic
        block (a savepoint in the caller's block, if any), in one statement on
        PostgreSQL (`statements.transition`); see `Store.apply`. The
        UPDATE also writes the entity's other fields that changed since it was read
        (what the transition's actions did)."""
        key = plan.key or ""
        if unit is not None and not isinstance(unit, DjangoUnit):
            raise StoreError(
                f"{plan.entity_type} {key}: {type(unit).__name__} is not a unit of a DjangoStore"
            )
        binding = self.binding(plan.entity_type)
        pk = binding.coerce_key(key)
        record = plan.record()
        sender = binding.model
        expected = plan.expected_version
        # In a `firing` block a failure leaves the block, which rolls back: no savepoint.
        single = unit is not None and unit.single
        with database_errors(f"storing {plan.event!r} on {plan.entity_type} {key}"):
            try:
                with transaction.atomic(using=self.db, savepoint=not single):
                    if pre_transition.receivers:
                        pre_transition.send(sender, instance=entity, record=record)
                    # Fields the actions (or the caller) changed go in the same UPDATE.
                    values = {**changed_fields(entity), **binding.new_values(plan)}
                    # The row must still be at the version and in the state decided from.
                    where = {binding.names[1]: expected, binding.names[0]: plan.source}
                    history = {
                        "entity_type": plan.entity_type,
                        "entity_key": key,
                        **{name: getattr(record, name) for name in RECORD_FIELDS},
                    }
                    if direct(binding.model):  # one statement on PostgreSQL
                        updated = transition(self.db, binding.model, pk, where, values, history)
                    else:
                        updated = binding.rows(self.db).filter(pk=pk, **where).update(**values)
                        if updated:
                            insert_transition(self.db, history)
            except IntegrityError as exc:  # the seq or the idempotency key is taken
                if single:  # the transaction is spoilt until the block rolls back
                    raise ConcurrentTransitionError(
                        entity_type=plan.entity_type,
                        key=key,
                        event=plan.event,
                        expected_version=expected,
                        actual_version=None,
                    ) from exc
                raise self._lost(plan, binding, pk) from exc
            if not updated:
                raise self._lost(plan, binding, pk)
            if isinstance(entity, models.Model):
                mark_synced(entity)
            on_commit = functools.partial(self._committed, sender, entity, record, after_commit)
            transaction.on_commit(on_commit, using=self.db)
        return record

    @staticmethod
    def _committed(
        sender: type[models.Model],
        entity: object,
        record: TransitionRecord,
        after_commit: AfterCommit | None,
    ) -> None:
        if after_commit is not None:
            after_commit(record)
        if post_transition.receivers:
            post_transition.send(sender, instance=entity, record=record)

    def _lost(self, plan: Plan, binding: ModelBinding, pk: Any) -> StoreError:
        """The error of a compare-and-set that matched no row: the row is gone, at
        another version, or in another state at the plan's version."""
        state, version = binding.names[0], binding.names[1]
        found = binding.rows(self.db).filter(pk=pk).values_list(version, state).first()
        return plan.lost_race(found)

    def history(
        self, entity_type: str, key: str, *, idempotency_key: str | None = None
    ) -> list[TransitionRecord]:
        """The instance's transitions, oldest first (see `Store.history`)."""
        if not held_alike(key, idempotency_key):
            return []
        rows = Transition.objects.using(self.db).filter(entity_type=entity_type, entity_key=key)
        if idempotency_key is not None:
            rows = rows.filter(idempotency_key=idempotency_key)
        with database_errors(f"reading the history of {entity_type} {key}"):
            return [
                record_of(entity_type, key, row)
                for row in rows.order_by("seq").values_list(*RECORD_FIELDS)
            ]

    def find_overdue(self, entity_type: str, now: datetime, limit: int) -> list[Snapshot]:
        """Due, non-stuck instances, earliest deadline first (see `Store.find_overdue`)."""
        binding = self.binding(entity_type)
        deadline, stuck = binding.names[3], binding.names[4]
        rows = (
            binding.rows(self.db)
            .filter(**{f"{deadline}__lte": now, f"{stuck}__isnull": True})
            .order_by(deadline, "pk")
            .values_list(*binding.snapshot_fields())[:limit]
        )
        with database_errors(f"finding overdue {entity_type} instances"):
            return [binding.snapshot(row) for row in rows]

    # -- units of work ----------------------------------------------------------------

    def transaction(self, entity_type: str, key: str) -> AbstractContextManager[Any]:
        """Load the row locked (`select_for_update` where the database has it) in a
        `transaction.atomic()` block, joining the caller's (see `Store.transaction`).
        Transitions fired on the entity commit with the block, and so do the fields
        their actions changed (written back at the end, never the state fields); if
        the block raises, all of it rolls back and the entity is put back."""
        return self._unit(entity_type, key, single=False)

    def firing(self, entity_type: str, key: str) -> AbstractContextManager[Any]:
        """`transaction` for `Runner.fire_by_key`'s one event: the block's `apply`
        writes in the block's own atomic block, without a savepoint of its own, since
        a failed `apply` always leaves (and rolls back) the block (see `Store.firing`)."""
        return self._unit(entity_type, key, single=True)

    @contextmanager
    def _unit(self, entity_type: str, key: str, *, single: bool) -> Iterator[Any]:
        binding = self.binding(entity_type)
        pk = binding.coerce_key(key)
        with database_errors(f"opening a unit of work on {entity_type} {key}"):
            with transaction.atomic(using=self.db):
                if direct(binding.model):
                    entity = load_locked(self.db, binding.model, pk)
                else:
                    found = list(binding.rows(self.db).select_for_update().filter(pk=pk))
                    entity = found[0] if found else None
                if entity is None:
                    raise InstanceNotFoundError(entity_type=entity_type, key=key)
                saved = save_attributes(entity, binding.machine.fields)
                mark_synced(entity)
                with open_unit(entity, self.db, single=single):
                    try:
                        yield entity
                    except BaseException:
                        restore_attributes(entity, saved)
                        raise
                    write_back(entity, self.db)

    def unit_of(self, entity_type: str, key: str, entity: object) -> DjangoUnit | None:
        """The `transaction` block this thread has open on `entity`, or None: then
        `apply` runs in the thread's current atomic block, if any (see `Store.unit_of`)."""
        return unit_of_entity(entity)


def _bindings_error(given: object) -> InvalidArgumentTypeError:
    return InvalidArgumentTypeError(
        "bindings",
        given,
        "Django model classes that name their machine (__statekit_machine__), "
        "or {machine: model class}",
    )


def _described(entity: object) -> str:
    kind = type(entity)
    return "None" if entity is None else f"{kind.__module__}.{kind.__qualname__}"


def installed_models() -> list[type[models.Model]]:
    """Every installed model that names a machine (`__statekit_machine__`)."""
    from django.apps import apps

    return [
        model
        for model in apps.get_models()
        if getattr(model, "__statekit_machine__", None) is not None
    ]
