"""Settings and values the SQL store refuses: a StatekitError (still a ValueError, as
before) whose message names the value and what is allowed."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, exc, insert

from statekit import StatekitError
from statekit.store.sqlalchemy import UTCDateTime, configure_sqlite, sqlite_engine
from statekit.store.sqlalchemy.draining import DatabaseClock


def test_no_database_clock_on_sqlite_names_the_databases_that_have_one() -> None:
    engine = create_engine("sqlite://")
    with pytest.raises(StatekitError, match=r"sqlite.*postgresql, mysql, mariadb") as info:
        DatabaseClock(engine)
    assert isinstance(info.value, ValueError)


def test_unknown_sqlite_settings_name_the_allowed_ones(tmp_path: Path) -> None:
    with pytest.raises(StatekitError, match=r"'SOMETIMES'.*OFF, NORMAL, FULL, EXTRA") as info:
        sqlite_engine(tmp_path / "a.db", synchronous="SOMETIMES")
    assert isinstance(info.value, ValueError)
    with pytest.raises(StatekitError, match=r"'LATER'.*DEFERRED, IMMEDIATE, EXCLUSIVE"):
        configure_sqlite(create_engine("sqlite://"), begin="LATER")


def test_a_naive_datetime_is_refused_before_it_is_written() -> None:
    engine = create_engine("sqlite://")
    table = Table(
        "t", MetaData(), Column("id", Integer, primary_key=True), Column("at", UTCDateTime)
    )
    table.create(engine)
    with engine.begin() as conn, pytest.raises(exc.StatementError) as info:
        conn.execute(insert(table).values(id=1, at=datetime(2026, 1, 1)))
    assert isinstance(info.value.orig, StatekitError)
    assert isinstance(info.value.orig, ValueError)
    assert "timezone-aware" in str(info.value.orig)
    assert "2026-01-01" in str(info.value.orig)
