"""Set-based writes for instances claimed by one sweeper transaction.

A sweep marks hundreds of instances at once. Row by row, the driver and SQLAlchemy
would spend more time than the database; so each batch is a handful of statements,
built once per machine, that take the batch's keys as one parameter: an array on
PostgreSQL, a JSON list on SQLite, an expanding IN list elsewhere. The database
builds the history rows from the rows just updated and the compensation outbox rows
from the instances' history.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Integer,
    String,
    Table,
    bindparam,
    cast,
    func,
    insert,
    literal_column,
    null,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from statekit.errors import ConcurrentTransitionError, InstanceNotFoundError
from statekit.records import Plan, Snapshot, TransitionRecord
from statekit.store.protocol import CompensatedSteps
from statekit.store.sqlalchemy.dialects import Capabilities, KeyList
from statekit.store.sqlalchemy.history import RECORD_COLUMNS, history_row
from statekit.store.sqlalchemy.tables import StatekitTables

__all__ = ["DueBatch", "MarkStatements", "insert_ignoring_duplicates"]

_HISTORY_CONSTANTS = ("entity_type", *(name for name in RECORD_COLUMNS if name != "seq"))
"""History columns one group of a batch shares (all but the key and the seq)."""
_OUTBOX_CONSTANTS = ("action", "max_attempts", "next_attempt_at")
_NOTE_LIMIT = 4000
"""Longest stuck reason written when a set-aside instance's column has no length."""


def insert_ignoring_duplicates(table: Table, caps: Capabilities) -> Any:
    """INSERT into the outbox that skips rows whose (entity, step, action) exists,
    except a `cancelled` one (a settled or resolved earlier stuck episode): a new
    mark reopens it as `pending` with its attempts granted again."""
    reopen = table.c.status == "cancelled"
    if caps.insert_ignore == "on_conflict":
        statement = (pg_insert if caps.name == "postgresql" else sqlite_insert)(table)
        new = statement.excluded
        return statement.on_conflict_do_update(
            index_elements=["entity_type", "entity_key", "step_seq", "action"],
            set_={
                "status": "pending",
                "next_attempt_at": new.next_attempt_at,
                "max_attempts": table.c.attempts + new.max_attempts,
                "last_error": None,
                "updated_at": new.updated_at,
            },
            where=reopen,
        )
    if caps.insert_ignore == "on_duplicate_key":
        upsert = mysql_insert(table)
        new = upsert.inserted
        reopen = table.c.status == literal_column("'cancelled'")  # no parameters in the
        keep_or = [  # clause (pymysql's executemany); MySQL assigns left to right
            (table.c.next_attempt_at, new.next_attempt_at),
            (table.c.max_attempts, table.c.attempts + new.max_attempts),
            (table.c.last_error, null()),
            (table.c.updated_at, new.updated_at),
            (table.c.status, literal_column("'pending'")),
        ]
        return upsert.on_duplicate_key_update(
            [(column.name, func.if_(reopen, value, column)) for column, value in keep_or]
        )
    return insert(table)  # pragma: no cover - other dialects: duplicates surface


def _hashable(payload: dict[str, Any] | None) -> Any:
    """The payload as a dict key: its items when they hash (a note), else its JSON."""
    if payload is None:
        return None
    items = tuple((k, type(v), v) for k, v in sorted(payload.items()))  # 1 == True
    try:
        hash(items)
    except TypeError:
        return json.dumps(payload, sort_keys=True)
    return items


def _is_hashable(payload: object) -> bool:
    """Whether a payload can key a group itself (None, or a frozen model such as the
    sweeper's notes, which compare by value)."""
    return payload is None or bool(getattr(payload, "model_config", {}).get("frozen"))


def _records(plans: Sequence[Plan]) -> list[TransitionRecord]:
    """The plans' history records, dumping each distinct payload object once (the
    plans of a sweep share the note of their reason)."""
    dumped: dict[int, dict[str, Any] | None] = {}
    records = []
    for plan in plans:
        payload = plan.payload
        key = id(payload)
        if key not in dumped:
            dumped[key] = plan.payload_data()
        data = dumped[key]
        records.append(plan.record_with(None if data is None else dict(data)))
    return records


class MarkStatements:
    """The statements that mark a batch of one machine's instances, built once.

    Keys travel as one parameter whatever the batch size, so the statement text
    (and the database's plan of it) never changes: a typed array on PostgreSQL, a
    JSON array read with `json_each` on SQLite (integer and text keys), and an
    expanding IN list elsewhere.
    """

    def __init__(self, binding: Any, tables: StatekitTables, caps: Capabilities) -> None:
        self.binding = binding
        # Integer and text keys read back as the text statekit keys by, and fit JSON.
        plain_keys = binding.key_type in (int, str)
        self.mode: KeyList = caps.key_list
        if self.mode == "json" and not plain_keys:
            self.mode = "expanding"
        key, cols = binding.key, binding.columns
        history, outbox = tables.transitions, tables.compensations
        text_keys = self._one_of(history.c.entity_key, String(), "texts")

        # The compare-and-set: every (key, version) pair must match.
        pair = tuple_(key, cols["version"])
        if self.mode == "array":
            given = (
                func.unnest(_array("keys", key.type), _array("versions", Integer()))
                .table_valued("k", "v")
                .render_derived(name="given")
            )
            matching = [pair.in_(select(given.c.k, given.c.v))]
        elif self.mode == "json":
            rows = func.json_each(bindparam("pairs")).table_valued("value")
            first, second = (func.json_extract(rows.c.value, f"$[{i}]") for i in (0, 1))
            matching = [self._one_of(key, key.type, "keys"), pair.in_(select(first, second))]
        else:  # the key list first, so the row-value test runs on those rows only
            pairs = pair.in_(bindparam("pairs", expanding=True))
            matching = [self._one_of(key, key.type, "keys"), pairs]
        self.update = update(binding.table).where(*matching).values(self._marked_values(cols))
        # Rows the claim locked for this transaction: their versions cannot move.
        self.update_locked = (
            update(binding.table)
            .where(self._one_of(key, key.type, "keys"))
            .values(self._marked_values(cols))
        )

        # History rows built by the database from the rows just updated.
        self.derives_history = plain_keys
        constants = {
            name: bindparam(f"h_{name}", type_=history.c[name].type) for name in _HISTORY_CONSTANTS
        }
        derived = select(*constants.values(), cast(key, String()), cols["version"]).where(
            self._one_of(key, key.type, "keys")
        )
        self.history = insert(history).from_select([*constants, "entity_key", "seq"], derived)
        self.history_rows = insert(history)

        # Outbox rows for every step of the batch that `action` undoes.
        outbox_constants = [
            bindparam(f"c_{name}", type_=outbox.c[name].type) for name in _OUTBOX_CONSTANTS
        ]
        steps = select(
            history.c.entity_type,
            history.c.entity_key,
            history.c.seq,
            history.c.event,
            *outbox_constants,
            bindparam("c_status", "pending", type_=outbox.c.status.type),
            bindparam("c_attempts", 0, type_=outbox.c.attempts.type),
            bindparam("c_created_at", type_=outbox.c.created_at.type),
            bindparam("c_updated_at", type_=outbox.c.updated_at.type),
        ).where(
            history.c.entity_type == binding.machine.name,
            text_keys,
            tuple_(history.c.source, history.c.event, history.c.target).in_(
                bindparam("steps", expanding=True)
            ),
        )
        columns = [
            "entity_type",
            "entity_key",
            "step_seq",
            "event",
            *_OUTBOX_CONSTANTS,
            "status",
            "attempts",
            "created_at",
            "updated_at",
        ]
        # preserve_rowcount: psycopg reports -1 for an INSERT ... SELECT otherwise.
        self.schedule = (
            insert_ignoring_duplicates(outbox, caps)
            .from_select(columns, steps)
            .execution_options(preserve_rowcount=True)
        )

    @staticmethod
    def _marked_values(cols: Mapping[str, Any]) -> dict[Any, Any]:
        """The SET clause of a mark: version + 1 and the plan's values."""
        return {
            cols["state"]: bindparam("state"),
            cols["version"]: cols["version"] + 1,
            # A stuck mark in place passes no entry time: the row keeps its own.
            cols["entered_at"]: func.coalesce(
                bindparam("entered_at", type_=cols["entered_at"].type),
                cols["entered_at"],
                bindparam("at", type_=cols["entered_at"].type),
            ),
            cols["deadline_at"]: bindparam("deadline_at", type_=cols["deadline_at"].type),
            cols["stuck_at"]: bindparam("stuck_at", type_=cols["stuck_at"].type),
            cols["stuck_reason"]: bindparam("stuck_reason"),
            cols["definition_version"]: bindparam("definition"),
        }

    def write(
        self,
        conn: Connection,
        plan: Plan,
        record: TransitionRecord,
        keys: Sequence[Any],
        versions: Sequence[int],
        history_rows: Sequence[dict[str, Any]] | None = None,
        *,
        locked: bool = False,
    ) -> None:
        """Write what `plan` writes to the instances `keys` at `versions` (one
        compare-and-set UPDATE), and their history rows: `record`'s but for key and
        seq, built by the database from the rows just updated, or `history_rows`.
        `locked`: this transaction's claim locked the rows at `versions` (FOR UPDATE,
        or SQLite's write lock), so the UPDATE need not compare them.

        Raises:
            ConcurrentTransitionError: a row is no longer at its version.
        """
        parameters: dict[str, Any] = {
            "keys": self.values(keys),
            "state": plan.target,
            "entered_at": None if plan.entered_at is not None else plan.at,
            "at": plan.at,
            "deadline_at": plan.deadline_at,
            "stuck_at": plan.at if plan.stuck_reason is not None else None,
            "stuck_reason": plan.stuck_reason,
            "definition": plan.definition_version,
        }
        if locked:
            result = conn.execute(self.update_locked, parameters)
        else:
            if self.mode == "array":  # the keys and versions as two arrays
                parameters["versions"] = self.values(versions)
            else:
                parameters["pairs"] = self.values(list(zip(keys, versions, strict=True)))
            result = conn.execute(self.update, parameters)
        if result.rowcount != len(keys):
            raise ConcurrentTransitionError(
                entity_type=plan.entity_type,
                key=plan.key or str(keys[0]),
                event=plan.event,
                expected_version=versions[0],
                actual_version=None,
            )
        if history_rows is not None:
            conn.execute(self.history_rows, list(history_rows))
            return
        row = history_row(record)
        history = {f"h_{name}": row[name] for name in _HISTORY_CONSTANTS}
        conn.execute(self.history, {"keys": parameters["keys"], **history})

    def schedule_steps(
        self, conn: Connection, texts: Any, compensated_steps: CompensatedSteps, now: datetime
    ) -> int:
        """Schedule the compensation of every step in the history of the instances
        `texts` (their text keys, see `values`) that declares one; returns how many
        rows were scheduled (or reopened)."""
        scheduled = 0
        for (action, attempts), steps in compensated_steps.items():
            parameters = {
                "texts": texts,
                "steps": list(steps),
                "c_action": action,
                "c_max_attempts": attempts,
                "c_next_attempt_at": now,
                "c_created_at": now,
                "c_updated_at": now,
            }
            scheduled += int(conn.execute(self.schedule, parameters).rowcount)
        return scheduled

    def _one_of(self, column: Any, item_type: Any, name: str) -> Any:
        """`column` is one of the values passed as `name` (see `values`)."""
        if self.mode == "array":
            return column == func.any(_array(name, item_type))
        if self.mode == "json":
            rows = func.json_each(bindparam(name)).table_valued("value")
            return column.in_(select(rows.c.value))
        return column.in_(bindparam(name, expanding=True))

    def values(self, values: Sequence[Any]) -> Any:
        """A list as the parameter of a one-of test or of the (key, version) pairs."""
        if self.mode == "json":
            return json.dumps(values)
        if self.mode == "array":
            return _array_literal(values)
        return values


def _array(name: str, item_type: Any) -> Any:
    """A PostgreSQL array parameter sent as its text form and cast by the server:
    the driver's own array dumping looks at every element in Python, which cost
    more than the statements it feeds."""
    return cast(bindparam(name, type_=String()), ARRAY(item_type))


def _array_literal(values: Sequence[Any]) -> str:
    """`values` (integers, or anything whose text is the element) as a PostgreSQL
    array literal: '{1,2,3}' or '{"a","b \\"quoted\\""}'."""
    if all(type(value) is int for value in values):
        return "{" + ",".join(map(str, values)) + "}"
    quoted = (str(value).replace("\\", "\\\\").replace('"', '\\"') for value in values)
    return "{" + ",".join(f'"{text}"' for text in quoted) + "}"


class DueBatch:
    """Instances claimed by one sweeper transaction (see `overdue_batch`)."""

    def __init__(
        self,
        statements: MarkStatements,
        session: Session,
        snapshots: list[Snapshot],
    ) -> None:
        self._statements = statements
        self._binding = statements.binding
        self._session = session
        self.snapshots = snapshots

    def entity(self, key: str) -> Any:
        """The entity object of a claimed instance, loaded in the batch's transaction."""
        entity = self._session.get(self._binding.entity_class, self._binding.coerce_key(key))
        if entity is None:  # pragma: no cover - the row is locked by this transaction
            raise InstanceNotFoundError(entity_type=self._binding.machine.name, key=key)
        return entity

    def forget(self, entity: object) -> None:
        """Drop an entity object from the batch, so nothing it holds is flushed."""
        self._session.expunge(entity)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A savepoint in the batch's transaction: released on a clean exit, rolled
        back (and the error re-raised) otherwise, leaving the batch usable."""
        with self._session.begin_nested():
            yield

    def set_aside(self, snapshot: Snapshot, note: str, since: datetime, until: datetime) -> bool:
        """Set a claimed instance aside without moving it: `stuck_at` = `since`,
        `stuck_reason` = `note` and its deadline = `until`, when the sweeper tries
        it again. Its version, state and history are left alone. Returns False
        when the row is no longer at the claimed version (another writer won).
        """
        binding, cols = self._binding, self._binding.columns
        key = binding.coerce_key(snapshot.key)
        loaded = self._session.identity_map.get(identity_key(binding.entity_class, key))
        if loaded is not None:  # nothing a failed attempt left on it may be flushed
            self._session.expunge(loaded)
        limit = getattr(cols["stuck_reason"].type, "length", None) or _NOTE_LIMIT
        result = self._session.connection().execute(
            update(binding.table)
            .where(binding.key == key, cols["version"] == snapshot.version)
            .values(
                {
                    cols["stuck_at"]: since,
                    cols["stuck_reason"]: note[:limit],
                    cols["deadline_at"]: until,
                }
            )
        )
        return int(result.rowcount) == 1

    def mark(
        self,
        plans: Sequence[Plan],
        compensated_steps: Mapping[tuple[str, int], Sequence[tuple[str, str, str]]],
        now: datetime,
    ) -> tuple[list[TransitionRecord], int]:
        """Apply system plans for claimed instances set-based, and schedule the
        compensations of every step in their history that declares one.

        Per group of plans that write the same history row but for key and seq:
        one compare-and-set UPDATE and one history INSERT; then one outbox INSERT
        per declared compensation, selected from the history rows by the database.
        Returns the records written and the number of compensations scheduled.

        Raises:
            ConcurrentTransitionError: a row's version moved (impossible while the
                claim holds it; checked where the driver reports per-batch counts).
        """
        if not plans:
            return [], 0
        conn = self._session.connection()
        records = _records(plans)
        groups: dict[tuple[Any, ...], list[tuple[Plan, TransitionRecord]]] = {}
        for plan, record in zip(plans, records, strict=True):
            payload = plan.payload
            shape = (
                plan.event,
                plan.source,
                plan.target,
                plan.at,
                plan.deadline_at,
                plan.stuck_reason,
                plan.definition_version,
                plan.actor,
                plan.correlation_id,
                plan.idempotency_key,
                payload if _is_hashable(payload) else _hashable(record.payload),
            )
            groups.setdefault(shape, []).append((plan, record))
        for group in groups.values():
            self._write_group(conn, group)
        texts = self._statements.values([record.key for record in records])
        return records, self._statements.schedule_steps(conn, texts, compensated_steps, now)

    def _write_group(
        self, conn: Connection, group: Sequence[tuple[Plan, TransitionRecord]]
    ) -> None:
        """The compare-and-set UPDATE and the history rows of plans that set the
        same values."""
        keys = [self._binding.coerce_key(plan.key or "") for plan, _ in group]
        versions = [plan.expected_version for plan, _ in group]
        rows = None if self._statements.derives_history else [history_row(r) for _, r in group]
        self._statements.write(conn, *group[0], keys, versions, rows)
