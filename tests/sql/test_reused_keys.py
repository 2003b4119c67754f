"""Keys the database hands out again: a new row never inherits an old row's life.

SQLite gives a new row the highest INTEGER PRIMARY KEY plus one, so the key of a
deleted last row comes back; `TRUNCATE ... RESTART IDENTITY` (PostgreSQL) and
`TRUNCATE` (MariaDB) restart the counter. The old row's history, idempotency keys,
compensations and their attempts must not attach to the new row, on the driver
path and on SQLAlchemy's `Connection` alike, and `statekit check --db` reports rows
whose version disagrees with their history.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import (
    Column,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    Table,
    func,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from models.order import OrderWorkflow
from models.orm import ENTITIES, Base, OrderRow
from statekit import CompensationContext, ManualClock, Runner, StatekitError, StoreError
from statekit.cli import cli
from statekit.compensation import CompensationTask
from statekit.store.sqlalchemy import SQLAlchemyStore, statekit_tables
from statekit.sweeper import Sweeper, SweepResult
from tests.sql_support import example_engine
from tests.sweep_support import JobBase, JobRow, JobWorkflow, call_counts


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    with example_engine(database_url) as engine:
        yield engine


@pytest.fixture
def empty(engine: Engine) -> Iterator[Engine]:
    """The module's engine; every table is emptied after the test."""
    yield engine
    with engine.begin() as conn:
        for table in (*statekit_tables().metadata.sorted_tables, *Base.metadata.sorted_tables):
            conn.execute(table.delete())


def restart_orders(engine: Engine) -> None:
    """The application empties its orders table the way its database restarts keys."""
    statement = {
        "sqlite": "DELETE FROM orders",
        "postgresql": "TRUNCATE orders RESTART IDENTITY",
    }.get(engine.dialect.name, "TRUNCATE TABLE orders")
    with engine.begin() as conn:
        conn.execute(text(statement))


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar() or 0)


@pytest.mark.parametrize("driver_path", [True, False], ids=["driver", "connection"])
def test_a_database_assigned_key_handed_out_again_starts_a_clean_life(
    empty: Engine, driver_path: bool
) -> None:
    restart_orders(empty)  # the old row gets the first key
    store = SQLAlchemyStore(empty, ENTITIES, driver_path=driver_path)
    clock = ManualClock()
    orders = Runner(OrderWorkflow.machine, store, clock=clock)
    old = OrderRow(total=Decimal(10))
    orders.start(old)
    key = str(old.id)
    orders.fire_by_key(key, "reserve", idempotency_key="k-1")
    orders.fire_by_key(key, "cancel", idempotency_key="k-2")
    task = CompensationTask("order", key, 1, "release_stock", "reserve", max_attempts=3)
    with empty.begin() as conn:  # a step of the old life that a sweeper gave up on
        store.add_compensations_on(conn, [task], clock.now())
    (scheduled,) = store.compensations("order", key)
    with empty.begin() as conn:
        conn.execute(
            update(store.tables.compensations).values(status="dead", attempts=3, last_error="x")
        )
        conn.execute(
            store.tables.attempts.insert().values(
                compensation_id=scheduled.id, attempt=1, at=clock.now(), succeeded=False
            )
        )

    restart_orders(empty)
    clock.advance(minutes=5)
    new = OrderRow(total=Decimal(20))
    orders.start(new)
    assert str(new.id) == key  # the database handed the key out again

    assert list(store.history("order", key)) == []
    assert store.last_transition("order", key) is None
    assert store.compensations("order", key) == []
    first = orders.fire_by_key(key, "reserve", idempotency_key="k-1")
    assert not first.replayed
    assert (first.seq, first.at) == (1, clock.now())
    second = orders.fire_by_key(
        key, "pay", idempotency_key="k-2", amount=Decimal(20), reference="r"
    )
    assert (second.replayed, second.seq, second.target) == (False, 2, "paid")
    assert [r.event for r in store.history("order", key)] == ["reserve", "pay"]
    loaded = store.load("order", key)
    assert (loaded.state, loaded.version) == ("paid", 2)

    with empty.begin() as conn:  # the new life's own step 1 is scheduled, not swallowed
        store.add_compensations_on(conn, [task], clock.now())
    (fresh,) = store.compensations("order", key)
    assert (fresh.status, fresh.attempts, fresh.last_error) == ("pending", 0, None)
    assert fresh.id is not None
    assert store.attempts(fresh.id) == []

    # The old life is kept for audit, out of the live tables.
    assert [r.event for r in store.retired_history("order", key)] == ["reserve", "cancel"]
    assert count(empty, store.tables.retired_compensations) == 1
    assert count(empty, store.tables.retired_attempts) == 1


def test_a_compensation_claimed_before_its_instance_was_deleted_cannot_finish_on_the_next(
    empty: Engine,
) -> None:
    store = SQLAlchemyStore(empty, ENTITIES)
    clock = ManualClock()
    orders = Runner(OrderWorkflow.machine, store, clock=clock)
    orders.start(OrderRow(id=7, total=Decimal(10)))
    orders.fire_by_key(7, "reserve")
    task = CompensationTask("order", "7", 1, "release_stock", "reserve", max_attempts=3)
    with empty.begin() as conn:
        store.add_compensations_on(conn, [task], clock.now())
    (claimed,) = store.claim_compensations(clock.now(), 10, timedelta(minutes=5))

    store.delete("order", "7", keep_history=True)
    orders.start(OrderRow(id=7, total=Decimal(10)))
    with pytest.raises(StatekitError) as caught:  # the claim's row is gone: it cannot finish
        store.fail_compensation(
            claimed, clock.now(), error="late", next_attempt_at=clock.now(), dead=False
        )
    assert "compensate release_stock" in str(caught.value)
    assert store.compensations("order", "7") == []
    assert count(empty, store.tables.retired_compensations) == 1


def test_check_reports_rows_whose_version_disagrees_with_their_history(
    empty: Engine, database_url: str
) -> None:
    store = SQLAlchemyStore(empty, ENTITIES)
    orders = Runner(OrderWorkflow.machine, store, clock=ManualClock())
    for number in (1, 2, 3, 4):
        orders.start(OrderRow(id=number, total=Decimal(10)))
    orders.fire_by_key(1, "reserve")
    orders.fire_by_key(1, "cancel")
    orders.fire_by_key(2, "reserve")
    with Session(empty) as session, session.begin():  # behind statekit's back:
        session.delete(session.get(OrderRow, 2))  # 2 deleted and inserted again at version 0
    with Session(empty) as session, session.begin():
        session.add(OrderRow(id=2, total=Decimal(10), state="pending", state_version=0))
    with empty.begin() as conn:
        # 3: a version moved without history
        conn.execute(update(OrderRow).where(OrderRow.id == 3).values(state_version=4))
    result = CliRunner().invoke(cli, ["check", "-m", "models.orm", "--db", database_url])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "order 2: state_version 0 but its history has 1 transition(s), the last seq 1 "
        "(OrderRow; see docs/upgrading.md)",
        "order 3: state_version 4 but its history has 0 transition(s) "
        "(OrderRow; see docs/upgrading.md)",
        "Error: 2 problem(s) found",
    ]

    # The repair for 2, an instance that never moved: retire what it inherited.
    with pytest.raises(StatekitError, match="order 3 is at version 4, not 0"):
        store.retire_history("order", "3")
    assert store.retire_history("order", "2")
    assert not store.retire_history("order", "2")
    assert [r.event for r in store.retired_history("order", "2")] == ["reserve"]
    assert orders.fire_by_key(2, "cancel").seq == 1
    with empty.begin() as conn:
        conn.execute(update(OrderRow).where(OrderRow.id == 3).values(state_version=0))
    result = CliRunner().invoke(cli, ["check", "-m", "models.orm", "--db", database_url])
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("keep_history", [False, True], ids=["delete", "keep-history"])
def test_the_delete_command(empty: Engine, database_url: str, keep_history: bool) -> None:
    store = SQLAlchemyStore(empty, ENTITIES)
    orders = Runner(OrderWorkflow.machine, store, clock=ManualClock())
    for number in (1, 2):
        orders.start(OrderRow(id=number, total=Decimal(10)))
        orders.fire_by_key(number, "reserve")
    args = ["delete", "order", "1", "--db", database_url, "-m", "models.orm"]
    result = CliRunner().invoke(cli, [*args, *(["--keep-history"] if keep_history else [])])
    assert result.exit_code == 0, result.stderr
    kept = "retired" if keep_history else "deleted"
    assert result.stdout == f"order 1: deleted (history {kept})\n"
    assert [r.key for r in store.history("order", "1")] == []
    assert [r.key for r in store.retired_history("order", "1")] == ["1"] * keep_history
    assert [r.key for r in store.history("order", "2")] == ["2"]
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 1
    assert again.stderr == "Error: order 1 not found\n"


def test_a_key_replaced_in_the_callers_session_retires_with_its_transaction(
    empty: Engine,
) -> None:
    store = SQLAlchemyStore(empty, ENTITIES)
    orders = Runner(OrderWorkflow.machine, store, clock=ManualClock())
    orders.start(OrderRow(id=5, total=Decimal(10)))
    old = [orders.fire_by_key(5, "reserve", idempotency_key="k")]

    def replace(*, fail: bool) -> OrderRow:
        with Session(empty, expire_on_commit=False) as session, session.begin():
            session.delete(session.get(OrderRow, 5))
            session.flush()
            new = OrderRow(id=5, total=Decimal(20))
            session.add(new)
            orders.start(new)
            assert store.history("order", "5") == old  # not committed yet: still the old life
            if fail:
                raise RuntimeError("the caller's own work failed")
            return new

    with pytest.raises(RuntimeError):
        replace(fail=True)
    assert store.history("order", "5") == old  # rolled back with the caller's transaction
    assert store.load("order", "5").version == 1
    assert store.retired_history("order", "5") == []

    new = replace(fail=False)
    assert store.history("order", "5") == []
    assert store.retired_history("order", "5") == old
    with Session(empty, expire_on_commit=False) as session, session.begin():
        session.add(new)
        record = orders.fire(new, "reserve", idempotency_key="k")
    assert (record.replayed, record.seq) == (False, 1)
    assert store.history("order", "5") == [record]


def test_delete_of_a_row_others_reference_fails_whole(empty: Engine) -> None:
    notes = Table(
        "order_notes",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("order_id", ForeignKey(OrderRow.__table__.c.id), nullable=False),  # type: ignore[attr-defined]
    )
    notes.create(empty)
    try:
        store = SQLAlchemyStore(empty, ENTITIES)
        orders = Runner(OrderWorkflow.machine, store, clock=ManualClock())
        orders.start(OrderRow(id=8, total=Decimal(10)))
        kept = [orders.fire_by_key(8, "reserve")]
        with empty.begin() as conn:
            conn.execute(notes.insert().values(id=1, order_id=8))
        for keep_history in (False, True):
            with pytest.raises(StoreError, match="deleting order 8 failed"):
                store.delete("order", "8", keep_history=keep_history)
            assert store.load("order", "8").version == 1
            assert store.history("order", "8") == kept
            assert store.retired_history("order", "8") == []
    finally:
        notes.drop(empty)


def test_a_claimed_compensation_of_a_replaced_instance_never_runs_on_the_new_one(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    JobBase.metadata.create_all(engine)
    try:
        machine = JobWorkflow.machine
        called: list[tuple[str, str, int]] = []
        handler = machine.compensations["undo_first"]

        def counting(job: JobRow, undo: CompensationContext) -> None:
            called.append((job.state, undo.step.event, undo.step.seq))
            handler(job, undo)

        monkeypatch.setitem(machine.compensations, "undo_first", counting)
        store = SQLAlchemyStore(engine, {machine: JobRow})
        clock = ManualClock()
        jobs = Runner(machine, store, clock=clock)
        sweeper = Sweeper([jobs], clock=clock)
        jobs.start(JobRow(id="j1"))
        jobs.fire_by_key("j1", "advance")
        task = CompensationTask("job", "j1", 1, "undo_first", "advance", max_attempts=5)
        with engine.begin() as conn:
            store.add_compensations_on(conn, [task], clock.now())
        (claimed,) = store.claim_compensations(clock.now(), 10, timedelta(minutes=5))

        clock.advance(minutes=1)  # the instance is replaced while the claim is held
        store.delete("job", "j1", keep_history=True)
        jobs.start(JobRow(id="j1"))
        jobs.fire_by_key("j1", "advance")  # the new instance has a step 1 of its own

        result = SweepResult()
        sweeper.drain.compensate_one(claimed, result)
        assert called == []
        assert (result.lost_races, result.compensations_run) == (1, 0)
        with engine.connect() as conn:
            assert call_counts(conn) == {}
        assert store.load("job", "j1").state == "first"
        assert store.compensations("job", "j1") == []
    finally:
        JobBase.metadata.drop_all(engine)
