"""Worker processes for the contention and crash tests: `python -m tests.workers CMD JSON`.

Each command prints one JSON line with what it did, so the parent test can check
the database against what every process reported.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import time
from typing import Any

from sqlalchemy import Connection, Engine, event, func, insert, select, update
from sqlalchemy.orm import Session

from models.orm import ENTITIES, TicketRow
from models.ticket import TicketWorkflow
from statekit import (
    ConcurrentTransitionError,
    Machine,
    Runner,
    TransitionNotAllowedError,
    TransitionRecord,
)
from statekit.records import Plan
from statekit.store.protocol import LockedCompletion, Relocked
from statekit.store.sqlalchemy import SQLAlchemyStore
from statekit.store.sqlalchemy.history import history_row as _history_row
from statekit.store.sqlalchemy.store import EntityBinding
from statekit.store.sqlalchemy.units import Writes
from tests.sql_support import engine_for

CYCLE = {"in_progress": "ask_customer", "waiting_on_customer": "reply"}


class UnguardedWrites(Writes):
    """The control's writes: without the version predicate, and history rows numbered
    by the writer itself, as a library without optimistic locking would."""

    def write(
        self, conn: Connection, binding: EntityBinding, plan: Plan, record: TransitionRecord
    ) -> None:
        cols = binding.columns
        key = binding.coerce_key(plan.key or "")
        conn.execute(
            update(binding.table)
            .where(binding.key == key)
            .values({cols["state"]: plan.target, cols["version"]: plan.expected_version + 1})
        )
        history = self.transitions
        next_seq = conn.execute(
            select(func.coalesce(func.max(history.c.seq), 0) + 1).where(
                history.c.entity_type == plan.entity_type, history.c.entity_key == plan.key
            )
        ).scalar()
        conn.execute(insert(history), {**_history_row(record), "seq": next_seq})


class UnguardedStore(SQLAlchemyStore):
    """The control: a store whose units write with `UnguardedWrites`."""

    def __init__(self, engine: Engine, entities: dict[Machine, type], **options: Any) -> None:
        super().__init__(engine, entities, **options)
        self._writes = UnguardedWrites(engine, self.writer, self.tables.transitions)


def _runner(url: str, unguarded: bool = False) -> tuple[Runner, SQLAlchemyStore]:
    engine = engine_for(url)
    if unguarded:  # its writes replace the Connection path's: keep that path
        store: SQLAlchemyStore = UnguardedStore(engine, ENTITIES, driver_path=False)
    else:
        store = SQLAlchemyStore(engine, ENTITIES)
    return Runner(TicketWorkflow.machine, store), store


def hammer(
    url: str, keys: list[str], attempts: int, seed: int, unguarded: bool, by_key: bool = False
) -> dict[str, Any]:
    """Read a ticket, then fire its next event on that (possibly stale) copy; with
    `by_key`, fire that event with `fire_by_key`, which loads the ticket again (a
    refusal then means another worker moved it first)."""
    runner, store = _runner(url, unguarded)
    rng = random.Random(seed)
    fired: dict[str, int] = dict.fromkeys(keys, 0)
    conflicts = errors = refused = 0
    for _ in range(attempts):
        key = rng.choice(keys)
        with Session(store.engine, expire_on_commit=False) as session:
            ticket = session.get(TicketRow, key)
        assert ticket is not None
        try:
            if by_key:
                runner.fire_by_key(key, CYCLE[ticket.state])
            else:
                runner.fire(ticket, CYCLE[ticket.state])
        except ConcurrentTransitionError:
            conflicts += 1
        except TransitionNotAllowedError:
            refused += 1
        except Exception as exc:  # reported, and the test fails on any
            errors += 1
            print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        else:
            fired[key] += 1
    return {"fired": fired, "conflicts": conflicts, "errors": errors, "refused": refused}


def stale_round(url: str, keys: list[str], unguarded: bool) -> dict[str, Any]:
    """Load every ticket, wait for the parent's go, then fire on those copies: all
    workers act on the same versions, so only the version predicate can stop them."""
    runner, store = _runner(url, unguarded)
    with Session(store.engine, expire_on_commit=False) as session:
        tickets = [session.get(TicketRow, key) for key in keys]
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()
    fired: dict[str, int] = dict.fromkeys(keys, 0)
    conflicts = 0
    for ticket in tickets:
        assert ticket is not None
        try:
            runner.fire(ticket, CYCLE[ticket.state])
        except ConcurrentTransitionError:
            conflicts += 1
        else:
            fired[ticket.id] += 1
    return {"fired": fired, "conflicts": conflicts, "errors": 0}


def hang_before_commit(url: str, key: str) -> dict[str, Any]:
    """Apply a transition, then stop between the UPDATE and the COMMIT until killed."""
    runner, store = _runner(url)

    @event.listens_for(store.engine, "commit")
    def _hang(conn: Connection) -> None:
        print(json.dumps({"ready": True}), flush=True)
        sys.stdin.readline()  # the parent kills us while we wait here

    with Session(store.engine, expire_on_commit=False) as session:
        ticket = session.get(TicketRow, key)
    assert ticket is not None
    runner.fire(ticket, CYCLE[ticket.state])
    return {"committed": True}


def hang_before_commit_by_key(url: str, key: str) -> dict[str, Any]:
    """`fire_by_key` stopped just before its write is committed, until killed. On
    the driver path statements are logged on `statekit.sql` before they run: SQLite
    stops before COMMIT, PostgreSQL before the statement that writes and commits.
    Elsewhere the engine's commit event stops it."""
    runner, store = _runner(url)

    def hang() -> None:
        print(json.dumps({"ready": True}), flush=True)
        sys.stdin.readline()  # the parent kills us while we wait here

    class HangAtCommit(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == "COMMIT" or record.getMessage().startswith("WITH"):
                hang()

    sql = logging.getLogger("statekit.sql")
    sql.setLevel(logging.DEBUG)
    sql.addHandler(HangAtCommit())
    with Session(store.engine, expire_on_commit=False) as session:
        ticket = session.get(TicketRow, key)
    assert ticket is not None
    if store.engine.dialect.name == "mysql":
        event.listen(store.engine, "commit", lambda conn: hang())
    runner.fire_by_key(key, CYCLE[ticket.state])
    return {"committed": True}


def duplicate(url: str, key: str, idempotency_key: str, by_key: bool = False) -> dict[str, Any]:
    """Load, wait for the parent's go, then fire with a shared idempotency key (with
    `by_key`, through `fire_by_key`)."""
    runner, store = _runner(url)
    with Session(store.engine, expire_on_commit=False) as session:
        ticket = session.get(TicketRow, key)
    assert ticket is not None
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()
    if by_key:
        record = runner.fire_by_key(key, CYCLE[ticket.state], idempotency_key=idempotency_key)
    else:
        record = runner.fire(ticket, CYCLE[ticket.state], idempotency_key=idempotency_key)
    return {"seq": record.seq, "replayed": record.replayed}


def duplicate_rounds(
    url: str, key: str, rounds: int, base: int, driver_path: bool
) -> dict[str, Any]:
    """Deliver `assign` (an event with an action) once per round with the round's
    idempotency key, as a queue that delivers every message several times would.
    Before round r the worker waits (briefly) until round r-1 is in the database, so
    the workers of one round race each other."""
    engine = engine_for(url)
    store = SQLAlchemyStore(engine, ENTITIES, driver_path=driver_path)
    runner = Runner(TicketWorkflow.machine, store)
    version = select(TicketRow.state_version).where(TicketRow.id == key)
    applied = replayed = conflicts = errors = raced = 0
    apply = store.apply

    def counting_apply(*args: Any, **kwargs: Any) -> TransitionRecord:
        nonlocal raced
        try:
            return apply(*args, **kwargs)
        except ConcurrentTransitionError:
            raced += 1  # this delivery decided, then lost its compare-and-set
            raise

    recorded = store.recorded

    def slow_recorded(*args: Any, **kwargs: Any) -> Any:
        found = recorded(*args, **kwargs)
        if found is None:
            time.sleep(0.02)  # widen the gap between "not recorded yet" and the write
        return found

    store.apply = counting_apply  # type: ignore[method-assign]
    store.recorded = slow_recorded  # type: ignore[method-assign]
    for number in range(rounds):
        deadline = time.monotonic() + 2  # then deliver anyway
        with engine.connect() as conn:
            while time.monotonic() < deadline:
                if (conn.execute(version).scalar() or 0) >= base + number:
                    break
                conn.rollback()
                time.sleep(0.001)
        try:
            record = runner.fire_by_key(
                key, "assign", idempotency_key=f"round-{number}", agent=f"agent-{number}"
            )
        except ConcurrentTransitionError:
            conflicts += 1
        except Exception as exc:  # reported, and the test fails on any
            errors += 1
            print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        else:
            if record.replayed:
                replayed += 1
            else:
                applied += 1
    engine.dispose()
    return {
        "applied": applied,
        "replayed": replayed,
        "conflicts": conflicts,
        "errors": errors,
        "raced": raced,
    }


def _job_sweeper(url: str, batch_size: int, concurrency: int = 1) -> Any:
    from statekit import Sweeper
    from tests.sweep_support import JobRow, JobWorkflow

    engine = engine_for(url)
    store = SQLAlchemyStore(engine, {JobWorkflow.machine: JobRow})
    runner = Runner(JobWorkflow.machine, store)
    return Sweeper([runner], batch_size=batch_size, concurrency=concurrency)


def sweep(url: str, batch_size: int, concurrency: int = 1) -> dict[str, Any]:
    """Wait for the parent's go, then run one sweeper pass over the jobs."""
    sweeper = _job_sweeper(url, batch_size, concurrency)
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()
    return dict(sweeper.run_once().as_dict())


def sweep_until_killed(
    url: str,
    batch_size: int,
    hang_at_instance: int = 0,
    hang_at_compensation: int = 0,
    after_write: bool = False,
) -> dict[str, Any]:
    """Run a pass, but stop (until killed) inside the batch transaction that is
    timing out instance number `hang_at_instance`, or inside the transaction of
    compensation number `hang_at_compensation` after its handler ran. `after_write`:
    stop once the batch of instance `hang_at_instance` is written and committed, before
    the sweeper reads the database's answer (where the batch commits itself)."""
    sweeper = _job_sweeper(url, batch_size)
    counts = {"instances": 0, "compensations": 0}

    def hang() -> None:
        print(json.dumps({"ready": True}), flush=True)
        sys.stdin.readline()

    time_out, complete = sweeper.deadlines._time_out, sweeper.store.complete_compensation

    def counting_time_out(*args: Any) -> str | None:
        reason: str | None = time_out(*args)
        counts["instances"] += 1
        if counts["instances"] == hang_at_instance:
            hang()  # inside the batch transaction: nothing of this batch is written yet
        return reason

    def counting_complete(*args: Any) -> int:
        remaining: int = complete(*args)
        counts["compensations"] += 1
        if counts["compensations"] == hang_at_compensation:
            hang()
        return remaining

    # The drain completes through `relock_and_complete` where the store has it (on
    # PostgreSQL one statement that never calls `complete_compensation`).
    relock = sweeper.store.relock_and_complete

    def counting_relock(*args: Any) -> Relocked:
        relocked = relock(*args)
        if relocked.remaining is not None:  # completed, not yet committed
            counts["compensations"] += 1
            if counts["compensations"] == hang_at_compensation:
                hang()
        return relocked

    # Instances marked stuck set-based go a batch at a time: hang before the commit of
    # the batch that holds instance number `hang_at_instance`.
    mark, batches = sweeper.store.mark_overdue_stuck, {"number": 0, "open": False}
    hang_at_batch = (hang_at_instance - 1) // batch_size + 1 if hang_at_instance else 0

    def counting_mark(*args: Any) -> Any:
        batches["number"] += 1
        batches["open"] = True
        try:
            return mark(*args)
        finally:
            batches["open"] = False

    def before_commit(conn: Any) -> None:
        if batches["open"] and batches["number"] == hang_at_batch:
            hang()  # inside the batch transaction: nothing of this batch is written yet

    def around_self_committing(conn: Any, *args: Any) -> None:
        # PostgreSQL's one-statement mark commits itself: no COMMIT to stop before, so
        # stop before the statement is sent (nothing of this batch is written yet), or
        # with `after_write` once it has run (all of the batch is written).
        autocommit = conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
        if autocommit and batches["open"] and batches["number"] == hang_at_batch:
            hang()

    if not after_write:
        event.listen(sweeper.store.engine, "commit", before_commit)
    moment = "after_cursor_execute" if after_write else "before_cursor_execute"
    event.listen(sweeper.store.engine, moment, around_self_committing)
    sweeper.deadlines._time_out = counting_time_out  # type: ignore[method-assign]
    if isinstance(sweeper.store, LockedCompletion):
        sweeper.store.relock_and_complete = counting_relock  # type: ignore[method-assign]
    else:
        sweeper.store.complete_compensation = counting_complete  # type: ignore[method-assign]
    sweeper.store.mark_overdue_stuck = counting_mark  # type: ignore[method-assign]
    return dict(sweeper.run_once().as_dict())


def drain_proof(url: str, concurrency: int) -> dict[str, Any]:
    """Wait for the parent's go, then drain the proof orders (`tests.drain_proof`)."""
    from tests.drain_proof import drain

    return drain(url, concurrency)


def main() -> None:
    command, raw = sys.argv[1], sys.argv[2]
    handler = {
        "drain_proof": drain_proof,
        "hammer": hammer,
        "stale_round": stale_round,
        "hang": hang_before_commit,
        "hang_by_key": hang_before_commit_by_key,
        "duplicate": duplicate,
        "duplicate_rounds": duplicate_rounds,
        "sweep": sweep,
        "sweep_until_killed": sweep_until_killed,
    }[command]
    result = handler(**json.loads(raw))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
