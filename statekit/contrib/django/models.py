"""statekit's tables as Django models: the same names, columns, types, constraints and
indexes as `statekit.store.sqlalchemy.statekit_tables()` with the default prefix, so
the Django and SQLAlchemy stores can share one database.

The live tables hold the current life of each key; rows of earlier lives move to the
`statekit_retired_*` tables (see `DjangoStore.create`). Only the store writes them.
"""

from __future__ import annotations

from django.db import models

from statekit.contrib.django.fields import (
    ExactCharField,
    IdentityField,
    NamedIndex,
    PlainJSONField,
    PlainTextField,
    UTCDateTimeField,
)
from statekit.contrib.django.mixin import StateModel
from statekit.limits import HANDLER_NAME_MAX, KEY_MAX, LABEL_MAX, NAME_MAX

__all__ = [
    "Compensation",
    "CompensationAttempt",
    "RetiredCompensation",
    "RetiredCompensationAttempt",
    "RetiredTransition",
    "StateModel",
    "Transition",
]


# Django orders a model's columns by when their fields were defined: the abstract
# models below are defined in the column order of the SQL store's tables (the retired
# tables' surrogate key and stamp first, the outbox id before its other columns).


class Retired(models.Model):
    """What a retired row adds: a surrogate key and when it was retired."""

    retired_id: models.BigAutoField[int, int] = models.BigAutoField(primary_key=True)
    retired_at = UTCDateTimeField()

    class Meta:
        abstract = True


class OutboxId(models.Model):
    """The outbox's id."""

    id: models.BigAutoField[int, int] = models.BigAutoField(primary_key=True)

    class Meta:
        abstract = True


class RetiredOutboxId(models.Model):
    """The id of a retired outbox row (no longer a key)."""

    id = IdentityField()

    class Meta:
        abstract = True


class TransitionColumns(models.Model):
    """The columns of a history row."""

    entity_type = ExactCharField(max_length=NAME_MAX)
    entity_key = ExactCharField(max_length=KEY_MAX)
    seq: models.IntegerField[int, int] = models.IntegerField()
    event: models.CharField[str, str] = models.CharField(max_length=NAME_MAX)
    source: models.CharField[str, str] = models.CharField(max_length=NAME_MAX)
    target: models.CharField[str, str] = models.CharField(max_length=NAME_MAX)
    at = UTCDateTimeField()
    actor: models.CharField[str | None, str | None] = models.CharField(
        max_length=LABEL_MAX, null=True
    )
    correlation_id: models.CharField[str | None, str | None] = models.CharField(
        max_length=LABEL_MAX, null=True
    )
    idempotency_key = ExactCharField(max_length=KEY_MAX, null=True)
    payload = PlainJSONField(null=True)
    definition_version: models.IntegerField[int | None, int | None] = models.IntegerField(null=True)
    note = PlainTextField(null=True)

    class Meta:
        abstract = True


class Transition(TransitionColumns):
    """One applied transition; `seq` is the entity's new version."""

    pk = models.CompositePrimaryKey("entity_type", "entity_key", "seq")

    class Meta:
        db_table = "statekit_transitions"
        constraints = [
            models.UniqueConstraint(
                fields=["entity_type", "entity_key", "idempotency_key"],
                name="uq_statekit_transitions_idempotency",
            )
        ]
        indexes = [NamedIndex(fields=["entity_type", "at"], name="ix_statekit_transitions_at")]


class CompensationColumns(models.Model):
    """The columns of an outbox row, but its id."""

    entity_type = ExactCharField(max_length=NAME_MAX)
    entity_key = ExactCharField(max_length=KEY_MAX)
    step_seq: models.IntegerField[int, int] = models.IntegerField()
    action: models.CharField[str, str] = models.CharField(max_length=HANDLER_NAME_MAX)
    event: models.CharField[str, str] = models.CharField(max_length=NAME_MAX)
    status: models.CharField[str, str] = models.CharField(max_length=16)
    attempts: models.IntegerField[int, int] = models.IntegerField()
    max_attempts: models.IntegerField[int, int] = models.IntegerField()
    next_attempt_at = UTCDateTimeField()
    lease_until = UTCDateTimeField(null=True)
    claim_token: models.CharField[str | None, str | None] = models.CharField(
        max_length=32, null=True
    )
    last_error = PlainTextField(null=True)
    created_at = UTCDateTimeField()
    updated_at = UTCDateTimeField()

    class Meta:
        abstract = True


class Compensation(OutboxId, CompensationColumns):
    """The compensation outbox: one row per step to undo."""

    class Meta:
        db_table = "statekit_compensations"
        constraints = [
            models.UniqueConstraint(
                fields=["entity_type", "entity_key", "step_seq", "action"],
                name="uq_statekit_compensations_step",
            )
        ]
        indexes = [
            NamedIndex(fields=["status", "next_attempt_at"], name="ix_statekit_compensations_due")
        ]


class AttemptColumns(models.Model):
    """The columns of an attempt row."""

    compensation_id = IdentityField()
    attempt: models.IntegerField[int, int] = models.IntegerField()
    at = UTCDateTimeField()
    succeeded: models.BooleanField[bool, bool] = models.BooleanField()
    error = PlainTextField(null=True)

    class Meta:
        abstract = True


class CompensationAttempt(AttemptColumns):
    """Every attempt at a compensation, with its error."""

    pk = models.CompositePrimaryKey("compensation_id", "attempt")

    class Meta:
        db_table = "statekit_compensation_attempts"


class RetiredTransition(Retired, TransitionColumns):
    """Rows of `statekit_transitions` from earlier lives of their keys."""

    class Meta:
        db_table = "statekit_retired_transitions"
        indexes = [
            NamedIndex(
                fields=["entity_type", "entity_key"], name="ix_statekit_retired_transitions_key"
            )
        ]


class RetiredCompensation(Retired, RetiredOutboxId, CompensationColumns):
    """Rows of `statekit_compensations` from earlier lives of their keys."""

    class Meta:
        db_table = "statekit_retired_compensations"
        indexes = [
            NamedIndex(
                fields=["entity_type", "entity_key"], name="ix_statekit_retired_compensations_key"
            )
        ]


class RetiredCompensationAttempt(Retired, AttemptColumns):
    """Rows of `statekit_compensation_attempts` from earlier lives of their keys."""

    class Meta:
        db_table = "statekit_retired_compensation_attempts"
        indexes = [
            NamedIndex(
                fields=["compensation_id"], name="ix_statekit_retired_compensation_attempts_key"
            )
        ]
