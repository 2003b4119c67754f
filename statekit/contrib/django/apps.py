"""The Django app: `INSTALLED_APPS += ["statekit.contrib.django"]` (label `statekit`)."""

from __future__ import annotations

from django.apps import AppConfig

__all__ = ["StatekitConfig"]


class StatekitConfig(AppConfig):
    """statekit's tables (history, compensation outbox and their retired twins)."""

    name = "statekit.contrib.django"
    label = "statekit"
    verbose_name = "statekit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from statekit.contrib.django import (  # noqa: F401
            checks,  # registers the system checks, with or without the admin
            signals,  # defines the signals
        )
