"""Starting Django worker processes on a test database alias: the workers of
`tests.contrib.django.workers` and `manage.py statekit` (as `python -m django`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from django.conf import settings

from tests.processes import ROOT

_KEYS = ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT", "OPTIONS")


def environment(alias: str, **variables: str) -> dict[str, str]:
    """The environment of a worker on `alias`'s database (`proc_settings`)."""
    database = {k: v for k, v in settings.DATABASES[alias].items() if k in _KEYS}
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.contrib.django.proc_settings",
        "STATEKIT_TEST_DJANGO_DATABASE": json.dumps(database, default=str),
        **variables,
    }


def spawn_worker(alias: str, command: str, **args: Any) -> subprocess.Popen[str]:
    """Start `python -m tests.contrib.django.workers command` on `alias`."""
    return _start(alias, ["-m", "tests.contrib.django.workers", command, json.dumps(args)], {})


def spawn_manage(alias: str, *argv: str, **variables: str) -> subprocess.Popen[str]:
    """Start `manage.py argv...` (`python -m django`) on `alias`; `variables` go to
    its environment (see `proc_settings`)."""
    return _start(alias, ["-m", "django", *argv], variables)


def _start(alias: str, argv: list[str], variables: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *argv],
        cwd=ROOT,
        env=environment(alias, **variables),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
