"""Django for the admin tests: the example project's apps, URLs and middleware over
the session's Django (set up by tests/contrib/django/conftest.py), and Django's
default database moved to another URL for a while (`use_database`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.db import connections
from django.test import override_settings
from django.test.utils import setup_test_environment
from sqlalchemy import make_url

EXAMPLE_SETTINGS = (
    "INSTALLED_APPS",
    "MIDDLEWARE",
    "ROOT_URLCONF",
    "TEMPLATES",
    "STATIC_URL",
    "STATEKIT_SWEEP_INTERVAL",
    "STATEKIT_SWEEP_BATCH_SIZE",
    "STATEKIT_SWEEP_LEASE",
)


@contextmanager
def example_project() -> Iterator[None]:
    """The example project's apps (and nothing else: the test app's models would
    carry a second "order" machine), URLs, templates and middleware."""
    from examples.django_orders import settings as example

    values: dict[str, Any] = {name: getattr(example, name) for name in EXAMPLE_SETTINGS}
    values["PASSWORD_HASHERS"] = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    with suppress(RuntimeError):  # set up already
        setup_test_environment()  # the test client then records templates and context
    with override_settings(**values):
        yield


def django_database(url: str) -> dict[str, Any]:
    """Django's DATABASES entry for a SQLAlchemy-style URL (SQLite or PostgreSQL)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": parsed.database}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parsed.database,
        "USER": parsed.username or "",
        "PASSWORD": parsed.password or "",
        "HOST": parsed.host or "",
        "PORT": str(parsed.port or ""),
    }


def _point(databases: dict[str, Any]) -> None:
    connections.close_all()
    for alias in list(connections.settings):
        with suppress(AttributeError):
            del connections[alias]
    configured = connections.configure_settings(databases)
    connections.__dict__["settings"] = configured
    settings.DATABASES = configured


@contextmanager
def use_database(url: str) -> Iterator[None]:
    """Make `url` Django's only database (``default``) and migrate it; the session's
    databases come back afterwards."""
    before = {alias: dict(entry) for alias, entry in connections.settings.items()}
    _point({"default": django_database(url)})
    try:
        call_command("migrate", verbosity=0)
        yield
    finally:
        _point(before)
