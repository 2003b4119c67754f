"""`DjangoStore`'s `Reads` tier: what the CLI, the admin and views read."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db.models import Count, F, Max, Q

from statekit.compensation import TASK_COLUMNS, CompensationTask, TaskStatus, task_of
from statekit.contrib.django.models import Compensation, CompensationAttempt, Transition
from statekit.contrib.django.store.binding import ModelBinding
from statekit.contrib.django.store.units import database_errors
from statekit.engine import Machine
from statekit.records import MARKS_IN_PLACE, Snapshot
from statekit.store.protocol import Attempt, Disagreement, Stay, StoredState, Waiting

__all__ = ["ReadOperations"]


class ReadOperations:
    """Mixed into `DjangoStore`: the `Reads` protocol on the ORM."""

    db: str
    _bindings: dict[str, ModelBinding]

    if TYPE_CHECKING:

        def binding(self, entity_type: str) -> ModelBinding: ...  # StoreCore's

    def machines(self) -> Mapping[str, Machine]:
        """The machines whose models are registered, by name."""
        return {name: binding.machine for name, binding in self._bindings.items()}

    def _history_rows(self, entity_type: str) -> Any:
        return Transition.objects.using(self.db).filter(entity_type=entity_type)

    def stuck(self, entity_type: str) -> list[Snapshot]:
        """Snapshots of the stuck instances, oldest mark first (see `Reads.stuck`)."""
        binding = self.binding(entity_type)
        stuck_at = binding.names[4]
        rows = (
            binding.rows(self.db)
            .filter(**{f"{stuck_at}__isnull": False})
            .order_by(stuck_at, "pk")
            .values_list(*binding.snapshot_fields())
        )
        with database_errors(f"listing stuck {entity_type} instances"):
            return [binding.snapshot(row) for row in rows]

    def count_by_state(self, entity_type: str, *, stuck_only: bool = False) -> dict[str, int]:
        """Instances per state now (see `Reads.count_by_state`)."""
        binding = self.binding(entity_type)
        state, stuck_at = binding.names[0], binding.names[4]
        rows = binding.rows(self.db)
        if stuck_only:
            rows = rows.filter(**{f"{stuck_at}__isnull": False})
        with database_errors(f"counting {entity_type} instances"):
            counted = rows.order_by().values_list(state).annotate(n=Count("pk"))
            return {name: n for name, n in counted}

    def transition_counts(
        self, entity_type: str, *, since: datetime | None = None, until: datetime | None = None
    ) -> dict[tuple[str, str, str], int]:
        """How often each `(source, event, target)` was taken in the window."""
        rows = self._history_rows(entity_type)
        if since is not None:
            rows = rows.filter(at__gte=since)
        if until is not None:
            rows = rows.filter(at__lte=until)
        with database_errors(f"counting {entity_type} transitions"):
            counted = (
                rows.order_by().values_list("source", "event", "target").annotate(n=Count("seq"))
            )
            return {(source, event, target): n for source, event, target, n in counted}

    def stays(self, entity_type: str, since: datetime, until: datetime) -> list[Stay]:
        """The stays that ended from `since` to `until` (see `Reads.stays`)."""
        moved = self._history_rows(entity_type).exclude(
            Q(event__in=MARKS_IN_PLACE) & Q(source=F("target"))
        )
        rows = moved.order_by("entity_key", "seq").values_list("entity_key", "source", "at")
        stays: list[Stay] = []
        with database_errors(f"reading {entity_type} stays"):
            previous: tuple[str, datetime] | None = None
            for key, source, at in rows:
                if previous is not None and previous[0] == key and since <= at <= until:
                    stays.append(Stay(source, previous[1], at))
                previous = (key, at)
        return stays

    def waiting(self, entity_type: str, now: datetime) -> list[Waiting]:
        """Instances in a non-final state entered at or before `now`."""
        binding = self.binding(entity_type)
        state, entered = binding.names[0], binding.names[2]
        finals = [s.name for s in binding.machine.spec.states if s.final]
        rows = (
            binding.rows(self.db)
            .exclude(**{f"{state}__in": finals})
            .filter(**{f"{entered}__lte": now})
            .values_list(state, entered)
        )
        with database_errors(f"listing waiting {entity_type} instances"):
            return [Waiting(name, at) for name, at in rows]

    def stored_states(self, entity_type: str) -> list[StoredState]:
        """Instance counts per stored state and definition version."""
        binding = self.binding(entity_type)
        state, definition = binding.names[0], binding.names[6]
        rows = (
            binding.rows(self.db).order_by().values_list(state, definition).annotate(n=Count("pk"))
        )
        with database_errors(f"counting stored {entity_type} states"):
            return [StoredState(name, version, n) for name, version, n in rows]

    def disagreements(self, entity_type: str) -> list[Disagreement]:
        """Instances whose version is not their history's length and last seq."""
        binding = self.binding(entity_type)
        counts: dict[str, tuple[int, int | None]] = defaultdict(lambda: (0, None))
        with database_errors(f"checking {entity_type} versions against history"):
            per_key = (
                self._history_rows(entity_type)
                .order_by()
                .values_list("entity_key")
                .annotate(n=Count("seq"), last=Max("seq"))
            )
            for key, n, last in per_key:
                counts[key] = (n, last)
            rows = binding.rows(self.db).order_by("pk").values_list("pk", binding.names[1])
            found = []
            for pk, version in rows:
                n, last = counts[str(pk)]
                if version != n or version != (last or 0):
                    found.append(Disagreement(str(pk), version, n, last))
        return found

    def compensations(
        self,
        entity_type: str | None = None,
        key: str | None = None,
        *,
        status: Sequence[TaskStatus] = (),
    ) -> list[CompensationTask]:
        """Outbox rows by machine and key, newest step first (see `Reads.compensations`)."""
        rows = Compensation.objects.using(self.db).all()
        if entity_type is not None:
            rows = rows.filter(entity_type=entity_type)
        if key is not None:
            rows = rows.filter(entity_key=key)
        if status:
            rows = rows.filter(status__in=list(status))
        ordered = rows.order_by("entity_type", "entity_key", "-step_seq", "id")
        with database_errors("listing compensations"):
            return [task_of(row) for row in ordered.values_list(*TASK_COLUMNS)]

    def attempts(self, task_id: int) -> list[Attempt]:
        """Every attempt at one compensation, first first (see `Reads.attempts`)."""
        rows = (
            CompensationAttempt.objects.using(self.db)
            .filter(compensation_id=task_id)
            .order_by("attempt")
            .values_list("attempt", "at", "succeeded", "error")
        )
        with database_errors(f"listing the attempts of compensation {task_id}"):
            return [Attempt(*row) for row in rows]
