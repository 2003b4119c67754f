"""The Django contestant's worker: `python -m bench.persist --django-worker DATABASE_JSON`.

Django's settings can be configured once per process, so each database's django-fsm-2
+ django-fsm-log contestant runs here, driven line by line over a pipe: one JSON
command per line in, one `REPLY`-prefixed JSON answer per command out.
"""

from __future__ import annotations

import json
import sys
import traceback
from functools import partial
from typing import Any

from bench import time_once
from bench._databases import verb
from bench.persist.workload import fire_each

REPLY = "@@persist "
"""The prefix of the worker's answers (anything else on its stdout is ignored)."""


def serve(database: dict[str, Any]) -> None:  # pragma: no cover - subprocess
    """Configure Django for `database` and answer commands from stdin until `quit`."""
    import django  # type: ignore[import-untyped]
    from django.conf import settings  # type: ignore[import-untyped]

    settings.configure(
        DATABASES={"default": database},
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "django_fsm",
            "django_fsm_log",
        ],
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        USE_TZ=True,
        DEBUG=False,
        DJANGO_FSM_LOG_STORAGE_METHOD="django_fsm_log.backends.SimpleBackend",
    )
    django.setup()

    from django.core.management import call_command  # type: ignore[import-untyped]
    from django.db import connection, models, transaction  # type: ignore[import-untyped]
    from django_fsm import ConcurrentTransitionMixin, FSMField, transition
    from django_fsm_log.models import StateLog

    def card_ok(order: Any) -> bool:
        return bool(order.card_authorized)

    class DjangoOrder(ConcurrentTransitionMixin, models.Model):  # type: ignore[misc]
        state = FSMField(default="pending", protected=True)
        card_authorized = models.BooleanField(default=True)

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

    def record(event: str, lo: int, hi: int) -> list[list[str]]:
        log: list[str] = []
        per: list[list[str]] = []
        postgres = connection.vendor == "postgresql"

        def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            log.append(verb(sql))
            return execute(sql, params, many, context)

        connection.ensure_connection()
        real_commit = connection._commit

        def commit() -> Any:
            log.append("COMMIT")
            return real_commit()

        connection._commit = commit
        try:
            with connection.execute_wrapper(wrapper):
                for key in range(lo, hi):
                    if postgres:  # psycopg sends BEGIN before the first statement
                        log.append("BEGIN")
                    step(key, event)
                    per.append(list(log))
                    log.clear()
        finally:
            del connection._commit
        return per

    def verify() -> list[int]:
        return [
            DjangoOrder.objects.count(),
            DjangoOrder.objects.filter(state="delivered").count(),
            StateLog.objects.count(),
        ]

    for line in sys.stdin:
        command = json.loads(line)
        try:
            cmd = command["cmd"]
            result: Any
            if cmd == "quit":
                result = None
            elif cmd == "setup":
                setup(command["total"])
                result = None
            elif cmd == "run":
                keys = list(range(command["lo"], command["hi"]))
                result = time_once(partial(fire_each, step, command["event"]), keys)
            elif cmd == "record":
                result = record(command["event"], command["lo"], command["hi"])
            elif cmd == "verify":
                result = verify()
            else:
                raise ValueError(f"unknown command {cmd!r}")
            reply = {"result": result}
        except Exception:
            reply = {"error": traceback.format_exc()}
        print(REPLY + json.dumps(reply), flush=True)
        if command.get("cmd") == "quit":
            break
