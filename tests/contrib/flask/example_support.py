"""The example order service (`examples/flask_orders`) on a fresh database, for its
tests and the browser tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask

from examples.flask_orders import create_app
from examples.flask_orders.models import db


@contextmanager
def example_app(url: str, **config: Any) -> Iterator[Flask]:
    """The order service on `url` with its tables (and statekit's) created afresh;
    its engines are disposed of afterwards."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "TESTING": True, **config})
    with app.app_context():
        db.drop_all()
        db.create_all()
    try:
        yield app
    finally:
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()
