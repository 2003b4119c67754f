"""`ModelBinding`: how one machine's instances map onto a Django model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models

from statekit.engine import Machine
from statekit.errors import InstanceNotFoundError, StoreError
from statekit.limits import unstorable_text
from statekit.records import Plan, Snapshot

__all__ = ["ModelBinding"]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class ModelBinding:
    """One machine and the model whose rows hold its instances."""

    machine: Machine
    model: type[models.Model]
    names: tuple[str, ...] = field(init=False)  # the state fields, in Snapshot order

    def __post_init__(self) -> None:
        names = self.machine.fields.state_attributes()
        for name in names:
            try:
                self.model._meta.get_field(name)
            except Exception as exc:
                raise StoreError(
                    f"model {self.model._meta.label} has no field {name!r} for machine "
                    f"{self.machine.name!r}: give it the state columns (StateModel)"
                ) from exc
        object.__setattr__(self, "names", names)

    def rows(self, db: str) -> models.QuerySet[Any]:
        """All the model's rows on database `db`."""
        return self.model._default_manager.db_manager(db).all()

    def coerce_key(self, key: str) -> Any:
        """The primary key value for `key` (`InstanceNotFoundError` if it cannot be
        one: not a value of the field, an integer past the 64 bits any database's
        integer column holds, which SQLite's driver would refuse with OverflowError,
        or text no database holds alike, see `statekit.limits.unstorable_text`)."""
        try:
            value = self.model._meta.pk.to_python(key)
        except (ValidationError, TypeError, ValueError) as exc:
            raise InstanceNotFoundError(entity_type=self.machine.name, key=key) from exc
        if type(value) is int and not _INT64_MIN <= value <= _INT64_MAX:
            raise InstanceNotFoundError(entity_type=self.machine.name, key=key)
        if isinstance(value, str) and unstorable_text(value) is not None:
            raise InstanceNotFoundError(entity_type=self.machine.name, key=key)
        return value

    def snapshot_fields(self) -> tuple[str, ...]:
        """`values_list` fields of `snapshot`: the key and the state fields."""
        return ("pk", *self.names)

    def snapshot(self, row: Sequence[Any]) -> Snapshot:
        """The snapshot of a row read with `snapshot_fields`."""
        return Snapshot(self.machine.name, str(row[0]), *row[1:])

    def new_values(self, plan: Plan) -> dict[str, Any]:
        """What the compare-and-set UPDATE writes for `plan`."""
        values = (
            plan.target,
            plan.expected_version + 1,
            plan.entered,
            plan.deadline_at,
            plan.at if plan.stuck_reason is not None else None,
            plan.stuck_reason,
            plan.definition_version,
        )
        return dict(zip(self.names, values, strict=True))
