"""Worker processes of the Django multi-process tests:
`python -m tests.contrib.django.workers COMMAND JSON`, with Django configured by
`proc_settings` on the parent's database. Each command prints one JSON line with
what it did, so the parent can check the database against every process's report.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import django

EVENTS = ("reserve", "pay", "ship")
PAYLOADS: dict[str, dict[str, str]] = {
    "pay": {"amount": "10", "reference": "r"},
    "ship": {"carrier": "DHL", "tracking_number": "1Z"},
}


def _unguarded_store() -> Any:
    """The control: a DjangoStore whose compare-and-set has no `state_version=`
    predicate, numbering history rows itself (as a library without optimistic
    locking would)."""
    from django.db import transaction
    from django.db.models import Max

    from statekit.contrib.django.models import Transition
    from statekit.contrib.django.store import DjangoStore
    from statekit.contrib.django.store.core import RECORD_FIELDS

    class UnguardedStore(DjangoStore):
        def apply(self, plan: Any, *, entity: Any = None, unit: Any = None, **kw: Any) -> Any:
            binding = self.binding(plan.entity_type)
            key = plan.key or ""
            record = plan.record()
            with transaction.atomic(using=self.db):
                binding.rows(self.db).filter(pk=binding.coerce_key(key)).update(
                    **binding.new_values(plan)
                )
                rows = Transition.objects.using(self.db)
                last = rows.filter(entity_type=plan.entity_type, entity_key=key).aggregate(
                    top=Max("seq")
                )["top"]
                values = {name: getattr(record, name) for name in RECORD_FIELDS}
                values["seq"] = (last or 0) + 1
                rows.create(entity_type=plan.entity_type, entity_key=key, **values)
            return record

    return UnguardedStore()


def stale_rounds(keys: list[str], unguarded: bool) -> dict[str, Any]:
    """For each event of `EVENTS`: load every order, tell the parent, wait for its go,
    then fire the event on those copies. Every worker acts on the same versions, so
    only the version predicate can stop the losers."""
    from django.db import connections

    from models.order import OrderWorkflow
    from statekit import ConcurrentTransitionError, Runner
    from statekit.contrib.django.store import DjangoStore
    from tests.contrib.django.testapp.models import Order

    store = _unguarded_store() if unguarded else DjangoStore()
    runner = Runner(OrderWorkflow.machine, store)
    rounds = []
    for event in EVENTS:
        orders = [Order.objects.get(pk=key) for key in keys]
        connections.close_all()  # no connection (nor snapshot) held while waiting
        print(json.dumps({"ready": True}), flush=True)
        sys.stdin.readline()
        fired: dict[str, int] = dict.fromkeys(keys, 0)
        conflicts: list[list[Any]] = []
        errors: list[str] = []
        for order in orders:
            try:
                runner.fire(order, event, **PAYLOADS.get(event, {}))
            except ConcurrentTransitionError as exc:
                conflicts.append([exc.key, exc.event, exc.expected_version, exc.actual_version])
            except Exception as exc:  # reported; the test fails on any
                errors.append(f"{type(exc).__name__}: {exc}")
            else:
                fired[order.pk] += 1
        rounds.append({"event": event, "fired": fired, "conflicts": conflicts, "errors": errors})
    return {"rounds": rounds}


def main() -> None:
    django.setup()
    command, raw = sys.argv[1], sys.argv[2]
    handler = {"stale_rounds": stale_rounds}[command]
    print(json.dumps(handler(**json.loads(raw))), flush=True)


if __name__ == "__main__":
    main()
