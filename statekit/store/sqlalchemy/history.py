"""Rows of `statekit_transitions` to and from `TransitionRecord`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, Text, type_coerce

from statekit.errors import StoreError
from statekit.records import HISTORY_FIELDS, TransitionRecord

__all__ = ["INSERT_COLUMNS", "RECORD_COLUMNS", "history_row", "record_columns", "record_of"]

RECORD_COLUMNS = HISTORY_FIELDS

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


def record_columns(history: Table) -> list[Any]:
    """The `RECORD_COLUMNS` of `history` to select for `record_of`: the payload as the
    database's text, decoded by `record_of`, so a row that is not JSON is named."""
    return [
        type_coerce(history.c[name], Text()) if name == "payload" else history.c[name]
        for name in RECORD_COLUMNS
    ]


def record_of(entity_type: str, key: str, row: Sequence[Any]) -> TransitionRecord:
    """A record from a row selected with `record_columns`.

    Raises:
        StoreError: the row's payload is not a JSON object (or null).
    """
    seq, event_name, source, target, at, actor, correlation, idem, raw, version = row
    payload = _payload(entity_type, key, seq, raw)
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


def _payload(entity_type: str, key: str, seq: int, raw: Any) -> dict[str, Any] | None:
    """Decode a payload selected as text (drivers that decode JSON themselves, as
    psycopg does, hand over the value already decoded)."""
    try:
        value = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
    except ValueError as exc:
        raise StoreError(
            f"history row seq {seq} of {entity_type} {key} has a payload that is not valid "
            f"JSON ({exc}); repair or remove that row"
        ) from exc
    if value is not None and not isinstance(value, dict):
        raise StoreError(
            f"history row seq {seq} of {entity_type} {key} has a payload that is not a JSON "
            f"object: {type(value).__name__}"
        )
    return value
