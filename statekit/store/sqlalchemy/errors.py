"""Map SQLAlchemy and driver exceptions to statekit's errors, once, at the boundary."""

from __future__ import annotations

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm.exc import StaleDataError

from statekit.errors import ConcurrentTransitionError, StoreError
from statekit.records import Plan
from statekit.store.sqlalchemy.tables import (
    HISTORY_IDEMPOTENCY_CONSTRAINT,
    HISTORY_SEQ_CONSTRAINT,
    HISTORY_TABLE,
)

__all__ = ["conflict", "is_conflict", "translate"]

# SQLSTATE 40001 serialization failure, 40P01 deadlock (PostgreSQL);
# MySQL/MariaDB 1213 deadlock, 1020 "record has changed since last read".
_CONFLICT_SQLSTATES = frozenset({"40001", "40P01"})
_CONFLICT_MYSQL_CODES = frozenset({1213, 1020})
# SQLITE_BUSY_SNAPSHOT: a deferred transaction's read is older than the last commit,
# so it may not write (SQLite's own optimistic check, in WAL mode).
_SQLITE_BUSY_SNAPSHOT = 517
_CONFLICT_CONSTRAINTS = (HISTORY_SEQ_CONSTRAINT, HISTORY_IDEMPOTENCY_CONSTRAINT)


def is_conflict(error: BaseException) -> bool:
    """Whether a backend error means another writer won the race."""
    if isinstance(error, StaleDataError):
        return True
    if not isinstance(error, sa_exc.DBAPIError):
        return False
    orig = error.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate in _CONFLICT_SQLSTATES:
        return True
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in _CONFLICT_MYSQL_CODES:
        return True
    if getattr(orig, "sqlite_errorcode", None) == _SQLITE_BUSY_SNAPSHOT:
        return True
    if isinstance(error, sa_exc.IntegrityError):
        text = str(orig)
        if any(name in text for name in _CONFLICT_CONSTRAINTS):
            return True
        # MySQL and MariaDB call every primary key PRIMARY, whatever it was named.
        if "PRIMARY'" in text and _inserts_history(error.statement):
            return True
        # SQLite names the columns, not the constraint.
        return "statekit_transitions.entity_type" in text
    return False


def _inserts_history(statement: str | None) -> bool:
    return (statement or "").lstrip().upper().startswith(f"INSERT INTO {HISTORY_TABLE.upper()}")


def conflict(plan: Plan, actual_version: int | None) -> ConcurrentTransitionError:
    """The error for `plan` losing its race to a writer that left `actual_version`."""
    return ConcurrentTransitionError(
        entity_type=plan.entity_type,
        key=plan.key or "",
        event=plan.event,
        expected_version=plan.expected_version,
        actual_version=actual_version,
    )


def translate(error: BaseException, plan: Plan, actual_version: int | None) -> Exception:
    """Return the statekit error for a failed `apply` of `plan`."""
    if is_conflict(error):
        return conflict(plan, actual_version)
    return StoreError(
        f"storing {plan.event!r} on {plan.entity_type} {plan.key} failed: "
        f"{type(error).__name__}: {error}"
    )
