"""The clock a `DjangoStore`'s sweeper reads by default: the server's time on
PostgreSQL and MariaDB (asked once per resync interval, carried forward in between),
the system clock on SQLite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.db import connections

from models.order import OrderWorkflow
from statekit import Runner, Sweeper
from statekit.clock import ServerClock, SystemClock
from statekit.contrib.django.store import DjangoStore
from statekit.contrib.django.store.sweep import DatabaseClock
from tests.contrib.django.testapp.models import Order

QUERIES = {"postgresql": "SELECT clock_timestamp()", "mysql": "SELECT UTC_TIMESTAMP(6)"}


def _server_now(alias: str) -> datetime:
    connection = connections[alias]
    with connection.cursor() as cursor:
        cursor.execute(QUERIES[connection.vendor])
        value: datetime = cursor.fetchone()[0]
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def test_the_sweeper_reads_the_servers_clock_where_there_is_one(alias: str) -> None:
    store = DjangoStore({OrderWorkflow.machine: Order}, using=alias)
    clock = Sweeper([Runner(OrderWorkflow.machine, store)]).clock
    if connections[alias].vendor == "sqlite":
        assert isinstance(clock, SystemClock)
        return
    assert isinstance(clock, DatabaseClock)
    assert isinstance(clock, ServerClock)
    assert clock is store.database_clock()  # one clock per store

    asking = DatabaseClock(alias, resync=timedelta(0))  # asks the server every time
    before = _server_now(alias)
    read = asking.now()
    assert before <= read <= _server_now(alias)
    assert read.tzinfo == UTC

    carried = DatabaseClock(alias, resync=timedelta(hours=1))
    first = carried.now()
    later = carried.now()  # not asked again: carried forward with the monotonic clock
    assert before <= first <= later <= _server_now(alias) + timedelta(seconds=1)
