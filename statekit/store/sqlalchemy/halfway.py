"""A transition that moved the entity row but could not write its history row.

The compare-and-set UPDATE and the history INSERT run in one transaction, so a
failed INSERT must take the UPDATE down with it. statekit's own transactions roll
back on the error. In a transaction the caller owns (a Session, or a light unit's
block) the caller might catch the error and commit anyway; SQLite and MySQL would
then keep the UPDATE without its history row. So that transaction is refused its
commit until it has been rolled back or the Session closed, as SQLAlchemy refuses
a Session after a failed flush.
"""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from statekit.errors import StoreError
from statekit.records import Plan

__all__ = ["HalfWritten", "refuse_commit"]

_REASON = "statekit_half_written"
_LISTENING = "statekit_half_written_listening"


class HalfWritten(Exception):  # noqa: N818 - internal signal, never reaches the caller
    """Raised inside the store when the UPDATE ran and the history INSERT failed, or
    (`written` false) the one statement writing both failed, in a transaction that
    may only roll back; `error` is what the caller gets, `reason` what a later
    commit is refused with."""

    def __init__(self, error: Exception, plan: Plan, *, written: bool = True) -> None:
        super().__init__(str(error))
        self.error = error
        what = "updated the row but its history row failed" if written else "failed"
        self.reason = (
            f"{plan.entity_type} {plan.key}: {plan.event!r} {what} ({error}); "
            "roll this transaction back"
        )


def refuse_commit(session: Session, reason: str) -> None:
    """Make `session` raise `StoreError(reason)` when it tries to commit the
    transaction it is in now (or one enclosing it), until that one has ended
    another way: rolled back, or closed."""
    if not session.info.get(_LISTENING):
        event.listen(session, "before_commit", _refuse)
        event.listen(session, "after_transaction_end", _forget)
        session.info[_LISTENING] = True
    session.info[_REASON] = (reason, _innermost(session))


def _innermost(session: Session) -> SessionTransaction | None:
    return session.get_nested_transaction() or session.get_transaction()


def _within(transaction: SessionTransaction | None, outer: SessionTransaction | None) -> bool:
    """Whether `transaction` is `outer` or nested inside it."""
    while transaction is not None:
        if transaction is outer:
            return True
        transaction = transaction.parent
    return False


def _refuse(session: Session) -> None:
    held = session.info.get(_REASON)
    if held is not None and _within(held[1], _innermost(session)):
        raise StoreError(f"commit refused: {held[0]}")


def _forget(session: Session, transaction: SessionTransaction) -> None:
    # It cannot have committed (see _refuse): it rolled back or was closed, and
    # with it the UPDATE that had no history row.
    held = session.info.get(_REASON)
    if held is not None and _within(held[1], transaction):
        del session.info[_REASON]
