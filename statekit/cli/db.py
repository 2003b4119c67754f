"""`statekit db create` and `statekit db sql`: statekit's tables, created or printed
(the SQL comes from `statekit.cli.sqlalchemy`)."""

from __future__ import annotations

import click

from statekit.cli.app import hosted
from statekit.cli.options import db_option, module_option, namespace_options

__all__ = ["DIALECTS", "db", "db_create", "db_sql"]

DIALECTS = ("postgresql", "sqlite", "mysql", "mariadb")


@click.group()
def db() -> None:
    """Create statekit's tables or print their DDL."""


@db.command("create")
@db_option()
@module_option(required=False)
def db_create(db_url: str | None, modules: tuple[str, ...]) -> None:
    """Create statekit's tables (and, given modules, the tables of their mapped
    classes) where they do not exist yet; a SQLite file is created if missing.
    Under a host (``flask statekit db create``) without --db: on the host's
    database, with its mapped classes' tables."""
    host = hosted()
    if db_url is None and host is not None and host.schema is not None:
        click.echo(f"ok: {', '.join(host.schema.create())}")
        return
    if db_url is None:
        raise click.UsageError("db create needs the database: give --db URL (or STATEKIT_DB)")
    from statekit.cli.sqlalchemy import create_tables

    click.echo(f"ok: {', '.join(create_tables(db_url, modules))}")


@db.command("sql")
@click.option(
    "--dialect",
    type=click.Choice(DIALECTS),
    default="postgresql",
    show_default=True,
    envvar="STATEKIT_DIALECT",
    show_envvar=True,
    help="SQL dialect to print the DDL for.",
)
@module_option(required=False)
@namespace_options
def db_sql(dialect: str, modules: tuple[str, ...]) -> None:
    """Print the CREATE statements of statekit's tables (and of the modules' mapped
    classes) for a migration you write yourself. Under a host without --module:
    the host's tables (its prefix and schema, its mapped classes)."""
    from statekit.cli.sqlalchemy import ddl

    host = hosted()
    if not modules and host is not None and host.schema is not None:
        statements = host.schema.ddl(dialect)
    else:
        statements = ddl(dialect, modules)
    for statement in statements:
        click.echo(f"{statement}\n")
