"""Fixtures of the admin, ``manage.py statekit`` and system check tests: Django set up
once for the session with the example project's apps (`examples.django_orders`),
and its database moved to a fresh, migrated database per backend and test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.contrib.django.admin.support import configure, use_database
from tests.sql_support import fresh_database

configure()


@pytest.fixture(params=["sqlite", "postgresql"], scope="module")
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The URL of a fresh database on each backend, migrated, as Django's default."""
    backend: str = request.param
    with fresh_database(backend, tmp_path_factory.mktemp(backend)) as url, use_database(url):
        yield url
