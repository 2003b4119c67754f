"""SQLAlchemyStore on real SQLite files, PostgreSQL and MariaDB."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import Engine, ForeignKey, String, event, func, inspect, select, text, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from models.order import OrderWorkflow
from models.orm import ENTITIES, Base, OrderRow, TicketRow
from models.ticket import TicketWorkflow
from statekit import (
    ConcurrentTransitionError,
    Context,
    DefinitionMismatchError,
    GuardRejectedError,
    IdempotencyConflictError,
    InstanceNotFoundError,
    InvalidArgumentTypeError,
    Listener,
    ManualClock,
    PostconditionFailedError,
    Runner,
    State,
    StateFields,
    StoreError,
    TransitionNotAllowedError,
    TransitionRecord,
    Workflow,
)
from statekit.store.sqlalchemy import SQLAlchemyStore, StateMixin, statekit_tables
from tests.sql_support import example_engine


class Recorder(Listener):
    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def on_transition(self, record: TransitionRecord, entity: object) -> None:
        self.seen.append((record.event, record.seq))


@dataclass
class Env:
    engine: Engine
    store: SQLAlchemyStore
    clock: ManualClock
    orders: Runner
    tickets: Runner
    recorder: Recorder

    def new_order(self, order_id: int, total: str = "100", **fields: object) -> OrderRow:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            order = OrderRow(id=order_id, total=Decimal(total), **fields)
            session.add(order)
            self.orders.start(order)
        return order

    def row(self, order_id: int) -> tuple[str, int]:
        with self.engine.connect() as conn:
            found = conn.execute(
                select(OrderRow.state, OrderRow.state_version).where(OrderRow.id == order_id)
            ).one()
        return found[0], found[1]

    def history_count(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(self.store.tables.transitions)
                ).scalar()
                or 0
            )


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    with example_engine(database_url) as engine:
        yield engine


@pytest.fixture
def env(engine: Engine) -> Iterator[Env]:
    store = SQLAlchemyStore(engine, ENTITIES)
    store.create_tables()
    clock = ManualClock()
    recorder = Recorder()
    yield Env(
        engine=engine,
        store=store,
        clock=clock,
        orders=Runner(OrderWorkflow.machine, store, clock=clock, listeners=[recorder]),
        tickets=Runner(TicketWorkflow.machine, store, clock=clock),
        recorder=recorder,
    )
    with engine.begin() as conn:
        for table in (store.tables.transitions, *reversed(Base.metadata.sorted_tables)):
            conn.execute(table.delete())


def test_fire_in_callers_session_commits_with_the_callers_work(env: Env) -> None:
    env.new_order(1)
    with Session(env.engine) as session, session.begin():
        order = session.get(OrderRow, 1)
        assert order is not None
        env.orders.fire(order, "reserve", actor="alice")
        assert env.recorder.seen == []  # not committed yet
        order.sku = "SKU-CHANGED"  # the caller's own work in the same transaction
    assert env.recorder.seen == [("reserve", 1)]
    assert env.row(1) == ("stock_reserved", 1)
    [record] = env.store.history("order", "1")
    assert (record.seq, record.event, record.source, record.target, record.actor) == (
        1,
        "reserve",
        "pending",
        "stock_reserved",
        "alice",
    )
    with Session(env.engine) as session:
        reloaded = session.get(OrderRow, 1)
        assert reloaded is not None
        assert (reloaded.sku, reloaded.in_stock) == ("SKU-CHANGED", 9)


def test_a_fire_that_writes_only_the_state_leaves_the_session_nothing_to_flush(
    env: Env,
) -> None:
    env.new_order(1)
    flushes: list[int] = []
    with Session(env.engine) as session, session.begin():
        event.listen(session, "before_flush", lambda *_: flushes.append(1))
        order = session.get(OrderRow, 1)
        assert order is not None
        env.orders.fire(order, "cancel")  # no action: statekit wrote everything
        assert order not in session.dirty
    assert flushes == []  # the commit ran no (empty) flush
    assert env.row(1) == ("cancelled", 1)


def test_rollback_of_the_callers_transaction_leaves_no_trace(env: Env) -> None:
    env.new_order(1)
    with Session(env.engine) as session:
        session.begin()
        order = session.get(OrderRow, 1)
        assert order is not None
        env.orders.fire(order, "reserve")
        session.rollback()
    assert env.row(1) == ("pending", 0)
    assert env.history_count() == 0
    assert env.recorder.seen == []


def test_fire_by_key_commits_and_a_stale_object_loses(env: Env) -> None:
    order = env.new_order(7)
    record = env.orders.fire_by_key(7, "reserve")
    assert (record.seq, env.row(7)) == (1, ("stock_reserved", 1))
    assert env.recorder.seen == [("reserve", 1)]

    # `order` is a detached object still at version 0: firing it must lose the race.
    with pytest.raises(ConcurrentTransitionError) as caught:
        env.orders.fire(order, "cancel")
    assert (caught.value.expected_version, caught.value.actual_version) == (0, 1)
    assert (order.state, order.state_version) == ("pending", 0)  # restored
    assert env.row(7) == ("stock_reserved", 1)
    assert env.history_count() == 1


def test_refused_and_failed_transitions_write_nothing(env: Env) -> None:
    env.new_order(3, total="100")
    with pytest.raises(TransitionNotAllowedError):
        env.orders.fire_by_key(3, "ship", carrier="x", tracking_number="y")
    env.orders.fire_by_key(3, "reserve")
    with Session(env.engine) as session:
        # Make the post-condition fail: the books no longer balance after paying.
        session.execute(update(OrderRow).where(OrderRow.id == 3).values(paid_amount=5))
        session.commit()
    with pytest.raises(PostconditionFailedError, match="fully_paid"):
        env.orders.fire_by_key(3, "pay", amount=100, reference="r")
    assert env.row(3) == ("stock_reserved", 1)
    assert [r.event for r in env.store.history("order", "3")] == ["reserve"]


def test_idempotency_key_applies_once_even_from_another_store(env: Env) -> None:
    env.new_order(5)
    env.orders.fire_by_key(5, "reserve")
    first = env.orders.fire_by_key(5, "pay", amount=100, reference="r", idempotency_key="pay-5")
    other_store = SQLAlchemyStore(env.engine, ENTITIES)  # as another process would
    other = Runner(OrderWorkflow.machine, other_store, clock=env.clock)
    again = other.fire_by_key(5, "pay", amount=100, reference="r", idempotency_key="pay-5")
    assert again.replayed
    assert not first.replayed
    assert (again.seq, again.event, again.idempotency_key) == (first.seq, "pay", "pay-5")
    assert env.row(5) == ("paid", 2)
    with pytest.raises(IdempotencyConflictError, match="pay-5"):
        other.fire_by_key(5, "refund", idempotency_key="pay-5")
    assert env.history_count() == 2


def test_unknown_stored_state_or_version_is_a_definition_mismatch(env: Env) -> None:
    env.new_order(9)
    with env.engine.begin() as conn:
        conn.execute(update(OrderRow).where(OrderRow.id == 9).values(state="teleported"))
    with pytest.raises(DefinitionMismatchError, match="order 9 has state 'teleported'"):
        env.store.load("order", "9")
    with pytest.raises(DefinitionMismatchError, match="teleported") as caught:
        env.orders.fire_by_key(9, "reserve")
    assert (caught.value.key, caught.value.value) == ("9", "teleported")
    with env.engine.begin() as conn:
        conn.execute(
            update(OrderRow)
            .where(OrderRow.id == 9)
            .values(state="pending", state_definition_version=42)
        )
    with pytest.raises(DefinitionMismatchError, match="definition version 42"):
        env.store.load("order", "9")


def test_uuid_keys_history_and_queries(env: Env) -> None:
    key = str(uuid.uuid4())
    with Session(env.engine, expire_on_commit=False) as session, session.begin():
        ticket = TicketRow(id=key, subject="printer on fire")
        session.add(ticket)
        env.tickets.start(ticket)
    env.tickets.fire_by_key(key, "assign", agent="bo")
    env.tickets.fire_by_key(key, "start")
    assert [r.event for r in env.store.history("ticket", key)] == ["assign", "start"]
    last = env.store.last_transition("ticket", key)
    assert last is not None
    assert (last.seq, last.target) == (2, "in_progress")
    assert env.store.last_transition("ticket", "nope") is None
    assert env.store.count_by_state("ticket") == {"in_progress": 1}
    with Session(env.engine) as session:
        found = session.scalars(env.store.in_states("ticket", "in_progress", "new")).all()
        assert [t.id for t in found] == [key]
        assert found[0].agent == "bo"
    with pytest.raises(StoreError, match="no state flying"):
        env.store.in_states("ticket", "flying")


def test_load_and_transaction_of_missing_instances(env: Env) -> None:
    with pytest.raises(InstanceNotFoundError, match="order 404 not found"):
        env.store.load("order", "404")
    with pytest.raises(InstanceNotFoundError):
        env.orders.fire_by_key(404, "reserve")
    with pytest.raises(InstanceNotFoundError):
        env.orders.fire_by_key("not-a-number", "reserve")


def test_deadlines_are_persisted_and_found_when_due(env: Env) -> None:
    env.new_order(11)
    env.new_order(12)
    env.orders.fire_by_key(12, "reserve")  # stock_reserved times out after 30 minutes
    assert env.store.find_overdue("order", env.clock.now(), 10) == []
    env.clock.advance(minutes=31)
    due = env.store.find_overdue("order", env.clock.now(), 10)
    assert [(s.key, s.state) for s in due] == [("12", "stock_reserved")]
    assert due[0].deadline_at == env.store.load("order", "12").deadline_at
    env.clock.advance(days=1)
    due = env.store.find_overdue("order", env.clock.now(), 10)
    assert [s.key for s in due] == ["12", "11"]  # earliest deadline first
    assert [s.key for s in env.store.find_overdue("order", env.clock.now(), 1)] == ["12"]


def test_backend_errors_never_leak_raw(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    env.new_order(21)
    broken = SQLAlchemyStore(env.engine, ENTITIES)
    broken.tables.transitions.name = "statekit_missing_table"  # every history write fails
    runner = Runner(OrderWorkflow.machine, broken, clock=env.clock)
    caplog.set_level(logging.ERROR)
    with pytest.raises(StoreError) as caught:
        runner.fire_by_key(21, "reserve")
    assert caught.value.__cause__ is not None
    assert "statekit" in str(caught.value)
    assert env.row(21) == ("pending", 0)


def test_the_store_takes_mapped_classes_that_name_their_machine(env: Env) -> None:
    """As `DjangoStore` does: a list of classes with `__statekit_machine__` serves as
    `{machine: class}`; anything else is a clear `InvalidArgumentTypeError`."""
    listed = SQLAlchemyStore(env.engine, [OrderRow, TicketRow])
    assert sorted(listed.machines()) == ["order", "ticket"]
    assert listed.entities() == {OrderWorkflow.machine: OrderRow, TicketWorkflow.machine: TicketRow}

    class Unbound:
        pass

    for wrong in (OrderRow, "orders", [Unbound], 42):
        with pytest.raises(InvalidArgumentTypeError) as caught:
            SQLAlchemyStore(env.engine, wrong)  # type: ignore[arg-type]
        assert caught.value.argument == "entities"
        assert "__statekit_machine__" in str(caught.value)


def test_unregistered_machines_and_unmapped_classes_are_clear_errors(env: Env) -> None:
    with pytest.raises(StoreError, match="unknown machine 'nope'; known: "):
        env.store.load("nope", "1")

    class NotMapped:
        pass

    with pytest.raises(
        InvalidArgumentTypeError,
        match=r"^NotMapped cannot store machine 'order': it is not a class mapped",
    ):
        SQLAlchemyStore(env.engine, {OrderWorkflow.machine: NotMapped})


def test_tables_have_named_constraints_and_the_due_index(env: Env) -> None:
    inspector = inspect(env.engine)
    pk = inspector.get_pk_constraint("statekit_transitions")
    assert pk["constrained_columns"] == ["entity_type", "entity_key", "seq"]
    uniques = {
        u["name"]: u["column_names"]
        for u in inspector.get_unique_constraints("statekit_transitions")
    }
    indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("statekit_transitions")}
    merged = {**uniques, **indexes}
    assert merged["uq_statekit_transitions_idempotency"] == [
        "entity_type",
        "entity_key",
        "idempotency_key",
    ]
    order_indexes = {i["name"]: i for i in inspector.get_indexes("orders")}
    assert order_indexes["ix_orders_statekit_due"]["column_names"] == ["state_deadline_at"]
    if env.engine.dialect.name == "postgresql":
        with env.engine.connect() as conn:
            definition = conn.execute(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_orders_statekit_due'")
            ).scalar()
        assert "WHERE (state_deadline_at IS NOT NULL)" in str(definition)


def test_statekit_tables_attach_to_the_applications_metadata() -> None:
    tables = statekit_tables(Base.metadata)
    try:
        assert Base.metadata.tables["statekit_transitions"] is tables.transitions
        assert statekit_tables(Base.metadata) == tables
        names = {t.name for t in tables.all}
        assert names == {
            "statekit_transitions",
            "statekit_compensations",
            "statekit_compensation_attempts",
            "statekit_retired_transitions",
            "statekit_retired_compensations",
            "statekit_retired_compensation_attempts",
        }
        assert names <= set(Base.metadata.tables)
    finally:
        for table in tables.all:
            Base.metadata.remove(table)


def test_fire_by_key_writes_back_what_actions_changed(env: Env) -> None:
    env.new_order(31, total="45")
    binding = env.store.binding("order")
    assert binding.rows is not None  # OrderRow is plain columns: the light unit is used
    env.orders.fire_by_key(31, "reserve")
    env.orders.fire_by_key(31, "pay", amount="45", reference="p-31")
    with Session(env.engine) as session:
        order = session.get(OrderRow, 31)
        assert order is not None
        assert (order.state, order.state_version) == ("paid", 2)
        assert (order.in_stock, order.paid_amount) == (9, Decimal("45.00"))
    with env.store.transaction("order", "31") as loaded:
        assert isinstance(loaded, OrderRow)  # the mapped class, methods and all
        assert loaded.total == Decimal("45.00")
        loaded.sku = "SKU-RENAMED"  # the caller's own change joins the unit
    with Session(env.engine) as session:
        renamed = session.get(OrderRow, 31)
        assert renamed is not None
        assert renamed.sku == "SKU-RENAMED"


class RelBase(DeclarativeBase):
    pass


class Customer(RelBase):
    __tablename__ = "rel_customers"
    id: Mapped[int] = mapped_column(primary_key=True)
    blocked: Mapped[bool] = mapped_column(default=False)


class Account(StateMixin, RelBase):
    __tablename__ = "rel_accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("rel_customers.id"))
    customer: Mapped[Customer] = relationship()


def customer_in_good_standing(account: Account, ctx: Context) -> bool | str:
    return not account.customer.blocked or "the customer is blocked"


class AccountWorkflow(Workflow, name="account"):
    opened = State(initial=True)
    active = State(final=True)
    activate = opened.to(active, guard=customer_in_good_standing)


def test_classes_with_relationships_keep_a_session(engine: Engine) -> None:
    RelBase.metadata.create_all(engine)
    try:
        store = SQLAlchemyStore(engine, {AccountWorkflow.machine: Account})
        assert store.binding("account").rows is None
        runner = Runner(AccountWorkflow.machine, store)
        with Session(engine, expire_on_commit=False) as session, session.begin():
            session.add_all([Customer(id=1, blocked=True), Customer(id=2)])
            for number in (1, 2):
                account = Account(id=number, customer_id=number)
                session.add(account)
                runner.start(account)
        with pytest.raises(GuardRejectedError, match="the customer is blocked"):
            runner.fire_by_key(1, "activate")
        assert runner.fire_by_key(2, "activate").target == "active"
    finally:
        RelBase.metadata.drop_all(engine)


class CodedBase(DeclarativeBase):
    pass


class Coded(StateMixin, CodedBase):
    """A row whose statekit key (`code`) is not its primary key (`id`)."""

    __tablename__ = "coded_items"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    label: Mapped[str] = mapped_column(String(20), default="")


class CodedWorkflow(Workflow, name="coded", fields=StateFields(key="code")):
    new = State(initial=True)
    done = State(final=True)
    finish = new.to(done)


@pytest.fixture
def coded(engine: Engine) -> Iterator[tuple[SQLAlchemyStore, Runner]]:
    """Item C-7 (primary key 7) in `new`, stored through the light unit."""
    CodedBase.metadata.create_all(engine)
    store = SQLAlchemyStore(engine, {CodedWorkflow.machine: Coded})
    store.create_tables()
    runner = Runner(CodedWorkflow.machine, store)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        item = Coded(id=7, code="C-7", label="")
        session.add(item)
        runner.start(item)
    yield store, runner
    with engine.begin() as conn:
        conn.execute(store.tables.transitions.delete())
    CodedBase.metadata.drop_all(engine)


def test_a_light_unit_entity_is_a_clean_detached_instance(
    coded: tuple[SQLAlchemyStore, Runner], engine: Engine
) -> None:
    """What the light unit loads behaves as a row the ORM loaded and let go of: it has
    its primary-key identity, and after a fire nothing in it is pending a write."""
    store, runner = coded
    assert store.binding("coded").rows is not None
    with store.transaction("coded", "C-7") as loaded:
        state = inspect(loaded)
        assert state.detached
        assert state.identity == (7,)  # the primary key, not statekit's key
        runner.fire(loaded, "finish")
        names = CodedWorkflow.machine.fields.state_attributes()
        assert not [n for n in names if state.attrs[n].history.has_changes()]
    assert (loaded.state, loaded.state_version) == ("done", 1)
    with Session(engine) as session:
        merged = session.merge(loaded)  # adopted as the row it is: no INSERT
        assert not session.is_modified(merged)
        session.flush()
        assert session.get(Coded, 7) is merged
        assert (merged.state, merged.state_version) == ("done", 1)


def test_a_light_unit_writes_the_callers_changes_and_the_transition(
    coded: tuple[SQLAlchemyStore, Runner], engine: Engine
) -> None:
    store, runner = coded
    with store.transaction("coded", "C-7") as loaded:
        loaded.label = "renamed"
        runner.fire(loaded, "finish")
        assert inspect(loaded).attrs.label.history.has_changes()  # still the caller's to write
    with engine.connect() as conn:
        row = conn.execute(select(Coded.state, Coded.state_version, Coded.label)).one()
    assert tuple(row) == ("done", 1, "renamed")
    assert [r.event for r in runner.history(loaded)] == ["finish"]


def _record_seq_one_elsewhere(store: SQLAlchemyStore, engine: Engine) -> None:
    """A history row for C-7's first transition that its row does not know about, so
    the next fire's UPDATE succeeds and its history INSERT fails."""
    with engine.begin() as conn:
        conn.execute(
            store.tables.transitions.insert().values(
                entity_type="coded",
                entity_key="C-7",
                seq=1,
                event="finish",
                source="new",
                target="done",
                at=datetime.now(UTC),
                definition_version=1,
            )
        )


def _coded_row(engine: Engine) -> tuple[str, int, str]:
    with engine.connect() as conn:
        row = conn.execute(select(Coded.state, Coded.state_version, Coded.label)).one()
    return row[0], row[1], row[2]


def test_a_failed_history_insert_writes_nothing_in_any_transaction(
    coded: tuple[SQLAlchemyStore, Runner], engine: Engine
) -> None:
    """The UPDATE ran, the INSERT failed: the caller gets ConcurrentTransitionError, the
    entity is as it was, and no transaction commits the UPDATE alone, even when the
    caller catches the error inside it."""
    store, runner = coded
    _record_seq_one_elsewhere(store, engine)
    names = CodedWorkflow.machine.fields.state_attributes()

    with pytest.raises(ConcurrentTransitionError):
        runner.fire_by_key("C-7", "finish")
    assert _coded_row(engine) == ("new", 0, "")

    def catch_it_inside_a_light_unit() -> None:
        with store.transaction("coded", "C-7") as loaded:
            before = {n: getattr(loaded, n) for n in names}
            loaded.label = "caller's work"
            with pytest.raises(ConcurrentTransitionError):
                runner.fire(loaded, "finish")
            assert {n: getattr(loaded, n) for n in names} == before
            assert not any(inspect(loaded).attrs[n].history.has_changes() for n in names)

    with pytest.raises(StoreError, match="commit refused: coded C-7: 'finish' updated the row"):
        catch_it_inside_a_light_unit()
    assert _coded_row(engine) == ("new", 0, "")

    with Session(engine, expire_on_commit=False) as session:
        item = session.scalars(select(Coded)).one()
        item.label = "caller's work"
        with pytest.raises(ConcurrentTransitionError):
            runner.fire(item, "finish")
        assert (item.state, item.state_version) == ("new", 0)
        with pytest.raises(StoreError, match="commit refused"):
            session.commit()
        session.rollback()
        assert _coded_row(engine) == ("new", 0, "")
        item.label = "after the rollback"  # the Session is usable again
        session.commit()
    assert _coded_row(engine) == ("new", 0, "after the rollback")


def test_a_session_refusing_its_commit_is_released_by_ending_that_transaction(
    coded: tuple[SQLAlchemyStore, Runner], engine: Engine
) -> None:
    """Closing the Session ends the refusal (a reused Session works again); a savepoint
    that held the half-written transition releases it when rolled back, while an
    unrelated savepoint's rollback does not."""
    store, runner = coded
    _record_seq_one_elsewhere(store, engine)

    session = Session(engine, expire_on_commit=False)
    item = session.scalars(select(Coded)).one()
    with pytest.raises(ConcurrentTransitionError):
        runner.fire(item, "finish")
    session.close()  # as a web request's scoped Session is at the end of the request
    session.scalars(select(Coded)).one().label = "next request"
    session.commit()
    assert _coded_row(engine) == ("new", 0, "next request")

    with Session(engine, expire_on_commit=False) as session:
        item = session.scalars(select(Coded)).one()
        savepoint = session.begin_nested()
        with pytest.raises(ConcurrentTransitionError):
            runner.fire(item, "finish")
        savepoint.rollback()  # takes the UPDATE with it
        session.commit()
    assert _coded_row(engine) == ("new", 0, "next request")

    with Session(engine, expire_on_commit=False) as session:
        item = session.scalars(select(Coded)).one()
        with pytest.raises(ConcurrentTransitionError):
            runner.fire(item, "finish")
        session.begin_nested().rollback()  # a later savepoint undoes nothing of it
        with pytest.raises(StoreError, match="commit refused"):
            session.commit()
        session.rollback()
    assert _coded_row(engine) == ("new", 0, "next request")


def test_a_class_that_observes_its_state_keeps_the_orm_attribute_path(
    coded: tuple[SQLAlchemyStore, Runner],
) -> None:
    """An application "set" listener on a state attribute still hears statekit's
    writes in the light unit (the fast path that skips ORM events is not used)."""
    heard: list[object] = []

    def on_set(target: object, value: object, old: object, initiator: object) -> None:
        heard.append(value)

    event.listen(Coded.state, "set", on_set)
    try:
        engine = coded[0].engine
        store = SQLAlchemyStore(engine, {CodedWorkflow.machine: Coded})
        assert store.binding("coded").rows is not None  # still the light unit
        assert store.binding("coded").write_state is None
        Runner(CodedWorkflow.machine, store).fire_by_key("C-7", "finish")
        assert heard == ["done"]
    finally:
        event.remove(Coded.state, "set", on_set)
    assert coded[0].binding("coded").write_state is not None  # built without the listener


def test_help_on_the_mixin_warns_about_nothing() -> None:
    """`help(StateMixin)` reads every attribute of the mixin; each used to emit
    SQLAlchemy's "unmanaged access of declarative attribute" warning (an error here)."""
    import pydoc
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        text = pydoc.render_doc(StateMixin, renderer=pydoc.plaintext)
    assert [str(w.message) for w in caught] == []
    assert "state_deadline_at" in text
