"""The extension's `STATEKIT_*` config keys, their defaults, and `Settings`, the
typed view of them an app's `StateKitState` holds."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Request

from statekit.errors import StatekitError
from statekit.store.sqlalchemy.tables import DEFAULT_PREFIX

__all__ = ["DEFAULTS", "ActorResolver", "ConfigError", "Settings", "remote_user"]

ActorResolver = Callable[[Request], "str | None"]
"""Takes the current request, returns who is acting (recorded in the history)."""


def remote_user(request: Request) -> str | None:
    """The default actor: the request's ``REMOTE_USER`` (set by the web server or an
    authentication middleware), or None."""
    return request.remote_user


DEFAULTS: dict[str, Any] = {
    "STATEKIT_DATABASE_URL": None,
    "STATEKIT_TABLE_PREFIX": DEFAULT_PREFIX,
    "STATEKIT_SCHEMA": None,
    "STATEKIT_SWEEP_INTERVAL": 30.0,
    "STATEKIT_SWEEP_BATCH_SIZE": 100,
    "STATEKIT_SWEEP_LEASE": 300.0,
    "STATEKIT_HANDLER_TIMEOUT": None,
    "STATEKIT_ACTOR": None,
    "STATEKIT_PROBLEM_DETAILS": False,
    "STATEKIT_PROBLEM_TYPE_BASE": "tag:statekit.invalid,2026:",
}
"""Every config key the extension reads, with its default (see docs/flask.md)."""


class ConfigError(StatekitError):
    """A `STATEKIT_*` config value cannot be used; the message names the key."""


@dataclass(frozen=True)
class Settings:
    """The `STATEKIT_*` config of one app, read once by `init_app`.

    Attributes:
        database_url: Where statekit's store writes outside a request's Session;
            None: Flask-SQLAlchemy's engine.
        table_prefix: Prefix of statekit's table names.
        schema: Schema of statekit's tables (None: the engine's default).
        sweep_interval: Seconds between sweeps (`flask statekit sweep`'s default).
        sweep_batch_size: Overdue instances claimed per transaction.
        sweep_lease: Seconds a claimed compensation stays reserved.
        handler_timeout: Seconds a compensation handler may take (None: the
            sweeper's default, 0: no limit).
        actor: Who is acting in the current request.
        problem_details: Whether statekit's errors become problem responses.
        problem_type_base: Starts each problem's ``type`` URI.
    """

    database_url: str | None
    table_prefix: str
    schema: str | None
    sweep_interval: float
    sweep_batch_size: int
    sweep_lease: float
    handler_timeout: float | None
    actor: ActorResolver
    problem_details: bool
    problem_type_base: str

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """Read the `STATEKIT_*` keys of `config` (missing ones take `DEFAULTS`).

        Raises:
            ConfigError: a value has the wrong type or range, or `STATEKIT_ACTOR`
                names nothing importable and callable.
        """

        def get(key: str) -> Any:
            return config.get(key, DEFAULTS[key])

        return cls(
            database_url=_optional_text(get, "STATEKIT_DATABASE_URL"),
            table_prefix=_text(get, "STATEKIT_TABLE_PREFIX"),
            schema=_optional_text(get, "STATEKIT_SCHEMA"),
            sweep_interval=_number(get, "STATEKIT_SWEEP_INTERVAL", minimum=0.1),
            sweep_batch_size=int(_number(get, "STATEKIT_SWEEP_BATCH_SIZE", minimum=1, whole=True)),
            sweep_lease=_number(get, "STATEKIT_SWEEP_LEASE", minimum=1),
            handler_timeout=(
                None
                if get("STATEKIT_HANDLER_TIMEOUT") is None
                else _number(get, "STATEKIT_HANDLER_TIMEOUT", minimum=0)
            ),
            actor=_actor(get("STATEKIT_ACTOR")),
            problem_details=_flag(get, "STATEKIT_PROBLEM_DETAILS"),
            problem_type_base=_text(get, "STATEKIT_PROBLEM_TYPE_BASE"),
        )


def _text(get: Callable[[str], Any], key: str) -> str:
    value = get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a non-empty string, not {value!r}")
    return value


def _optional_text(get: Callable[[str], Any], key: str) -> str | None:
    return None if get(key) is None else _text(get, key)


def _flag(get: Callable[[str], Any], key: str) -> bool:
    value = get(key)
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be True or False, not {value!r}")
    return value


def _number(get: Callable[[str], Any], key: str, *, minimum: float, whole: bool = False) -> float:
    value = get(key)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or (whole and not isinstance(value, int)) or value < minimum:
        what = "a whole number" if whole else "a number"
        raise ConfigError(f"{key} must be {what} of at least {minimum:g}, not {value!r}")
    return float(value)


def _actor(value: object) -> ActorResolver:
    """`STATEKIT_ACTOR`: None (the request's remote user), a callable, or the
    import path ``module:function`` of one."""
    if value is None:
        return remote_user
    if isinstance(value, str):
        module_name, _, attribute = value.partition(":")
        try:
            found: object = importlib.import_module(module_name)
            for part in attribute.split(".") if attribute else ():
                found = getattr(found, part)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigError(
                f"STATEKIT_ACTOR {value!r} cannot be imported ({exc}); give 'module:function'"
            ) from exc
        if not attribute or not callable(found):
            raise ConfigError(
                f"STATEKIT_ACTOR {value!r} is not a callable; give 'module:function' naming "
                f"a function that takes the request and returns the actor"
            )
        resolver: ActorResolver = found
        return resolver
    if callable(value):
        called: ActorResolver = value
        return called
    raise ConfigError(
        f"STATEKIT_ACTOR must be a callable or 'module:function', not {type(value).__name__}"
    )
