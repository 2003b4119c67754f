"""Settings of the example project: SQLite in the working directory by default,
PostgreSQL when ``ORDERS_DATABASE_URL=postgresql://user@host/db`` is set."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent

SECRET_KEY = os.environ.get("ORDERS_SECRET_KEY", "statekit-example-not-secret")
DEBUG = os.environ.get("ORDERS_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "statekit.contrib.django",
    "examples.django_orders.shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "examples.django_orders.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]


def _database(url: str | None) -> dict[str, object]:
    """SQLite (``orders.sqlite3`` here) without a URL, else the PostgreSQL it names."""
    if not url:
        name = os.environ.get("ORDERS_SQLITE", str(Path.cwd() / "orders.sqlite3"))
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": name}
    parts = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/"),
        "USER": parts.username or "",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
    }


DATABASES = {"default": _database(os.environ.get("ORDERS_DATABASE_URL"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
# statekit's tables carry table comments, which SQLite cannot store (a warning only)
SILENCED_SYSTEM_CHECKS = ["models.W046"]

# statekit (every STATEKIT_* setting and its default: docs/django-admin.md)
STATEKIT_SWEEP_INTERVAL = 30.0
STATEKIT_SWEEP_BATCH_SIZE = 100
STATEKIT_SWEEP_LEASE = 300.0
