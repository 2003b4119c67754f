"""The application factory of the order service.

Configuration comes from, in order: the defaults below, ``FLASK_*`` environment
variables (Flask's `from_prefixed_env`: ``FLASK_SQLALCHEMY_DATABASE_URI`` picks the
database, ``FLASK_STATEKIT_SWEEP_BATCH_SIZE`` a statekit setting), then the mapping
given to `create_app` (the tests').
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, Request, Response

from examples.flask_orders.api import api
from examples.flask_orders.models import db, statekit
from examples.flask_orders.pages import pages

__all__ = ["actor_of", "create_app"]

# Everything the pages load comes from this app: no CDN, no web fonts. Mermaid writes
# <style> elements into the SVG it draws, hence 'unsafe-inline' for styles only.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def actor_of(request: Request) -> str:
    """Who is acting, for the history: an ``X-Actor`` header (API clients), the web
    server's authenticated user, else the shop's clerk."""
    return request.headers.get("X-Actor") or request.remote_user or "clerk"


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the order service (SQLite in the instance folder unless configured)."""
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(
        SECRET_KEY="flask-orders-example-not-secret",
        SQLALCHEMY_DATABASE_URI="sqlite:///flask_orders.db",
        STATEKIT_ACTOR=actor_of,
        STATEKIT_PROBLEM_DETAILS=True,
    )
    app.config.from_prefixed_env()
    app.config.from_mapping(config or {})
    db.init_app(app)
    statekit.init_app(app, db=db)
    app.register_blueprint(api)
    app.register_blueprint(pages)
    app.after_request(_headers)
    return app


def _headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response
