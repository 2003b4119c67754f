"""Where statekit's reads get their connection, so a database that cannot be reached,
opened or read is one `StoreError` (the driver's error in `__cause__`) on every read path.

Write units wrap their own transactions in `errors.wrap` too (`store.transaction`,
`units.py`, the sweeper's claims), translating a lost race to
`ConcurrentTransitionError`; the driver path wraps `engine.raw_connection()` in
`driver._checked_out`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

from statekit.store.sqlalchemy.errors import failures, wrap

__all__ = ["failures", "reading"]


@contextmanager
def reading(engine: Engine, what: str) -> Iterator[Connection]:
    """A read transaction on `engine`, for the block.

    Raises:
        StoreError: connecting or reading failed ("`what` failed: ...").
    """
    with wrap(what, engine), engine.connect() as conn, conn.begin():
        yield conn
