"""Fixtures of the admin, ``manage.py statekit`` and system check tests: the example
project (`examples.django_orders`) on a fresh, migrated database per backend and
test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.contrib.django.admin.support import example_project, use_database
from tests.sql_support import fresh_database


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], scope="module"
)
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The URL of a fresh database on each backend, migrated, as Django's default,
    with the example project's settings."""
    backend: str = request.param
    with (
        example_project(),
        fresh_database(backend, tmp_path_factory.mktemp(backend)) as url,
        use_database(url),
    ):
        yield url
