"""statekit's system checks (Django's checks framework).

Database checks, run by ``manage.py check --database default`` and before
``migrate`` (never at import or by ``runserver``, which pass no database):

- ``statekit.W001``: migrations of statekit's app, or of an app whose models carry
  a machine, are not applied on the database;
- ``statekit.W002``: stored rows the machines do not know: an unknown state or
  definition version, a version that disagrees with the history (what
  ``manage.py statekit check`` lists).

Both are warnings, so ``migrate`` still runs (it may be the very migration that
fixes them). A static check, run always:

- ``statekit.W003``: a model with a `StateModelAdmin` lacks permissions the admin
  checks (declare `statekit_permissions` in its ``Meta.permissions``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.core.checks import CheckMessage, Tags, Warning, register
from django.db import DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor

from statekit.errors import StatekitError

__all__ = ["check_admin_permissions", "check_migrations", "check_stored_states"]

APP_LABEL = "statekit"


@register(Tags.database)
def check_migrations(
    app_configs: Sequence[AppConfig] | None = None,
    databases: Sequence[str] | None = None,
    **_: Any,
) -> list[CheckMessage]:
    """W001 per database with unapplied migrations of statekit's tables or of the
    apps holding state models."""
    if not databases:
        return []
    from statekit.contrib.django.hosting import state_models

    labels = {APP_LABEL, *(m._meta.app_label for m in state_models().values())}
    found: list[CheckMessage] = []
    for alias in databases:
        try:
            executor = MigrationExecutor(connections[alias])
            plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        except DatabaseError as exc:
            found.append(
                Warning(
                    f"statekit could not read the migrations of database {alias!r}: {exc}",
                    id="statekit.W001",
                )
            )
            continue
        missing = [m for m, backwards in plan if not backwards and m.app_label in labels]
        if missing:
            names = ", ".join(f"{m.app_label}.{m.name}" for m in missing)
            found.append(
                Warning(
                    f"{len(missing)} migration(s) statekit needs are not applied on database "
                    f"{alias!r}: {names}",
                    hint=f"run: manage.py migrate --database {alias}",
                    id="statekit.W001",
                )
            )
    return found


@register(Tags.database)
def check_stored_states(
    app_configs: Sequence[AppConfig] | None = None,
    databases: Sequence[str] | None = None,
    **_: Any,
) -> list[CheckMessage]:
    """W002 per stored row group the machines do not know (unknown state or
    definition version, version disagreeing with the history). Only where the
    migrations are applied (W001 says when they are not)."""
    if not databases or "default" not in databases or check_migrations(databases=["default"]):
        return []
    from statekit.cli.check import stored_problems
    from statekit.contrib.django.hosting import host

    try:
        found_host = host()
        if not found_host.models:
            return []
        problems = stored_problems(found_host.context())
    except (StatekitError, DatabaseError) as exc:
        return [Warning(f"statekit could not read the stored states: {exc}", id="statekit.W002")]
    return [
        Warning(
            problem,
            hint="move those rows with a data migration, or declare the state/version "
            "(see docs/upgrading.md); manage.py statekit check lists them",
            id="statekit.W002",
        )
        for problem in problems
    ]


@register(Tags.models)
def check_admin_permissions(
    app_configs: Sequence[AppConfig] | None = None, **_: Any
) -> list[CheckMessage]:
    """W003 per model registered with a `StateModelAdmin` whose ``Meta.permissions``
    lack some of `statekit_permissions`."""
    try:
        from django.contrib import admin
    except ImportError:  # pragma: no cover - the admin app ships with Django
        return []
    from statekit.contrib.django.admin import StateModelAdmin
    from statekit.contrib.django.hosting import state_models
    from statekit.contrib.django.permissions import statekit_permissions

    found: list[CheckMessage] = []
    for machine, model in state_models().items():
        if not admin.site.is_registered(model):
            continue
        if not isinstance(admin.site.get_model_admin(model), StateModelAdmin):
            continue
        opts = model._meta
        declared = {codename for codename, _ in opts.permissions}
        wanted = [c for c, _ in statekit_permissions(machine, opts.model_name or "")]
        missing = [c for c in wanted if c not in declared]
        if missing:
            found.append(
                Warning(
                    f"{opts.label} lacks the permissions its StateModelAdmin checks: "
                    f"{', '.join(missing)}; only superusers can fire those events",
                    hint=f"in {opts.object_name}.Meta: permissions = statekit_permissions("
                    f"<its Workflow>, {opts.model_name!r}), then makemigrations",
                    obj=model,
                    id="statekit.W003",
                )
            )
    return found
