"""`wrap`, the one error boundary of the SQL store, on the three real databases: a
database failure leaves as `StoreError` (or, for a plan's write, as the conflict
rules say) with the database's exception in `__cause__`; statekit's own errors
pass through."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, insert, text
from sqlalchemy import exc as sa_exc

from statekit.errors import ConcurrentTransitionError, InstanceNotFoundError, StoreError
from statekit.records import Plan
from statekit.store.sqlalchemy import statekit_tables
from statekit.store.sqlalchemy.errors import wrap
from tests.sql_support import engine_for

AT = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    engine = engine_for(database_url)
    statekit_tables().metadata.create_all(engine)
    yield engine
    engine.dispose()


def _plan(key: str) -> Plan:
    return Plan(
        event="pay",
        source="new",
        target="paid",
        payload=None,
        now=AT,
        entity_type="order",
        key=key,
        expected_version=0,
    )


def _history_row(key: str) -> dict[str, object]:
    return {
        "entity_type": "order",
        "entity_key": key,
        "seq": 1,
        "event": "pay",
        "source": "new",
        "target": "paid",
        "at": AT,
    }


def test_a_failed_statement_is_a_store_error_naming_what_failed(engine: Engine) -> None:
    with pytest.raises(StoreError, match=r"^reading the missing table failed: ") as caught:
        with wrap("reading the missing table", engine), engine.connect() as conn:
            conn.execute(text("SELECT * FROM statekit_no_such_table"))
    assert type(caught.value) is StoreError
    assert isinstance(caught.value.__cause__, sa_exc.DBAPIError)


def test_a_plan_that_loses_its_race_is_a_concurrent_transition_error(engine: Engine) -> None:
    history = statekit_tables().transitions
    with engine.begin() as conn:
        conn.execute(insert(history).values(_history_row("race-1")))
    with pytest.raises(ConcurrentTransitionError) as caught:
        with (
            wrap("storing", engine, plan=_plan("race-1"), version_of=lambda: 1),
            engine.begin() as conn,  # a second writer of seq 1
        ):
            conn.execute(insert(history).values(_history_row("race-1")))
    assert (caught.value.expected_version, caught.value.actual_version) == (0, 1)
    assert isinstance(caught.value.__cause__, sa_exc.IntegrityError)


def test_statekit_errors_pass_through_unchanged(engine: Engine) -> None:
    missing = InstanceNotFoundError(entity_type="order", key="nope")
    with pytest.raises(InstanceNotFoundError) as caught:
        with wrap("loading order nope", engine, plan=_plan("nope")):
            raise missing
    assert caught.value is missing


def test_an_unreachable_server_is_a_store_error() -> None:
    engine = engine_for("postgresql+psycopg://postgres@127.0.0.1:1/none")  # nobody listens
    try:
        with pytest.raises(StoreError, match=r"^connecting failed: ") as caught:
            with wrap("connecting", engine), engine.connect():
                pass
        assert isinstance(caught.value.__cause__, sa_exc.OperationalError)
    finally:
        engine.dispose()
