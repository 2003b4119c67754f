"""The Django contestants' worker: `python -m bench.persist --django-worker DATABASE_JSON KIND`.

Django's settings can be configured once per process, so each Django contestant runs
here, one process per contestant and database, driven line by line over a pipe: one
JSON command per line in, one `REPLY`-prefixed JSON answer per command out. KIND is
`fsm` (django-fsm-2 + django-fsm-log) or `statekit` (statekit's `DjangoStore`).
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, cast

from bench import time_once
from bench._databases import verb
from bench.persist.workload import DEFINITION_VERSION, fire_each, utcnow

REPLY = "@@persist "
"""The prefix of the worker's answers (anything else on its stdout is ignored)."""

KINDS = ("fsm", "statekit")


class _CommitHook(Protocol):
    """The private method every Django database wrapper commits through (its type
    stubs leave it out); `_record` wraps it to log each COMMIT."""

    _commit: Callable[[], None]


@dataclass(frozen=True)
class DjangoSide:
    """What one Django contestant does: create its orders, fire one transition,
    count what its tables hold."""

    setup: Callable[[int], None]
    step: Callable[[int, str], None]
    verify: Callable[[], list[int]]


def _configure(database: dict[str, Any], apps: list[str], **extra: Any) -> None:
    import django
    from django.conf import settings

    settings.configure(
        DATABASES={"default": database},
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", *apps],
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        USE_TZ=True,
        DEBUG=False,
        **extra,
    )
    django.setup()


def _fsm(database: dict[str, Any]) -> DjangoSide:  # pragma: no cover - subprocess
    """django-fsm-2 (`FSMField(protected=True)`, `ConcurrentTransitionMixin`) with
    django-fsm-log's `StateLog` rows."""
    _configure(
        database,
        ["django_fsm", "django_fsm_log"],
        DJANGO_FSM_LOG_STORAGE_METHOD="django_fsm_log.backends.SimpleBackend",
    )
    from django.core.management import call_command
    from django.db import connection, models, transaction
    from django_fsm import ConcurrentTransitionMixin, FSMField, transition
    from django_fsm_log.models import StateLog

    def card_ok(order: Any) -> bool:
        return bool(order.card_authorized)

    class DjangoOrder(ConcurrentTransitionMixin, models.Model):
        state = FSMField(default="pending", protected=True)
        card_authorized: models.BooleanField[bool, bool] = models.BooleanField(default=True)

        class Meta:
            app_label = "persist_bench"
            db_table = "orders"

        @transition(field=state, source="pending", target="paid", conditions=[card_ok])
        def pay(self) -> None:
            pass

        @transition(field=state, source="paid", target="shipped")
        def ship(self) -> None:
            pass

        @transition(field=state, source="shipped", target="delivered")
        def deliver(self) -> None:
            pass

    def step(key: int, event: str) -> None:
        with transaction.atomic():
            order = DjangoOrder.objects.get(pk=key)
            getattr(order, event)()
            order.save()

    def setup(total: int) -> None:
        call_command("migrate", verbosity=0, interactive=False)
        with connection.schema_editor() as editor:
            editor.create_model(DjangoOrder)
        DjangoOrder.objects.bulk_create(
            [DjangoOrder(id=key, card_authorized=True) for key in range(1, total + 1)],
            batch_size=500,
        )

    def verify() -> list[int]:
        return [
            DjangoOrder.objects.count(),
            DjangoOrder.objects.filter(state="delivered").count(),
            StateLog.objects.count(),
        ]

    return DjangoSide(setup, step, verify)


def _statekit(database: dict[str, Any]) -> DjangoSide:  # pragma: no cover - subprocess
    """statekit on Django: a `StateModel` bound to the benchmark's machine,
    `Runner(machine, DjangoStore()).fire_by_key`."""
    _configure(database, ["statekit.contrib.django"])
    from django.core.management import call_command
    from django.db import connection, models

    from bench.persist.workload import PersistOrderWorkflow
    from statekit import Runner
    from statekit.contrib.django.models import StateModel, Transition
    from statekit.contrib.django.store import DjangoStore

    machine = PersistOrderWorkflow.machine

    class StatekitDjangoOrder(StateModel):
        card_authorized: models.BooleanField[bool, bool] = models.BooleanField(default=True)

        class Meta:
            app_label = "persist_bench"
            db_table = "orders"

    runner = Runner(machine, DjangoStore({machine: StatekitDjangoOrder}))

    def step(key: int, event: str) -> None:
        runner.fire_by_key(key, event)

    def setup(total: int) -> None:
        call_command("migrate", verbosity=0, interactive=False)
        with connection.schema_editor() as editor:
            editor.create_model(StatekitDjangoOrder)
        at = utcnow()
        StatekitDjangoOrder.objects.bulk_create(
            [
                StatekitDjangoOrder(
                    id=key,
                    card_authorized=True,
                    state="pending",
                    state_version=0,
                    state_entered_at=at,
                    state_definition_version=DEFINITION_VERSION,
                )
                for key in range(1, total + 1)
            ],
            batch_size=500,
        )

    def verify() -> list[int]:
        orders = StatekitDjangoOrder.objects
        return [
            orders.count(),
            orders.filter(state="delivered", state_version=3).count(),
            Transition.objects.count(),
        ]

    return DjangoSide(setup, step, verify)


def _record(step: Callable[[int, str], None], event: str, lo: int, hi: int) -> list[list[str]]:
    """Fire `event` on keys lo..hi-1 and return the statements of each transition."""
    from django.db import connection

    log: list[str] = []
    per: list[list[str]] = []
    postgres = connection.vendor == "postgresql"

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        log.append(verb(sql))
        return execute(sql, params, many, context)

    connection.ensure_connection()
    hooked = cast(_CommitHook, connection)
    real_commit = hooked._commit

    def commit() -> Any:
        log.append("COMMIT")
        return real_commit()

    hooked._commit = commit
    try:
        with connection.execute_wrapper(wrapper):
            for key in range(lo, hi):
                if postgres:  # psycopg sends BEGIN before the first statement
                    log.append("BEGIN")
                step(key, event)
                per.append(list(log))
                log.clear()
    finally:
        del hooked._commit
    return per


def serve(database: dict[str, Any], kind: str = "fsm") -> None:  # pragma: no cover - subprocess
    """Configure Django for `database` and contestant `kind`, then answer commands
    from stdin until `quit`."""
    side = _statekit(database) if kind == "statekit" else _fsm(database)
    for line in sys.stdin:
        command = json.loads(line)
        try:
            cmd = command["cmd"]
            result: Any
            if cmd == "quit":
                result = None
            elif cmd == "setup":
                side.setup(command["total"])
                result = None
            elif cmd == "run":
                keys = list(range(command["lo"], command["hi"]))
                result = time_once(partial(fire_each, side.step, command["event"]), keys)
            elif cmd == "record":
                result = _record(side.step, command["event"], command["lo"], command["hi"])
            elif cmd == "verify":
                result = side.verify()
            else:
                raise ValueError(f"unknown command {cmd!r}")
            reply = {"result": result}
        except Exception:
            reply = {"error": traceback.format_exc()}
        print(REPLY + json.dumps(reply), flush=True)
        if command.get("cmd") == "quit":
            break
