"""Where statekit's reads get their connection, so a database that cannot be reached,
opened or read is one `StoreError` (the driver's error in `__cause__`) on every read path.

Write units wrap their own transactions (`store.transaction`, `unit_of_work`, the
sweeper's claims), translating a lost race to `ConcurrentTransitionError`; the driver
path wraps `engine.raw_connection()` in `driver._checked_out`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine
from sqlalchemy import exc as sa_exc

from statekit.errors import StoreError

__all__ = ["failures", "reading"]


def failures(engine: Engine) -> tuple[type[Exception], ...]:
    """What a database failure on `engine` raises: SQLAlchemy's errors, and the
    driver's own, which SQLAlchemy lets through where it sets the isolation level of
    a pooled connection the server has ended (an `isolation_level` execution option,
    as statekit's sweeper engines on MariaDB and MySQL have)."""
    return (sa_exc.SQLAlchemyError, engine.dialect.loaded_dbapi.Error)


@contextmanager
def reading(engine: Engine, what: str) -> Iterator[Connection]:
    """A read transaction on `engine`, for the block.

    Raises:
        StoreError: connecting or reading failed ("`what` failed: ...").
    """
    try:
        with engine.connect() as conn, conn.begin():
            yield conn
    except failures(engine) as exc:
        raise StoreError(f"{what} failed: {exc}") from exc
