"""The sweeper's side of `SQLAlchemyStore`: claiming overdue rows (the outbox is in
`outbox.py`).

Claims use `FOR UPDATE SKIP LOCKED` where the server has it (PostgreSQL, MySQL 8,
MariaDB 10.6+), detected once per store from the dialect and server version, so
concurrent sweepers take disjoint rows (on PostgreSQL from both ends of the due list,
see `from_both_ends`); elsewhere (SQLite) the write transaction and compare-and-set
updates keep them apart. Compensation handlers never run inside a claim transaction.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import cached_property
from typing import Any

from sqlalchemy import (
    Engine,
    Integer,
    Select,
    bindparam,
    exists,
    func,
    literal,
    literal_column,
    not_,
    or_,
    orm,
    select,
    union_all,
)
from sqlalchemy.orm import Session

from statekit.records import Plan, Snapshot, TransitionRecord
from statekit.store.marks import StuckMarks
from statekit.store.protocol import COMPENSATIONS_DUE, CompensatedSteps
from statekit.store.sqlalchemy.connections import reading
from statekit.store.sqlalchemy.dialects import capabilities
from statekit.store.sqlalchemy.errors import wrap
from statekit.store.sqlalchemy.history import record_columns
from statekit.store.sqlalchemy.history import record_of as _record
from statekit.store.sqlalchemy.marking import DueBatch, MarkStatements
from statekit.store.sqlalchemy.outbox import (
    compensation_due,
    supports_skip_locked,
)
from statekit.store.sqlalchemy.retention import RetentionOperations
from statekit.store.sqlalchemy.stuck import OneStatementMark, declared_steps
from statekit.store.sqlalchemy.tables import StatekitTables, UTCDateTime

__all__ = [
    "DueBatch",
    "SweepOperations",
    "from_both_ends",
    "lane_lock",
    "supports_skip_locked",
]

_LANE_CLASS = int.from_bytes(b"stkt")
"""The first half of the advisory lock key of a claim's lane (see `from_both_ends`)."""


def lane_lock(binding: Any) -> tuple[int, int]:
    """The advisory lock key (two int4) a claim of `binding`'s machine tries to take
    to be the head of its due list (see `from_both_ends`)."""
    name = f"{binding.table.fullname}:{binding.machine.name}".encode()
    return _LANE_CLASS, zlib.crc32(name) - (1 << 31)


def from_both_ends(
    query: Select[Any], binding: Any, limit: Any, *, ordered: bool = True
) -> Select[Any]:
    """`query`'s rows up to `limit`, locked and skipping locked rows, from the end of
    the due list no other open claim of the machine works on (PostgreSQL).

    A claim whose transaction takes the machine's advisory lock (`pg_try_advisory_
    xact_lock`, held until it commits) is the head: it takes the earliest deadlines.
    A claim made while another holds it takes the latest, so two sweepers work
    toward each other instead of the second stepping over the rows the first holds.
    A lone sweeper is always the head. The lock decides only the direction, never
    who may claim what: an application that happens to hold the same key turns
    statekit's claims around, nothing more. `ordered`: the rows come back earliest
    first (otherwise in no particular order, which spares a sort).
    """
    deadline, key = binding.columns["deadline_at"], binding.key
    lock = func.pg_try_advisory_xact_lock(*map(literal_column, map(str, lane_lock(binding))))
    # A CTE calling a volatile function is evaluated once, however often it is read.
    head = select(select(lock.label("head")).cte("claim_lane").c.head).scalar_subquery()
    order = (deadline.label("claim_deadline"), key.label("claim_key")) if ordered else ()
    ends = [
        query.add_columns(*order)
        .where(which)
        .order_by(*by)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .subquery(name)
        for name, which, by in (
            ("earliest", head, (deadline, key)),
            ("latest", not_(head), (deadline.desc(), key.desc())),
        )
    ]
    claimed = union_all(*(select(end) for end in ends)).subquery("claimed")
    columns = list(claimed.c)
    if not ordered:
        return select(*columns)
    return select(*columns[:-2]).order_by(*columns[-2:])


class SweepOperations(RetentionOperations):
    """Mixed into `SQLAlchemyStore`; the statements the `Sweeper` needs."""

    engine: Engine
    writer: Engine  # `engine` for statekit's write units (see sqlite.py)
    tables: StatekitTables
    sessionmaker: orm.sessionmaker[Session]

    def _mark_statements(self, binding: Any) -> MarkStatements:
        """The set-based marking statements of `binding`'s machine (built once)."""
        built: dict[str, MarkStatements] = self.__dict__.setdefault("_marking", {})
        name = binding.machine.name
        if name not in built:
            built[name] = MarkStatements(binding, self.tables, capabilities(self.engine))
        return built[name]

    def steps(self, entity: object) -> list[TransitionRecord]:
        """The entity's history, oldest first, read in the entity's own transaction."""
        conn, name, key = self._in_unit(entity, "steps are read")
        t = self.tables.transitions
        rows = conn.execute(
            select(*record_columns(t))
            .where(t.c.entity_type == name, t.c.entity_key == key)
            .order_by(t.c.seq)
        )
        return [_record(name, key, row) for row in rows]

    # -- overdue instances -----------------------------------------------------------

    @contextmanager
    def overdue_batch(self, entity_type: str, now: datetime, limit: int) -> Iterator[DueBatch]:
        """Claim up to `limit` instances whose deadline has passed, in one transaction
        that commits on a clean exit; work done through the yielded `DueBatch` (and
        transitions fired on entities it loads) joins that transaction.

        Stuck instances have no deadline, so the due index alone covers the claim.
        """
        binding = self.binding(entity_type)
        query = self._overdue_claim(binding)
        parameters = {"now": now, "limit": limit}
        with wrap(f"sweeping {entity_type}", self.engine):
            with self._sweep_sessions() as session:
                session.begin()
                rows = session.connection().execute(query, parameters).all()
                snapshots = [binding.snapshot(row) for row in rows]
                yield DueBatch(self._mark_statements(binding), session, snapshots)
                session.commit()

    def _overdue_claim(self, binding: Any) -> Select[Any]:
        """The claim of `binding`'s overdue instances, built once with the time and the
        limit bound (the time rendered at execution on PostgreSQL, as in `due`)."""
        built: dict[str, Select[Any]] = self.__dict__.setdefault("_overdue_claims", {})
        name = binding.machine.name
        if name not in built:
            built[name] = self._claim(binding.snapshot_select(), binding)
        return built[name]

    def _claim(
        self,
        query: Select[Any],
        binding: Any,
        *conditions: Any,
        rendered: bool = True,
        ordered: bool = True,
    ) -> Select[Any]:
        """`query` on `binding`'s overdue rows that meet `conditions`, earliest deadline
        first (from both ends beside another claim on PostgreSQL, see `from_both_ends`),
        with the time and the limit bound, locked and skipping locked rows where the
        server can. `rendered`: the limit, and on PostgreSQL the time (as in `due`),
        are rendered into the cached statement at execution; otherwise both stay
        parameters, so the statement's text never changes. `ordered`: the rows come
        back earliest first."""
        deadline, key = binding.columns["deadline_at"], binding.key
        caps = capabilities(self.engine)
        now = bindparam(
            "now", type_=UTCDateTime(), literal_execute=rendered and caps.inline_probe_time
        )
        limit = bindparam("limit", type_=Integer(), literal_execute=rendered)
        query = query.where(deadline <= now, *conditions)
        if not (self.skip_locked and caps.claim_lanes):
            query = query.order_by(deadline, key).limit(limit)
            return query.with_for_update(skip_locked=True) if self.skip_locked else query
        return from_both_ends(query, binding, limit, ordered=ordered)

    def mark_overdue_stuck(
        self,
        entity_type: str,
        plans: Mapping[str, Plan],
        accepted_versions: Collection[int],
        compensated_steps: CompensatedSteps,
        now: datetime,
        limit: int,
        keys: bool = True,
    ) -> StuckMarks | None:
        """Claim up to `limit` overdue instances in the states of `plans` and mark
        them stuck set-based (see `StuckMarking`): the claim, then per state one
        compare-and-set UPDATE and one history INSERT ... SELECT, and one outbox
        INSERT ... SELECT per declared compensation, in one transaction. Nothing is
        built per instance but its (key, seq, state). None when the key type is
        neither integer nor text (the history rows could not be built by the
        database)."""
        binding = self.binding(entity_type)
        statements = self._mark_statements(binding)
        if not statements.derives_history or not plans:
            return None
        states, accepted = tuple(plans), tuple(sorted(accepted_versions))
        templates = {state: plan.record() for state, plan in plans.items()}
        marks = StuckMarks(templates)
        one = self._one_statement_mark(binding, states, accepted, compensated_steps)
        parameters = None if one is None else one.parameters(plans, templates, now, limit)
        with wrap(f"marking overdue {entity_type} instances stuck", self.engine):
            if one is not None and parameters is not None:
                # One statement is its own transaction: no BEGIN and COMMIT round trips.
                with self._claim_engine.connect() as conn:
                    if not keys:
                        counts = conn.execute(one.counting, parameters).one()
                        marks.count = int(counts[0])
                        marks.scheduled = int(counts[2]) if len(counts) > 2 else 0
                        return marks
                    rows = conn.execute(one.statement, parameters).all()
                marks.marked = [(str(row[0]), row[1], row[2]) for row in rows]
                marks.count = len(rows)
                if rows and len(rows[0]) > 4:
                    marks.scheduled = int(rows[0][4])
                return marks
            with self._sweep_engine.begin() as conn:
                query = self._stuck_claim(binding, states, accepted)
                claimed = conn.execute(query, {"now": now, "limit": limit}).all()
                if not claimed:
                    return marks
                groups: dict[str, tuple[list[Any], list[int]]] = {}
                for key, version, state in claimed:
                    group_keys, versions = groups.setdefault(state, ([], []))
                    group_keys.append(key)
                    versions.append(version)
                # The claim holds the rows (FOR UPDATE, or SQLite's write lock): the
                # UPDATE compares versions only where it takes no lock.
                locked = self.skip_locked or capabilities(self.engine).explicit_begin
                for state, (group_keys, versions) in groups.items():
                    plan, record = plans[state], templates[state]
                    statements.write(conn, plan, record, group_keys, versions, locked=locked)
                texts = statements.values([str(row[0]) for row in claimed])
                marks.scheduled = statements.schedule_steps(conn, texts, compensated_steps, now)
        marks.count = len(claimed)
        if keys:
            marks.marked = [(str(key), version + 1, state) for key, version, state in claimed]
        return marks

    def _one_statement_mark(
        self,
        binding: Any,
        states: tuple[str, ...],
        accepted: tuple[int, ...],
        compensated_steps: CompensatedSteps,
    ) -> OneStatementMark | None:
        """The one-statement stuck mark of `states` where the database has it
        (PostgreSQL), built once per machine; None elsewhere."""
        if not (capabilities(self.engine).one_statement_write and self.skip_locked):
            return None
        built: dict[tuple[Any, ...], OneStatementMark] = self.__dict__.setdefault(
            "_one_statement_marks", {}
        )
        steps = declared_steps(compensated_steps)
        name = (binding.machine.name, states, accepted, steps)
        if name not in built:
            claim = self._stuck_claim(binding, states, accepted)
            caps = capabilities(self.engine)
            built[name] = OneStatementMark(claim, binding, self.tables, caps, states, steps)
        return built[name]

    def _stuck_claim(
        self, binding: Any, states: tuple[str, ...], accepted: tuple[int, ...]
    ) -> Select[Any]:
        """The claim of `binding`'s overdue instances in `states` at a version from 0
        up under an accepted definition version, as `Machine.system_plan` would take
        them: key, version and state (built once per machine)."""
        built: dict[tuple[Any, ...], Select[Any]] = self.__dict__.setdefault("_stuck_claims", {})
        name = (binding.machine.name, states, accepted)
        if name not in built:
            cols = binding.columns
            state, definition = cols["state"], cols["definition_version"]
            # Plain parameters, no expanding IN lists: the statement's text stays the
            # same from batch to batch (PostgreSQL's one statement is then prepared
            # once by the driver instead of parsed and planned for every batch).
            built[name] = self._claim(
                select(binding.key, cols["version"], state),
                binding,
                or_(*(state == literal(s) for s in states)),
                cols["version"] >= 0,  # other rows go one at a time, and are refused
                or_(definition.is_(None), *(definition == literal(v) for v in accepted)),
                rendered=False,
                ordered=False,  # marked as a set
            )
        return built[name]

    def due(self, entity_types: Sequence[str], now: datetime) -> set[str]:
        """Which of `entity_types` have an overdue instance, plus `"@compensations"`
        when a compensation is due: one cheap, non-locking query, so an idle sweeper
        costs about one indexed lookup per pass."""
        # Built once per set of machines, `now` bound: an idle sweeper polls often, and
        # building or compiling the probe costs more than running it. On PostgreSQL the
        # value is rendered into the cached statement at execution (`literal_execute`):
        # a prepared `deadline <= $1` may get a generic plan that scans the whole table
        # when nothing is due, where the value lets the due index answer.
        cache: dict[tuple[str, ...], Any] = self.__dict__.setdefault("_due_probes", {})
        key = tuple(entity_types)
        probe = cache.get(key)
        if probe is None:
            inline = capabilities(self.engine).inline_probe_time
            moment = bindparam("now", type_=UTCDateTime(), literal_execute=inline)
            probe = cache[key] = self._due_probe(key, moment)
        parameters = {"now": now}
        with wrap("checking for due work", self.engine):
            with self._probe_engine.connect() as conn:
                return {row[0] for row in conn.execute(probe, parameters)}

    def _due_probe(self, entity_types: Sequence[str], moment: Any) -> Any:
        """The UNION ALL of one EXISTS per machine and per way a compensation is due."""
        probes = [
            select(literal(name)).where(
                exists().where(self.binding(name).columns["deadline_at"] <= moment)
            )
            for name in entity_types
        ]
        # One EXISTS per way of being due, so each can use the outbox's due index.
        probes += [
            select(literal(COMPENSATIONS_DUE)).where(exists().where(condition))
            for condition in compensation_due(self.tables.compensations, moment)
        ]
        return union_all(*probes)

    @cached_property
    def _probe_engine(self) -> Engine:
        if not capabilities(self.engine).probe_autocommit:
            return self.engine
        return self.engine.execution_options(isolation_level="AUTOCOMMIT")

    def stuck(self, entity_type: str) -> list[Snapshot]:
        """Snapshots of the stuck instances of `entity_type`, oldest first."""
        binding = self.binding(entity_type)
        cols = binding.columns
        query = (
            binding.snapshot_select()
            .where(cols["stuck_at"].is_not(None))
            .order_by(cols["stuck_at"], binding.key)
        )
        with reading(self.engine, f"listing stuck {entity_type} instances") as conn:
            rows = conn.execute(query).all()
        return [binding.snapshot(row) for row in rows]
