"""`StateModel`: the state columns for a Django model, with the state protected.

    class Order(StateModel):
        __statekit_machine__ = OrderWorkflow.machine
        id = models.CharField(primary_key=True, max_length=36)

The columns have the names and types of the SQLAlchemy `StateMixin`, so one
`Workflow` serves a SQLAlchemy model and a Django model unchanged. Only statekit
writes them: `save()` of an existing row never writes the state columns, and
raises `ProtectedStateError` when they were changed in memory outside a transition.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any, ClassVar

from django.db import models, router

from statekit.contrib.django.fields import PlainTextField, UTCDateTimeField
from statekit.engine import Machine
from statekit.errors import ProtectedStateError
from statekit.limits import NAME_MAX

__all__ = [
    "STATE_COLUMNS",
    "ProtectedStateError",
    "StateModel",
    "changed_fields",
    "mark_state_synced",
    "mark_synced",
]

STATE_COLUMNS = (
    "state",
    "state_version",
    "state_entered_at",
    "state_deadline_at",
    "stuck_at",
    "stuck_reason",
    "state_definition_version",
)
"""The mixin's fields, in `Snapshot` order."""

SYNCED = "_statekit_synced"
"""The instance attribute holding the state values the database has (as statekit
last read or wrote them)."""
FIELDS = "_statekit_fields"
"""The instance attribute holding the other fields' values as last read or written:
what `changed_fields` compares against."""


def synced_values(entity: models.Model) -> tuple[Any, ...]:
    """The entity's state values now, in `STATE_COLUMNS` order."""
    return tuple(getattr(entity, name) for name in STATE_COLUMNS)


def mark_synced(entity: models.Model) -> None:
    """Record the entity's values as those the database holds (the store calls it
    after it read or wrote them)."""
    loaded = entity.__dict__
    loaded[SYNCED] = synced_values(entity)
    loaded[FIELDS] = {
        f.attname: loaded[f.attname]
        for f in entity._meta.concrete_fields
        if not f.primary_key and f.attname not in STATE_COLUMNS and f.attname in loaded
    }


def mark_state_synced(entity: models.Model) -> None:
    """Record the entity's state values as those the database holds (its other
    fields keep their baseline)."""
    entity.__dict__[SYNCED] = synced_values(entity)


def changed_fields(entity: object) -> dict[str, Any]:
    """The fields but the key and the state columns whose values changed since the
    entity was last read or written (what actions and handlers did to it); empty for
    an object statekit has not seen loaded."""
    baseline: dict[str, Any] | None = getattr(entity, "__dict__", {}).get(FIELDS)
    if not baseline:
        return {}
    current = entity.__dict__
    return {
        name: current[name]
        for name, value in baseline.items()
        if name in current and current[name] != value
    }


class StateModel(models.Model):
    """Abstract model adding the state columns (see `statekit.entity.StateFields`)
    and the deadline index the sweeper reads. Bind a machine with the class
    attribute `__statekit_machine__` (the compiled machine, `Workflow.machine`)."""

    __statekit_machine__: ClassVar[Machine]

    state: models.CharField[str, str] = models.CharField(max_length=NAME_MAX)
    state_version: models.IntegerField[int, int] = models.IntegerField(default=0)
    state_entered_at = UTCDateTimeField(null=True, blank=True)
    state_deadline_at = UTCDateTimeField(null=True, blank=True, db_index=True)
    stuck_at = UTCDateTimeField(null=True, blank=True)
    stuck_reason = PlainTextField(null=True, blank=True)
    state_definition_version: models.IntegerField[int | None, int | None] = models.IntegerField(
        null=True, blank=True
    )

    class Meta:
        abstract = True

    @classmethod
    def from_db(
        cls, db: str | None, field_names: Collection[str], values: Collection[Any]
    ) -> StateModel:
        instance = super().from_db(db, field_names, values)
        if all(name in instance.__dict__ for name in STATE_COLUMNS):
            mark_synced(instance)
        return instance

    def refresh_from_db(
        self,
        using: str | None = None,
        fields: Iterable[str] | None = None,
        from_queryset: models.QuerySet[Any, Any] | None = None,
    ) -> None:
        super().refresh_from_db(using=using, fields=fields, from_queryset=from_queryset)
        if all(name in self.__dict__ for name in STATE_COLUMNS):
            mark_synced(self)

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save the row; an existing row's state columns are left as they are.

        Raises:
            ProtectedStateError: a state column was changed in memory outside a
                transition (fire an event through a `Runner` instead).
        """
        if self._state.adding and not self._saved_over_a_row(kwargs):
            super().save(*args, **kwargs)
            mark_synced(self)
            return
        synced = self.__dict__.get(SYNCED)
        if synced is not None and synced != synced_values(self):
            changed = [
                name
                for name, before in zip(STATE_COLUMNS, synced, strict=True)
                if getattr(self, name) != before
            ]
            machine = getattr(type(self), "__statekit_machine__", None)
            raise ProtectedStateError(
                f"{type(self).__name__} {self.pk}: {', '.join(changed)} changed outside a "
                f"transition (state {synced[0]!r} -> {self.state!r}); the state is written "
                "only by firing an event through a statekit Runner",
                entity_type=machine.name if isinstance(machine, Machine) else type(self).__name__,
                key=str(self.pk),
                state=self.state,
                stored_state=synced[0],
            )
        update_fields = kwargs.pop("update_fields", None)
        if update_fields is None:
            update_fields = [
                f.name
                for f in self._meta.concrete_fields
                if not f.primary_key and f.name not in STATE_COLUMNS
            ]
        else:
            update_fields = [name for name in update_fields if name not in STATE_COLUMNS]
        if update_fields:
            super().save(*args, update_fields=update_fields, **kwargs)
            mark_synced(self)

    def _saved_over_a_row(self, kwargs: dict[str, Any]) -> bool:
        """Whether this new object's `save()` would UPDATE an existing row (its key is
        set and taken: Django updates then, state columns included). If so, it becomes
        that row's object, its state synced to the row's, so `save` writes only the
        other fields, or refuses a state that differs from the row's."""
        pk = self._meta.pk
        if kwargs.get("force_insert") or self.pk is None or pk is None or pk.has_default():
            return False
        db = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        stored = type(self)._base_manager.using(db).filter(pk=self.pk).values_list(*STATE_COLUMNS)
        row = next(iter(stored), None)
        if row is None:
            return False
        self._state.adding = False
        self._state.db = db
        self.__dict__[SYNCED] = tuple(row)
        return True
