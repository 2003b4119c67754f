"""statekit for Flask: the `StateKit` extension (``pip install 'statekit[flask]'``).

    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy
    from statekit.contrib.flask import StateKit

    db = SQLAlchemy(model_class=Base)
    statekit = StateKit()

    app = Flask(__name__)
    db.init_app(app)
    statekit.init_app(app, db=db)

Views fire in the request's `db.session` (`statekit.fire(order, "pay", {...})`);
the app commits. See docs/flask.md for the config keys, idempotency, the error
handlers and ``flask statekit``.
"""

from __future__ import annotations

try:
    import flask  # noqa: F401  (the install hint below, before any module needs it)
except ImportError as _missing:
    raise ImportError(
        f"statekit.contrib.flask needs Flask: pip install 'statekit[flask]' ({_missing})"
    ) from _missing

from statekit.contrib.events import EventInfo, PayloadField
from statekit.contrib.flask.extension import (
    FROM_HEADER,
    IDEMPOTENCY_HEADER,
    AlreadyInitializedError,
    DetachedEntityError,
    StateKit,
)
from statekit.contrib.flask.problems import (
    InstanceNotFoundHTTPError,
    problem_of,
    problem_response,
)
from statekit.contrib.flask.settings import DEFAULTS, ConfigError, Settings
from statekit.contrib.flask.state import NotInitializedError, StateKitState, state_of

__all__ = [
    "DEFAULTS",
    "FROM_HEADER",
    "IDEMPOTENCY_HEADER",
    "AlreadyInitializedError",
    "ConfigError",
    "DetachedEntityError",
    "EventInfo",
    "InstanceNotFoundHTTPError",
    "NotInitializedError",
    "PayloadField",
    "Settings",
    "StateKit",
    "StateKitState",
    "problem_of",
    "problem_response",
    "state_of",
]
