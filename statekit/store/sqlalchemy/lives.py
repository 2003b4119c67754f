"""One key, successive lives: retiring, deleting and checking an instance's rows.

History and compensation rows are keyed by (entity type, key) and outlive the
entity row, while databases hand keys out again (SQLite's INTEGER PRIMARY KEY after
the last row is deleted, `TRUNCATE ... RESTART IDENTITY`, natural keys). So the
live tables hold one life per key: `SQLAlchemyStore.create` moves whatever an
earlier life left under the new row's key to the `statekit_retired_*` tables, in
the creating transaction, before the new instance can fire. Its first transition
then gets seq 1, its idempotency keys are its own and its compensations are
scheduled afresh; the per-transition statements stay as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache, cached_property
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    Table,
    and_,
    bindparam,
    exists,
    insert,
    literal,
    or_,
    select,
)
from sqlalchemy import delete as sa_delete
from sqlalchemy.orm import object_session

from statekit.compensation import CompensationTask, lost_claim
from statekit.errors import InstanceNotFoundError, StoreError
from statekit.records import TransitionRecord
from statekit.store.sqlalchemy.errors import wrap
from statekit.store.sqlalchemy.history import RECORD_COLUMNS, record_of
from statekit.store.sqlalchemy.tables import StatekitTables, UTCDateTime

__all__ = [
    "CLAIM_READ",
    "LifeOperations",
    "lost_claim",
    "purge",
    "retire",
    "retired_history",
]


CLAIM_READ = "statekit_claim_read"
"""Session.info key: (task id, the claim and step columns) read with the entity."""


def read_with_entity(entity: object, task: CompensationTask) -> Any:
    """The claim and step row of `task` that `HandlerUnit.load` read together with
    `entity`, or None when it did not."""
    session = object_session(entity)
    held = None if session is None else session.info.get(CLAIM_READ)
    if held is None or held[0] != task.id:
        return None
    return held[1]


def _of_key(table: Table, entity_type: Any, key: Any) -> Any:
    return and_(table.c.entity_type == entity_type, table.c.entity_key == key)


def retire(
    conn: Connection, tables: StatekitTables, entity_type: str, key: str, at: datetime
) -> bool:
    """Move the live history, compensations and attempts of `key` to the retired
    tables (stamped `at`) in `conn`'s transaction; return whether there were any.

    One indexed probe when the key has no past, the common case.
    """
    probe = _past_probe(tables.transitions, tables.compensations)
    if not conn.execute(probe, {"type_": entity_type, "key_": key}).scalar():
        return False
    stamp = literal(at, UTCDateTime())
    for live, which in _rows_of_key(conn, tables, entity_type, key):
        names = [c.name for c in live.columns]
        # In key order, so the retired rows' surrogate keys follow it.
        rows = select(stamp, *live.columns).where(which).order_by(*live.primary_key.columns)
        conn.execute(insert(tables.retired(live)).from_select(["retired_at", *names], rows))
        conn.execute(sa_delete(live).where(which))
    return True


@cache
def _past_probe(history: Table, outbox: Table) -> Select[Any]:
    """Whether a key has live rows, built once per set of tables (building it costs
    as much as running it)."""
    return select(
        or_(
            exists().where(_of_key(history, bindparam("type_"), bindparam("key_"))),
            exists().where(_of_key(outbox, bindparam("type_"), bindparam("key_"))),
        )
    )


def purge(conn: Connection, tables: StatekitTables, entity_type: str, key: str) -> None:
    """Delete the live history, compensations and attempts of `key` in `conn`'s
    transaction (earlier, retired lives stay)."""
    for live, which in _rows_of_key(conn, tables, entity_type, key):
        conn.execute(sa_delete(live).where(which))


def _rows_of_key(
    conn: Connection, tables: StatekitTables, entity_type: str, key: str
) -> list[tuple[Table, Any]]:
    """Each live table with the condition selecting `key`'s rows. The key's outbox rows
    are locked first, so a sweeper finishing one of them waits, then finds it gone,
    instead of adding an attempt row between the moves."""
    outbox, attempts = tables.compensations, tables.attempts
    of_key = _of_key(outbox, entity_type, key)
    ids = [row[0] for row in conn.execute(select(outbox.c.id).where(of_key).with_for_update())]
    return [
        (tables.transitions, _of_key(tables.transitions, entity_type, key)),
        (attempts, attempts.c.compensation_id.in_(ids)),
        (outbox, of_key),
    ]


def retired_history(
    conn: Connection, tables: StatekitTables, entity_type: str, key: str
) -> list[TransitionRecord]:
    """The transitions of `key`'s earlier lives, oldest life first, each by seq."""
    t = tables.retired_transitions
    query = (
        select(*(t.c[name] for name in RECORD_COLUMNS))
        .where(_of_key(t, entity_type, key))
        .order_by(t.c.retired_id)
    )
    return [record_of(entity_type, key, row) for row in conn.execute(query)]


class LifeOperations:
    """Mixed into `SQLAlchemyStore`: deleting instances, reading earlier lives, and
    the sweeper's life-checked step lookup."""

    engine: Engine
    tables: StatekitTables
    _in_unit: Callable[[object, str], tuple[Connection, str, str]]  # SweepOperations'

    def binding(self, entity_type: str) -> Any:  # provided by SQLAlchemyStore
        raise NotImplementedError

    def delete(
        self,
        entity_type: str,
        key: str,
        *,
        keep_history: bool = False,
        at: datetime | None = None,
    ) -> None:
        """Delete the instance's row and its history, compensations and attempts in
        one transaction; with `keep_history`, move those to the retired tables
        (stamped `at`, default now) instead, for audit. Earlier lives of the key stay
        retired either way. A fire racing the delete either commits first (and its
        row goes too) or finds no row.

        Raises:
            InstanceNotFoundError: no row has this key.
            StoreError: the database failed; nothing was deleted.
        """
        binding = self.binding(entity_type)
        coerced = binding.coerce_key(key)
        text_key = str(coerced)  # as history stores it: "7" for an integer key 7
        with wrap(f"deleting {entity_type} {key}", self.engine):
            with self.engine.connect() as conn, conn.begin():
                gone = conn.execute(sa_delete(binding.table).where(binding.key == coerced))
                if gone.rowcount != 1:
                    raise InstanceNotFoundError(entity_type=entity_type, key=key)
                if keep_history:
                    retire(conn, self.tables, entity_type, text_key, at or datetime.now(UTC))
                else:
                    purge(conn, self.tables, entity_type, text_key)

    def retire_history(self, entity_type: str, key: str, *, at: datetime | None = None) -> bool:
        """Retire the live history and compensations of an instance still at version 0:
        the repair for a row that inherited an earlier instance's rows before statekit
        retired them at `create` (`statekit check --db` lists such rows). Returns
        whether there was anything to retire.

        Raises:
            InstanceNotFoundError: no row has this key.
            StoreError: the row has moved (it has transitions of its own), or the
                database failed.
        """
        binding = self.binding(entity_type)
        coerced = binding.coerce_key(key)
        version = binding.columns["version"]
        with wrap(f"retiring the history of {entity_type} {key}", self.engine):
            with self.engine.connect() as conn, conn.begin():
                locked = select(version).where(binding.key == coerced).with_for_update()
                found = conn.execute(locked).first()
                if found is None:
                    raise InstanceNotFoundError(entity_type=entity_type, key=key)
                if found[0] != 0:
                    raise StoreError(
                        f"{entity_type} {key} is at version {found[0]}, not 0: its history "
                        "may be its own; only an instance that never moved can retire it"
                    )
                now = at or datetime.now(UTC)
                return retire(conn, self.tables, entity_type, str(coerced), now)

    def retired_history(self, entity_type: str, key: str) -> list[TransitionRecord]:
        """The transitions of the key's earlier lives (instances deleted or replaced
        by a new one with the same key), oldest life first."""
        with wrap("reading retired history", self.engine):
            with self.engine.connect() as conn:
                return retired_history(conn, self.tables, entity_type, key)

    def claimed_step(self, task: CompensationTask, entity: object) -> TransitionRecord | None:
        """The history record of the step `task` undoes, read in the entity's own
        transaction together with the claim (the sweeper asks before it calls the
        handler): the outbox row and the step must both be live, so they belong to
        the same life of the key. None: the claim holds but the step is not in the
        history.

        Raises:
            ConcurrentTransitionError: the claim is lost: its lease ran out and
                another sweeper took it, a person cancelled it, or the instance was
                deleted or replaced by a new one with the same key.
        """
        conn, name, key = self._in_unit(entity, "a step is read")
        row = read_with_entity(entity, task)
        if row is None:  # not read with the entity (see `claimed_load`): read it now
            row = conn.execute(
                self._claimed_step_query,
                {"id_": task.id, "token": task.claim_token, "type_": name, "key_": key},
            ).first()
        if row is None or row[0] is None:
            raise lost_claim(task)
        return None if row[1] is None else record_of(name, key, row[1:])

    def claimed_load(self, binding: Any) -> Select[Any]:
        """The entity of `binding`'s class with the claim and the step of one task,
        in one query (one round trip for `HandlerUnit.load`): the entity's row outer
        joined with the outbox row (the claim checked as in `claimed_step`) and its
        step's history row. Built once per class."""
        cache: dict[str, Select[Any]] = self.__dict__.setdefault("_claimed_loads", {})
        name = binding.machine.name
        query = cache.get(name)
        if query is None:
            c, t = self.tables.compensations, self.tables.transitions
            claim, step = self._claim_and_step
            query = cache[name] = (
                select(binding.entity_class, c.c.id, *(t.c[n] for n in RECORD_COLUMNS))
                .select_from(binding.entity_class)
                .outerjoin(c, claim)
                .outerjoin(t, step)
                .where(binding.key == bindparam("k_"))
            )
        return query

    @cached_property
    def _claim_and_step(self) -> tuple[Any, Any]:
        """The conditions `claimed_step` and `claimed_load` share: the outbox row is
        the task's and still claimed by its token (`id_`, `token`, `type_`, `key_`
        bound), and the history row is the step it undoes."""
        c, t = self.tables.compensations, self.tables.transitions
        claim = and_(
            c.c.id == bindparam("id_"),
            c.c.claim_token == bindparam("token"),
            c.c.status == "running",
            c.c.entity_type == bindparam("type_"),
            c.c.entity_key == bindparam("key_"),
        )
        step = and_(
            t.c.entity_type == c.c.entity_type,
            t.c.entity_key == c.c.entity_key,
            t.c.seq == c.c.step_seq,
        )
        return claim, step

    @cached_property
    def _claimed_step_query(self) -> Select[Any]:
        """`claimed_step`'s query, built once with everything that changes bound."""
        c, t = self.tables.compensations, self.tables.transitions
        claim, step = self._claim_and_step
        return (
            select(c.c.id, *(t.c[n] for n in RECORD_COLUMNS))
            .select_from(c.outerjoin(t, step))
            .where(claim)
        )
