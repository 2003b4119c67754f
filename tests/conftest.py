"""Shared test set-up: where the servers are and what happens when one is missing.

Outside CI a test that needs PostgreSQL, MariaDB or the Graphviz `dot` binary skips
with a message saying how to enable it. With `CI=true` (or `STATEKIT_REQUIRE_SERVICES=1`)
the same test fails instead, so CI can never pass by skipping.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

POSTGRES_URL = os.environ.get(
    "STATEKIT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MARIADB_URL = os.environ.get(
    "STATEKIT_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"
)


def services_required() -> bool:
    """Whether a missing server or binary must fail the run instead of skipping."""
    flag = os.environ.get("STATEKIT_REQUIRE_SERVICES") or os.environ.get("CI") or ""
    return flag.lower() in {"1", "true", "yes"}


def missing_service(what: str, how_to_enable: str) -> None:
    """Skip (or, in CI, fail) the current test because `what` is unavailable."""
    message = f"{what} is not available; {how_to_enable}"
    if services_required():
        pytest.fail(f"{message} (CI requires it)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def dot_binary() -> str:
    """Path of Graphviz's `dot`, or skip/fail when it is not installed."""
    path = shutil.which("dot")
    if path is None:
        missing_service("the Graphviz 'dot' binary", "install it with 'apt-get install graphviz'")
    assert path is not None
    return path


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ],
    scope="module",
)
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh database per test module on each backend (dropped afterwards)."""
    from tests.sql_support import fresh_database

    backend: str = request.param
    with fresh_database(backend, tmp_path_factory.mktemp(backend)) as url:
        yield url


@pytest.fixture(scope="module")
def shop(database_url: str) -> Any:
    """The CLI tests' small shop (see `tests.cli.test_cli._fill`) on each backend."""
    from tests.cli.test_cli import Shop, _fill

    _fill(database_url)
    return Shop(database_url)


@pytest.fixture(scope="module")
def sqlite_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The CLI tests' small shop on a SQLite file."""
    from tests.cli.test_cli import Shop, _fill
    from tests.sql_support import fresh_database

    with fresh_database("sqlite", tmp_path_factory.mktemp("shop")) as url:
        _fill(url)
        yield Shop(url)
