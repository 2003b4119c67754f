"""The drain benchmark's contestants: statekit's `Sweeper.drain`, and a drain written by
hand with the same guarantees.

The hand-written drain claims one task per short transaction (`UPDATE ... WHERE id =
(SELECT ... FOR UPDATE SKIP LOCKED) RETURNING`, on SQLite under the write lock),
newest step first per instance and taking over expired leases; then, in one
transaction per compensation, it locks the job row, checks it is still stuck, runs the
handler, marks the task done if its claim still holds, writes the attempt row and, for
the instance's last task, moves the job to `released` with its history row.
"""

from __future__ import annotations

import uuid
from time import perf_counter

from sqlalchemy import Connection, and_, exists, func, insert, or_, select, update

from bench.drain.schema import DRAIN_JOBS, LEASE, NAME, NOW, REMOTE_CALL, Database, DrainJob
from statekit.sweeper import SweepResult

_OPEN = ("pending", "running", "dead")


def statekit_drain(db: Database, concurrency: int = 1) -> tuple[float, SweepResult]:
    """Seconds to drain every due compensation with `Sweeper.drain`, and its counts."""
    sweeper = db.sweeper(concurrency)
    result = SweepResult()
    started = perf_counter()
    sweeper.drain.run(result, lambda: False)
    return perf_counter() - started, result


class HandWritten:
    """The reference drain on one database; statements are built once."""

    def __init__(self, db: Database) -> None:
        self.db = db
        c = db.store.tables.compensations
        newer = c.alias("newer")
        due = or_(
            and_(c.c.status == "pending", c.c.next_attempt_at <= NOW),
            and_(c.c.status == "running", c.c.lease_until <= NOW),
        )
        blocked = exists().where(
            newer.c.entity_type == c.c.entity_type,
            newer.c.entity_key == c.c.entity_key,
            newer.c.step_seq > c.c.step_seq,
            newer.c.status.in_(_OPEN),
        )
        pick = select(c.c.id).where(due, ~blocked).order_by(c.c.next_attempt_at).limit(1)
        if db.dialect == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        self.claim = (
            update(c)
            .where(c.c.id == pick.scalar_subquery())
            .values(
                status="running",
                attempts=c.c.attempts + 1,
                lease_until=NOW + LEASE,
                updated_at=NOW,
            )
            .returning(c.c.id, c.c.entity_key, c.c.attempts, c.c.claim_token)
        )
        self.c = c

    def run(self) -> int:
        """Drain until nothing is due; returns how many compensations completed."""
        done = 0
        writer = self.db.store.writer  # BEGIN IMMEDIATE on SQLite
        while True:
            token = uuid.uuid4().hex
            with writer.begin() as conn:
                row = conn.execute(self.claim.values(claim_token=token)).first()
            if row is None:
                return done
            with writer.begin() as conn:
                done += self._compensate(conn, row[0], row[1], row[2], token)

    def _compensate(self, conn: Connection, task: int, key: str, attempt: int, token: str) -> int:
        c, a, t = self.c, self.db.store.tables.attempts, self.db.store.tables.transitions
        job = DRAIN_JOBS
        found = conn.execute(
            select(DrainJob.state_version, DrainJob.stuck_at)
            .where(DrainJob.id == int(key))
            .with_for_update()
        ).first()
        if found is None or found[1] is None:
            return 0  # gone or no longer stuck: a real drain would settle it
        if REMOTE_CALL["seconds"]:
            import time

            time.sleep(REMOTE_CALL["seconds"])
        conn.execute(update(job).where(DrainJob.id == int(key)).values(slot=None))  # the handler
        claimed = conn.execute(
            update(c)
            .where(c.c.id == task, c.c.claim_token == token, c.c.status == "running")
            .values(status="done", lease_until=None, claim_token=None, updated_at=NOW)
        )
        if claimed.rowcount != 1:
            conn.rollback()
            return 0
        conn.execute(
            insert(a).values(compensation_id=task, attempt=attempt, at=NOW, succeeded=True)
        )
        remaining = conn.execute(
            select(func.count()).where(
                c.c.entity_type == NAME, c.c.entity_key == key, c.c.status.in_(_OPEN)
            )
        ).scalar()
        if not remaining:
            version = found[0] + 1
            conn.execute(
                update(job)
                .where(DrainJob.id == int(key), DrainJob.state_version == found[0])
                .values(
                    state="released",
                    state_version=version,
                    state_entered_at=NOW,
                    stuck_at=None,
                    stuck_reason=None,
                )
            )
            conn.execute(
                insert(t).values(
                    entity_type=NAME,
                    entity_key=key,
                    seq=version,
                    event="@compensated",
                    source="running",
                    target="released",
                    at=NOW,
                    actor="statekit-sweeper",
                    definition_version=1,
                )
            )
        return 1
