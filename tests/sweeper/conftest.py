"""The job database most sweeper test modules share (modules with tables of their own
define their own `engine`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from tests.sweep_env import job_database


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    """A fresh database of `database_url`'s kind with the job tables, per module."""
    with job_database(database_url) as engine:
        yield engine
