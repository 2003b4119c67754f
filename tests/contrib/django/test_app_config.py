"""The app registers its system checks itself: a project without `django.contrib.admin`
gets them too. Django is configured in a child process, so this one's settings stay."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = textwrap.dedent(
    """
    import django
    from django.conf import settings
    settings.configure(
        INSTALLED_APPS=["statekit.contrib.django"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    )
    django.setup()
    from django.core.checks import registry
    print(sorted(c.__name__ for c in registry.registry.get_checks(include_deployment_checks=True)
                 if c.__module__ == "statekit.contrib.django.checks"))
    """
)


def test_the_checks_are_registered_without_the_admin() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(
        ["check_admin_permissions", "check_migrations", "check_stored_states"]
    )
