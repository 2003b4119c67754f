"""Django settings of the worker processes the multi-process tests start
(`DJANGO_SETTINGS_MODULE=tests.contrib.django.proc_settings`).

The parent passes its database as JSON in STATEKIT_TEST_DJANGO_DATABASE; it becomes
`default` here. Two more variables give a `manage.py statekit sweep` process what
the tests measure it by:

- STATEKIT_TEST_COUNT_CALLS: every compensation handler call of the job machine
  inserts a row into `proof_calls` in a transaction of its own (autocommit), so a
  call counts whether or not the compensation's completion commits;
- STATEKIT_TEST_HANG_AT: before the Nth UPDATE of the jobs table, print
  `{"ready": true}` and wait on stdin (the parent kills the process there);
- STATEKIT_TEST_GATE: before the first statement, print `{"ready": true}` and wait
  for a line on stdin, so several processes start sweeping together.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from statekit import CompensationContext
from tests.contract.jobs import HOOKS

DATABASE: dict[str, Any] = json.loads(os.environ["STATEKIT_TEST_DJANGO_DATABASE"])
if DATABASE["ENGINE"] == "django.db.backends.mysql":
    import pymysql

    pymysql.version_info = (2, 2, 7, "final", 0)  # what Django's backend asks of mysqlclient
    pymysql.install_as_MySQLdb()

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "statekit.contrib.django",
    "tests.contrib.django.testapp",
]
DATABASES = {"default": DATABASE}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
SECRET_KEY = "statekit-tests"
STATEKIT_SWEEP_BATCH_SIZE = int(os.environ.get("STATEKIT_TEST_BATCH_SIZE", "100"))

CALLS_TABLE = "proof_calls"


def _wait_for_parent() -> None:
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()


def _count_call(job: Any, undo: CompensationContext) -> None:
    from django.db import connection

    assert not connection.in_atomic_block, "a handler runs with no transaction open"
    with connection.cursor() as cursor:  # autocommit: committed on its own
        cursor.execute(
            f"INSERT INTO {CALLS_TABLE} (job_key, action, attempt) VALUES (%s, %s, %s)",
            [str(job.id), undo.action, undo.attempt],
        )


def _watch(connection: Any, **kwargs: Any) -> None:
    """Install the statement hooks the variables ask for on a new connection."""
    hang_at = int(os.environ.get("STATEKIT_TEST_HANG_AT", "0"))
    gate = [bool(os.environ.get("STATEKIT_TEST_GATE"))]
    updates = [0]

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if gate[0]:
            gate[0] = False
            _wait_for_parent()
        if hang_at and sql.startswith("UPDATE") and "testapp_job" in sql:
            updates[0] += 1
            if updates[0] == hang_at:
                _wait_for_parent()  # inside the batch's transaction: killed here
        return execute(sql, params, many, context)

    connection.execute_wrappers.append(wrapper)


if os.environ.get("STATEKIT_TEST_COUNT_CALLS"):
    HOOKS.append(_count_call)
if os.environ.get("STATEKIT_TEST_HANG_AT") or os.environ.get("STATEKIT_TEST_GATE"):
    from django.db.backends.signals import connection_created

    connection_created.connect(_watch, dispatch_uid="statekit-proof")
