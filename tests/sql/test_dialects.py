"""The capability table (store/sqlalchemy/dialects.py) on the three real databases:
what each one is detected to offer, detected once per engine."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from statekit.store.sqlalchemy.dialects import Capabilities, capabilities, ddl_url
from tests.sql_support import engine_for

EXPECTED = {
    "sqlite": {
        "skip_locked": False,
        "insert_ignore": "on_conflict",
        "key_list": "json",
        "one_statement_write": False,
        "driver_path": True,
        "claim_isolation": None,
        "probe_autocommit": False,
        "inline_probe_time": False,
        "explicit_begin": True,
        "fractional_datetime": False,
    },
    "postgresql": {
        "skip_locked": True,
        "insert_ignore": "on_conflict",
        "key_list": "array",
        "one_statement_write": True,
        "driver_path": True,
        "claim_isolation": None,
        "probe_autocommit": True,
        "inline_probe_time": True,
        "explicit_begin": False,
        "fractional_datetime": False,
    },
    "mariadb": {
        "skip_locked": True,  # the test server is MariaDB >= 10.6
        "insert_ignore": "on_duplicate_key",
        "key_list": "expanding",
        "one_statement_write": False,
        "driver_path": False,
        "claim_isolation": "READ COMMITTED",
        "probe_autocommit": True,
        "inline_probe_time": False,
        "explicit_begin": False,
        "fractional_datetime": True,
    },
}


def test_each_database_is_detected_once_with_what_it_offers(database_url: str) -> None:
    engine = engine_for(database_url)
    try:
        backend = "mariadb" if engine.dialect.name in {"mysql", "mariadb"} else engine.dialect.name
        caps = capabilities(engine, connect=True)
        assert {name: getattr(caps, name) for name in EXPECTED[backend]} == EXPECTED[backend]
        # Detected once: the engine, and any engine sharing its dialect, read the same object.
        assert capabilities(engine) is caps
        assert capabilities(engine.execution_options(isolation_level="AUTOCOMMIT")) is caps
        if caps.clock_query is not None:
            with engine.connect() as conn:
                assert conn.execute(text(caps.clock_query)).scalar_one() is not None
        else:
            assert backend == "sqlite"
    finally:
        engine.dispose()


def test_server_version_facts_wait_for_a_connection_before_being_cached() -> None:
    engine = engine_for("mysql+pymysql://root@127.0.0.1:1/none")  # nothing listens there
    assert engine.dialect.server_version_info is None
    before = capabilities(engine)
    assert before.skip_locked is False
    assert capabilities(engine) is not before  # not cached: the version is still unknown
    assert isinstance(before, Capabilities)


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("postgresql", "postgresql+psycopg://"),
        ("sqlite", "sqlite://"),
        ("mysql", "mysql+pymysql://"),
        ("mariadb", "mariadb+pymysql://"),
    ],
)
def test_ddl_urls_name_a_dialect_for_printing_ddl(name: str, url: str) -> None:
    assert ddl_url(name) == url
