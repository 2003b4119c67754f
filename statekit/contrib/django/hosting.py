"""What the admin, ``manage.py statekit`` and the system check work on: the machines
of the installed apps' models, the `DjangoStore` over them, a Runner per machine, and
the sweeper's `STATEKIT_SWEEP_*` settings.

Built on first use and kept for the process; a change of the ``INSTALLED_APPS`` or
``STATEKIT_*`` settings (Django's `setting_changed`, as tests send it) starts afresh.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.signals import setting_changed
from django.db.models import Model

from statekit.cli.context import Context
from statekit.contrib.django.store import DjangoStore
from statekit.engine import Machine
from statekit.errors import StatekitError, UnknownMachineError
from statekit.runtime import Runner
from statekit.sweeper import DEFAULT_HANDLER_TIMEOUT, Sweeper

__all__ = ["SWEEP_DEFAULTS", "Host", "SweepSettings", "host", "state_models"]

SWEEP_DEFAULTS: dict[str, Any] = {
    "STATEKIT_SWEEP_INTERVAL": 30.0,
    "STATEKIT_SWEEP_BATCH_SIZE": 100,
    "STATEKIT_SWEEP_LEASE": 300.0,
    "STATEKIT_HANDLER_TIMEOUT": None,
}
"""The sweeper's settings ``manage.py statekit sweep`` and the admin's levers read,
with their defaults (seconds; see docs/django-admin.md)."""


class SettingsError(StatekitError):
    """A `STATEKIT_*` setting cannot be used; the message names it."""


@dataclass(frozen=True)
class SweepSettings:
    """The `STATEKIT_SWEEP_*` settings, checked."""

    interval: float
    batch_size: int
    lease: float
    handler_timeout: float | None

    @classmethod
    def read(cls) -> SweepSettings:
        """Read them from Django's settings (missing ones take `SWEEP_DEFAULTS`).

        Raises:
            SettingsError: a value is not a number in its range.
        """

        def number(key: str, minimum: float, *, whole: bool = False) -> float:
            value = getattr(settings, key, SWEEP_DEFAULTS[key])
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok or (whole and not isinstance(value, int)) or value < minimum:
                what = "a whole number" if whole else "a number"
                raise SettingsError(f"{key} must be {what} of at least {minimum:g}, not {value!r}")
            return float(value)

        timeout = getattr(settings, "STATEKIT_HANDLER_TIMEOUT", None)
        return cls(
            interval=number("STATEKIT_SWEEP_INTERVAL", 0.1),
            batch_size=int(number("STATEKIT_SWEEP_BATCH_SIZE", 1, whole=True)),
            lease=number("STATEKIT_SWEEP_LEASE", 1),
            handler_timeout=None if timeout is None else number("STATEKIT_HANDLER_TIMEOUT", 0),
        )

    def command_defaults(self) -> dict[str, dict[str, Any]]:
        """``statekit sweep``'s option defaults (click's `default_map`)."""
        sweep: dict[str, Any] = {
            "interval": self.interval,
            "batch_size": self.batch_size,
            "lease": self.lease,
        }
        if self.handler_timeout is not None:
            sweep["handler_timeout"] = self.handler_timeout
        return {"sweep": sweep}


def state_models() -> dict[Machine, type[Model]]:
    """The installed apps' concrete models that carry a machine
    (``__statekit_machine__``), by machine.

    Raises:
        StatekitError: two models carry machines of one name.
    """
    found: dict[Machine, type[Model]] = {}
    by_name: dict[str, type[Model]] = {}
    for model in apps.get_models():
        machine = getattr(model, "__statekit_machine__", None)
        if not isinstance(machine, Machine):
            continue
        other = by_name.setdefault(machine.name, model)
        if other is not model:
            raise StatekitError(
                f"models {other._meta.label} and {model._meta.label} both carry a machine "
                f"named {machine.name!r}; give one machine to one model"
            )
        found[machine] = model
    return found


class Host:
    """The installed apps' machines over one `DjangoStore`, with a Runner each."""

    def __init__(self) -> None:
        entities = state_models()
        self.models = {machine.name: model for machine, model in entities.items()}
        self.store = DjangoStore(entities)
        self._runners = {m.name: Runner(m, self.store) for m in entities}

    @property
    def machines(self) -> dict[str, Machine]:
        """The machines by name."""
        return {name: runner.machine for name, runner in self._runners.items()}

    def runner(self, machine: str | Machine) -> Runner:
        """The Runner of `machine` (or of the machine called so).

        Raises:
            StatekitError: no installed model carries it (the message lists them).
        """
        name = machine if isinstance(machine, str) else machine.name
        try:
            return self._runners[name]
        except KeyError:
            raise UnknownMachineError([name], known=self.models) from None

    def runner_for(self, model: type[Model]) -> Runner:
        """The Runner of the machine `model` (or a proxy of it) carries.

        Raises:
            StatekitError: `model` carries no machine of an installed app.
        """
        machine = getattr(model, "__statekit_machine__", None)
        if not isinstance(machine, Machine):
            raise StatekitError(
                f"{model._meta.label} carries no machine: give it __statekit_machine__"
            )
        return self.runner(machine.name)

    def context(self) -> Context:
        """The `statekit` commands' `Context` (Django's migrations own the tables)."""
        if not self._runners:
            raise StatekitError(
                "no installed app has a model with a machine: give a model "
                "__statekit_machine__ and add its app to INSTALLED_APPS"
            )
        return Context.of(self.store, classes=dict(self.models), runner=self.runner)

    def sweeper(self) -> Sweeper:
        """A `Sweeper` over every machine with the `STATEKIT_SWEEP_*` settings."""
        s = SweepSettings.read()
        timeout: timedelta | None = DEFAULT_HANDLER_TIMEOUT
        if s.handler_timeout is not None:
            timeout = timedelta(seconds=s.handler_timeout) if s.handler_timeout else None
        return self.context().sweeper(
            batch_size=s.batch_size, lease=timedelta(seconds=s.lease), handler_timeout=timeout
        )


_lock = threading.Lock()
_host: Host | None = None


def host() -> Host:
    """The process's `Host` (built on first use, after the app registry is ready)."""
    global _host
    found = _host
    if found is None:
        with _lock:
            if _host is None:
                _host = Host()
            found = _host
    return found


def _forget(*, setting: str, **_: Any) -> None:
    global _host
    if setting == "INSTALLED_APPS" or setting.startswith("STATEKIT_"):
        _host = None


setting_changed.connect(_forget, dispatch_uid="statekit.contrib.django.hosting")
