"""Django for the whole test session: configured once, with one database alias per
backend, so one pytest run covers SQLite, PostgreSQL and MariaDB.

- `default`: a SQLite file (WAL, `BEGIN IMMEDIATE` transactions, as statekit asks);
- `postgresql`, `mariadb`: a fresh database on each server, created the first time a
  test asks for it (`django_db(alias)`), migrated, and dropped at the end.

Django's MySQL backend wants mysqlclient; the tests drive MariaDB through PyMySQL,
loaded under mysqlclient's name for the backend only (`_load_mysql_backend`).
"""

from __future__ import annotations

import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("django")

import django
from django.conf import settings

from tests.conftest import MARIADB_URL, POSTGRES_URL

ALIASES = ("default", "postgresql", "mariadb")
_DIRECTORY = Path(tempfile.mkdtemp(prefix="statekit-django-"))
_SUFFIX = uuid.uuid4().hex[:10]


def _configure() -> None:
    from sqlalchemy.engine import make_url

    postgres, mariadb = make_url(POSTGRES_URL), make_url(MARIADB_URL)
    settings.configure(
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "statekit.contrib.django",
            "tests.contrib.django.testapp",
        ],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(_DIRECTORY / "statekit.db"),
                "OPTIONS": {
                    "transaction_mode": "IMMEDIATE",
                    "timeout": 30,
                    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                },
            },
            "postgresql": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": f"statekit_dj_{_SUFFIX}",
                "USER": postgres.username or "postgres",
                "PASSWORD": postgres.password or "",
                "HOST": postgres.host or "127.0.0.1",
                "PORT": str(postgres.port or 5432),
            },
            "mariadb": {
                "ENGINE": "django.db.backends.mysql",
                "NAME": f"statekit_dj_{_SUFFIX}",
                "USER": mariadb.username or "root",
                "PASSWORD": mariadb.password or "",
                "HOST": mariadb.host or "127.0.0.1",
                "PORT": str(mariadb.port or 3306),
                "OPTIONS": {"charset": "utf8mb4"},
            },
        },
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        SECRET_KEY="statekit-tests",
    )
    django.setup()


if not settings.configured:
    _configure()

_READY: set[str] = set()


def _server_url(alias: str) -> str:
    return POSTGRES_URL if alias == "postgresql" else MARIADB_URL


def _create_server_database(alias: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    from tests.conftest import missing_service

    admin = create_engine(_server_url(alias), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE statekit_dj_{_SUFFIX}"))
    except OperationalError as exc:
        missing_service(f"{alias} ({exc.orig})", "start the server or point its URL at one")
    finally:
        admin.dispose()


def _drop_server_database(alias: str) -> None:
    from sqlalchemy import create_engine, text

    drop = f"DROP DATABASE IF EXISTS statekit_dj_{_SUFFIX}"
    if alias == "postgresql":
        drop += " WITH (FORCE)"
    admin = create_engine(_server_url(alias), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(drop))
    admin.dispose()


def _load_mysql_backend() -> None:
    """Load Django's MySQL backend on PyMySQL posing as mysqlclient, then take the pose
    back, so the rest of the session (the CLI's missing-driver tests) sees no MySQLdb."""
    import sys

    import pymysql

    real_version = pymysql.version_info
    pymysql.version_info = (2, 2, 7, "final", 0)  # what Django's backend asks of mysqlclient
    pymysql.install_as_MySQLdb()
    try:
        import django.db.backends.mysql.base  # noqa: F401 - keeps its MySQLdb reference
    finally:
        pymysql.version_info = real_version
        for name in [n for n in sys.modules if n == "MySQLdb" or n.startswith("MySQLdb.")]:
            del sys.modules[name]


def ready(alias: str) -> str:
    """Create (once) and migrate the database of `alias`; return the alias."""
    if alias not in _READY:
        from django.core.management import call_command

        if alias == "mariadb":
            _load_mysql_backend()
        if alias != "default":
            _create_server_database(alias)
        _READY.add(alias)
        call_command("migrate", database=alias, verbosity=0)
    return alias


@pytest.fixture(scope="session", autouse=True)
def _drop_databases() -> Iterator[None]:
    yield
    from django.db import connections

    connections.close_all()
    for alias in _READY - {"default"}:
        _drop_server_database(alias)


@pytest.fixture(
    params=[
        "default",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ],
    scope="module",
)
def alias(request: pytest.FixtureRequest) -> str:
    """The database alias of each backend, created and migrated."""
    return ready(request.param)


def empty_tables(alias: str) -> None:
    """Delete every row of statekit's and the test app's tables on `alias`."""
    from django.apps import apps

    for config in ("statekit", "testapp"):
        for model in apps.get_app_config(config).get_models():
            model._default_manager.db_manager(alias).all().delete()


_OTHER_THREADS: list[tuple[Any, threading.Thread]] = []
"""Connections opened by threads other than the main one, kept alive until a test
ends: Django leaves closing a thread's connection to the thread (as the end of a
request does), and threads of the sweeper or of the contracts end without it."""


def _opened(sender: Any, connection: Any, **kwargs: Any) -> None:
    thread = threading.current_thread()
    if thread is not threading.main_thread():
        _OTHER_THREADS.append((connection, thread))


@pytest.fixture(autouse=True)
def _threads_close_their_connections() -> Iterator[None]:
    """Close the connections of the threads a test started once they have ended."""
    from django.db.backends.signals import connection_created

    connection_created.connect(_opened, dispatch_uid="statekit-tests")
    yield
    for wrapper, thread in list(_OTHER_THREADS):
        thread.join(30)
        if wrapper.connection is not None:
            wrapper.connection.close()
        _OTHER_THREADS.remove((wrapper, thread))
