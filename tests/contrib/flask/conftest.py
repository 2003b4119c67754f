"""Fixtures of the Flask extension's tests: the shop app on a fresh database of each
backend (SQLite file, PostgreSQL, MariaDB), its tables created afresh per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.browser_support import browser  # noqa: F401 - the browser tests' fixture
from tests.contrib.flask.shop import BEFORE_FIRE, create_app, db
from tests.sql_support import fresh_database

AppFactory = Callable[..., Flask]


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"], scope="module")
def shop_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh database per test module on each backend."""
    backend: str = request.param
    with fresh_database(backend, tmp_path_factory.mktemp(backend)) as url:
        yield url


@pytest.fixture
def make_app() -> Iterator[AppFactory]:
    """Builds shop apps on a URL with empty tables; disposes of their engines after."""
    apps: list[Flask] = []

    def make(url: str, **config: Any) -> Flask:
        app = create_app(url, **config)
        with app.app_context():
            db.drop_all()
            db.create_all()
        apps.append(app)
        return app

    yield make
    BEFORE_FIRE.clear()
    for app in apps:
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()


@pytest.fixture
def app(make_app: AppFactory, shop_url: str) -> Flask:
    """The shop with the problem-details error handlers on."""
    return make_app(shop_url, STATEKIT_PROBLEM_DETAILS=True)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
