"""``fieldwatch db …`` and the database every other command opens: checked first (the
file exists, the schema is at head), never created on the way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from sqlalchemy.engine import URL

from fieldwatch.auth.roles import Role
from fieldwatch.cli.errors import CliError, load_settings
from fieldwatch.core.settings import Settings
from fieldwatch.db import migrate
from fieldwatch.db.engine import create_engine, normalize_url

if TYPE_CHECKING:
    from fieldwatch.auth.principal import Principal
    from fieldwatch.db.uow import UnitOfWork

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)

HOW_TO_MIGRATE = "run `fieldwatch db upgrade` (or `fieldwatch serve --init`) first"


async def upgrade_schema(settings: Settings) -> str | None:
    """Migrate to head; the new revision, or ``None`` if it was current already."""
    engine = create_engine(settings.resolved_database_url, pgbouncer=settings.db_pgbouncer)
    try:
        before = await migrate.current_revision(engine)
        await migrate.upgrade(engine)
        after = await migrate.current_revision(engine)
        return None if before == after else after
    finally:
        await engine.dispose()


def database_label(settings: Settings) -> str:
    return normalize_url(settings.resolved_database_url).render_as_string(hide_password=True)


def _missing_sqlite_file(url: URL) -> str | None:
    """The path of an SQLite database file that does not exist (yet)."""
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    return None if Path(database).is_file() else database


async def require_schema(settings: Settings) -> None:
    """Fail with what to run unless the database exists with its schema at head. An
    SQLite file that is not there is not created (connecting would create it)."""
    url = normalize_url(settings.resolved_database_url)
    missing = _missing_sqlite_file(url)
    if missing:
        raise CliError(f"No database at {missing}: {HOW_TO_MIGRATE}.")
    engine = create_engine(url, pgbouncer=settings.db_pgbouncer)
    try:
        current = await migrate.current_revision(engine)
    finally:
        await engine.dispose()
    if current is None:
        raise CliError(
            f"The database at {database_label(settings)} has no schema: {HOW_TO_MIGRATE}."
        )
    if current != migrate.head_revision():
        raise CliError(
            f"The database schema is not current ({current}, the code needs "
            f"{migrate.head_revision()}): run `fieldwatch db upgrade` first."
        )


@asynccontextmanager
async def cli_uow(*, start_bus: bool = False) -> AsyncIterator[UnitOfWork]:
    """A unit of work on the configured database, once it is known to be migrated."""
    from fieldwatch.app import standalone_uow

    settings = load_settings()
    await require_schema(settings)
    async with standalone_uow(settings, start_bus=start_bus) as uow:
        yield uow


async def workspace_principal(uow: UnitOfWork, workspace: str) -> Principal:
    """Whom the command line acts as: an administrator of the named workspace."""
    from fieldwatch.auth.accounts import AccountService
    from fieldwatch.auth.principal import Principal

    ws = await AccountService(uow.session).workspace_named(workspace)
    if ws is None:
        raise CliError(f"No workspace {workspace!r}.")
    return Principal(
        kind="user", workspace_id=ws.id, workspace_name=ws.name, role=Role.admin, label="cli"
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all schema migrations (creates an SQLite database that is not there yet)."""
    settings = load_settings()
    changed = asyncio.run(upgrade_schema(settings))
    where = database_label(settings)
    typer.echo(
        f"Schema upgraded to {changed} on {where}" if changed else f"Schema current on {where}"
    )
