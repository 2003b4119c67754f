"""Rows of `statekit_transitions` to and from `TransitionRecord`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from statekit.records import TransitionRecord

__all__ = ["INSERT_COLUMNS", "RECORD_COLUMNS", "history_row", "record_of"]

RECORD_COLUMNS = (
    "seq",
    "event",
    "source",
    "target",
    "at",
    "actor",
    "correlation_id",
    "idempotency_key",
    "payload",
    "definition_version",
)

INSERT_COLUMNS = ("entity_type", "entity_key", *RECORD_COLUMNS)
"""The columns `history_row` fills."""


def history_row(record: TransitionRecord) -> dict[str, Any]:
    """The INSERT parameters of one history row."""
    return {
        "entity_type": record.entity_type,
        "entity_key": record.key,
        "seq": record.seq,
        "event": record.event,
        "source": record.source,
        "target": record.target,
        "at": record.at,
        "actor": record.actor,
        "correlation_id": record.correlation_id,
        "idempotency_key": record.idempotency_key,
        "payload": record.payload,
        "definition_version": record.definition_version,
    }


def record_of(entity_type: str, key: str, row: Sequence[Any]) -> TransitionRecord:
    """A record from a row selected with `RECORD_COLUMNS`."""
    seq, event_name, source, target, at, actor, correlation, idem, payload, version = row
    return TransitionRecord(
        entity_type=entity_type,
        key=key,
        seq=seq,
        event=event_name,
        source=source,
        target=target,
        at=at,
        actor=actor,
        correlation_id=correlation,
        idempotency_key=idem,
        payload=payload,
        definition_version=version,
    )
