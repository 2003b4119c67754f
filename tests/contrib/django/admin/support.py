"""Django for the admin tests: the example project's settings (`configure`), and
Django's default database moved to another URL for a while (`use_database`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import django
from django.conf import settings
from django.core.management import call_command
from django.db import connections
from django.test.utils import setup_test_environment
from sqlalchemy import make_url

REQUIRED_APPS = (
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "statekit.contrib.django",
    "examples.django_orders.shop",
)


def configure() -> None:
    """Set Django up with the example project's settings, unless something set it up
    already (it must then have the example's apps)."""
    if not settings.configured:
        from examples.django_orders import settings as example

        values = {k: v for k, v in vars(example).items() if k.isupper()}
        values["DATABASES"] = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ""}}
        values["PASSWORD_HASHERS"] = ["django.contrib.auth.hashers.MD5PasswordHasher"]
        settings.configure(**values)
        django.setup()
        setup_test_environment()  # the test client then records templates and context
    missing = [app for app in REQUIRED_APPS if app not in settings.INSTALLED_APPS]
    if missing:
        raise RuntimeError(f"Django was set up without the apps these tests need: {missing}")


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


def _point(entry: dict[str, Any]) -> None:
    connections.close_all()
    configured = connections.configure_settings({"default": entry})
    connections.__dict__["settings"] = configured
    settings.DATABASES = configured
    try:
        del connections["default"]
    except AttributeError:
        pass


@contextmanager
def use_database(url: str) -> Iterator[None]:
    """Point Django's default database at `url` and migrate it; back afterwards."""
    before = dict(connections.settings["default"])
    _point(django_database(url))
    try:
        call_command("migrate", verbosity=0)
        yield
    finally:
        _point(before)
