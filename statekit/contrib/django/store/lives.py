"""One key, successive lives: moving a key's rows to the retired tables, or deleting
them (the Django twin of `statekit.store.sqlalchemy.lives`)."""

from __future__ import annotations

from datetime import datetime

from statekit.contrib.django.models import (
    Compensation,
    CompensationAttempt,
    RetiredCompensation,
    RetiredCompensationAttempt,
    RetiredTransition,
    Transition,
)

__all__ = ["has_past", "purge", "retire"]


def has_past(db: str, entity_type: str, key: str) -> bool:
    """Whether the key has live history or compensations."""
    of_key = {"entity_type": entity_type, "entity_key": key}
    return (
        Transition.objects.using(db).filter(**of_key).exists()
        or Compensation.objects.using(db).filter(**of_key).exists()
    )


def retire(db: str, entity_type: str, key: str, at: datetime) -> bool:
    """Move the key's live history, compensations and attempts to the retired tables
    (stamped `at`), in the current transaction; return whether there were any."""
    if not has_past(db, entity_type, key):
        return False
    of_key = {"entity_type": entity_type, "entity_key": key}
    ids = list(
        Compensation.objects.using(db)
        .select_for_update()
        .filter(**of_key)
        .order_by("id")
        .values_list("id", flat=True)
    )
    history = Transition.objects.using(db).filter(**of_key).order_by("seq").values()
    RetiredTransition.objects.using(db).bulk_create(
        [RetiredTransition(retired_at=at, **row) for row in history]
    )
    outbox = Compensation.objects.using(db).filter(id__in=ids).order_by("id").values()
    RetiredCompensation.objects.using(db).bulk_create(
        [RetiredCompensation(retired_at=at, **row) for row in outbox]
    )
    attempts = (
        CompensationAttempt.objects.using(db)
        .filter(compensation_id__in=ids)
        .order_by("compensation_id", "attempt")
        .values()
    )
    RetiredCompensationAttempt.objects.using(db).bulk_create(
        [RetiredCompensationAttempt(retired_at=at, **row) for row in attempts]
    )
    purge(db, entity_type, key, ids)
    return True


def purge(db: str, entity_type: str, key: str, ids: list[int] | None = None) -> None:
    """Delete the key's live history, compensations and attempts (retired lives stay)."""
    of_key = {"entity_type": entity_type, "entity_key": key}
    if ids is None:
        ids = list(
            Compensation.objects.using(db)
            .select_for_update()
            .filter(**of_key)
            .values_list("id", flat=True)
        )
    Transition.objects.using(db).filter(**of_key).delete()
    CompensationAttempt.objects.using(db).filter(compensation_id__in=ids).delete()
    Compensation.objects.using(db).filter(**of_key).delete()
