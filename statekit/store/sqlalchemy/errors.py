"""Map SQLAlchemy and driver exceptions to statekit's errors, once, at the boundary.

Every boundary of the SQL store runs its database work in `wrap(what, engine)`: a
failure leaves as `StoreError("<what> failed: ...")`, or, for the write of a plan,
as `translate`'s error (`ConcurrentTransitionError` for a lost race), with the
database's exception in `__cause__`.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from sqlalchemy import Engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm.exc import StaleDataError

from statekit.errors import ConcurrentTransitionError, StoreError
from statekit.records import Plan
from statekit.store.sqlalchemy.tables import conflict_constraints, history_tables

__all__ = ["conflict", "failures", "is_conflict", "store_failure", "translate", "wrap"]

# SQLSTATE 40001 serialization failure, 40P01 deadlock (PostgreSQL);
# MySQL/MariaDB 1213 deadlock, 1020 "record has changed since last read".
_CONFLICT_SQLSTATES = frozenset({"40001", "40P01"})
_CONFLICT_MYSQL_CODES = frozenset({1213, 1020})
# SQLITE_BUSY_SNAPSHOT: a deferred transaction's read is older than the last commit,
# so it may not write (SQLite's own optimistic check, in WAL mode).
_SQLITE_BUSY_SNAPSHOT = 517


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
        # Every prefix's constraint names (see `statekit_tables`).
        if any(name in text for name in conflict_constraints()):
            return True
        # MySQL and MariaDB call every primary key PRIMARY, whatever it was named.
        if "PRIMARY'" in text and _inserts_history(error.statement):
            return True
        # SQLite names the columns, not the constraint.
        return any(f"{name}.entity_type" in text for name in history_tables())
    return False


def _inserts_history(statement: str | None) -> bool:
    """Whether `statement` inserts into a history table (of any prefix or schema)."""
    words = (statement or "").split(None, 3)
    if len(words) < 3 or [w.upper() for w in words[:2]] != ["INSERT", "INTO"]:
        return False
    target = words[2].split("(")[0].replace("`", "").replace('"', "").rpartition(".")[2]
    return target in history_tables()


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


def failures(engine: Engine) -> tuple[type[Exception], ...]:
    """What a database failure on `engine` raises: SQLAlchemy's errors, and the
    driver's own, which SQLAlchemy lets through where it sets the isolation level of
    a pooled connection the server has ended (an `isolation_level` execution option,
    as statekit's sweeper engines on MariaDB and MySQL have)."""
    return (sa_exc.SQLAlchemyError, engine.dialect.loaded_dbapi.Error)


class wrap:  # noqa: N801 - used as a function: `with wrap("reading x", engine):`
    """Run the block; a database failure leaves it as a statekit error.

    Without `plan`: `StoreError("<what> failed: <error>")`. With `plan` (its write
    failed): `translate(error, plan, version_of())`, so a lost race is a
    `ConcurrentTransitionError`. `engine` adds its driver's own errors to
    SQLAlchemy's (see `failures`). statekit's own errors pass through. (A class, not
    a generator: the driver path enters two per transition.)
    """

    __slots__ = ("engine", "plan", "version_of", "what")

    def __init__(
        self,
        what: str,
        engine: Engine | None = None,
        *,
        plan: Plan | None = None,
        version_of: Callable[[], int | None] | None = None,
    ) -> None:
        self.what = what
        self.engine = engine
        self.plan = plan
        self.version_of = version_of

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if error is None:
            return
        failure = store_failure(error, self.what, self.engine, self.plan, self.version_of)
        if failure is not None:
            raise failure from error


def store_failure(
    error: BaseException,
    what: str,
    engine: Engine | None = None,
    plan: Plan | None = None,
    version_of: Callable[[], int | None] | None = None,
) -> Exception | None:
    """What `wrap` turns `error` into (None: it passes through unchanged), for a
    write path that catches the error itself, `try` being free until it raises:

        except Exception as error:
            failure = store_failure(error, "storing", engine, plan, version_of)
            if failure is None:
                raise
            raise failure from error
    """
    caught = failures(engine) if engine is not None else (sa_exc.SQLAlchemyError,)
    if not isinstance(error, caught):
        return None
    if plan is not None:
        return translate(error, plan, None if version_of is None else version_of())
    return StoreError(f"{what} failed: {error}")
