"""A payload the history could not hold as JSON (a non-finite number, a lone surrogate,
a value with no JSON form) is an `InvalidPayloadError` naming the field, raised before
any handler runs and on every store alike. SQLite would store `NaN` as non-standard JSON,
PostgreSQL and MariaDB refused it only at the write, MariaDB's JSON check refused a lone
surrogate, and a value pydantic cannot dump escaped as pydantic's own error."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from statekit import Context, InvalidPayloadError, MemoryStore, Runner, State, Workflow
from statekit.store.sqlalchemy import SQLAlchemyStore, StateMixin
from tests.sql_support import engine_for

ACTED: list[str] = []


class Reading(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, extra="allow")

    value: float
    blob: Any = None


def record_reading(meter: object, ctx: Context) -> None:
    ACTED.append(ctx.event)


class MeterWorkflow(Workflow):
    idle = State(initial=True)
    measured = State(final=True)

    measure = idle.to(measured, payload=Reading, action=record_reading)


class Base(DeclarativeBase):
    pass


class MeterRow(StateMixin, Base):
    __tablename__ = "payload_meters"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)


UNSTORABLE: list[tuple[dict[str, Any], str]] = [
    ({"value": "nan"}, "value"),
    ({"value": float("inf")}, "value"),
    ({"value": 1.0, "blob": object()}, "blob"),
    ({"value": 1.0, "blob": b"\xff"}, "blob"),
    ({"value": 1.0, "extra": b"\xfe"}, "extra"),
    ({"value": 1.0, "blob": ["a\ud800"]}, "blob"),
]


def check_refusals(runner: Runner, meter: Any, store: Any) -> None:
    for payload, field in UNSTORABLE:
        assert runner.can_fire(meter, "measure", **payload) is False
        with pytest.raises(InvalidPayloadError) as caught:
            runner.fire(meter, "measure", **payload)
        (error,) = caught.value.errors
        assert error.startswith(f"{field}: cannot be stored as JSON")
        assert caught.value.state == "idle"
        assert (meter.state, meter.state_version) == ("idle", 0)
    assert ACTED == []
    assert store.history("meter", "m1") == []
    record = runner.fire(meter, "measure", value="2.5", blob={"ok": [1, None]})
    assert record.payload == {"value": 2.5, "blob": {"ok": [1, None]}}
    assert [r.payload for r in store.history("meter", "m1")] == [record.payload]


def test_an_unstorable_payload_is_refused_in_memory() -> None:
    ACTED.clear()
    store = MemoryStore()
    runner = Runner(MeterWorkflow.machine, store)
    meter = MeterRow(id="m1")
    runner.start(meter)
    check_refusals(runner, meter, store)


def test_an_unstorable_payload_is_refused_on_every_database(database_url: str) -> None:
    ACTED.clear()
    engine = engine_for(database_url)
    try:
        Base.metadata.create_all(engine)
        store = SQLAlchemyStore(engine, {MeterWorkflow.machine: MeterRow})
        store.create_tables()
        runner = Runner(MeterWorkflow.machine, store)
        meter = MeterRow(id="m1")
        runner.start(meter)
        check_refusals(runner, meter, store)
    finally:
        engine.dispose()
