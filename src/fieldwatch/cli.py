"""The ``fieldwatch`` command line."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from fieldwatch.agent.cli import simulate_command
from fieldwatch.auth.roles import Role
from fieldwatch.core.settings import Settings, get_settings

app = typer.Typer(help="Fieldwatch: IoT fleet inventory and monitoring.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
users_app = typer.Typer(help="Users and workspaces.", no_args_is_help=True)
devices_app = typer.Typer(help="The device registry.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(devices_app, name="devices")


def _fail(message: str) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


async def _upgrade(settings: Settings) -> str | None:
    from fieldwatch.db import migrate
    from fieldwatch.db.engine import create_engine

    engine = create_engine(settings.resolved_database_url)
    try:
        before = await migrate.current_revision(engine)
        await migrate.upgrade(engine)
        after = await migrate.current_revision(engine)
        return None if before == after else after
    finally:
        await engine.dispose()


def _db_label(settings: Settings) -> str:
    from fieldwatch.db.engine import normalize_url

    return normalize_url(settings.resolved_database_url).render_as_string(hide_password=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all schema migrations."""
    settings = get_settings()
    changed = asyncio.run(_upgrade(settings))
    where = _db_label(settings)
    typer.echo(
        f"Schema upgraded to {changed} on {where}" if changed else f"Schema current on {where}"
    )


async def _bootstrap_admin(settings: Settings) -> None:
    from fieldwatch.app import standalone_uow
    from fieldwatch.auth.accounts import AccountService

    async with standalone_uow(settings) as uow:
        accounts = AccountService(uow.session)
        if await accounts.has_any_user():
            return
        created = await accounts.create_user(
            settings.admin_email, role=Role.admin, workspace_name=settings.default_workspace
        )
        await uow.commit()
    typer.echo("")
    typer.secho("First start: created the admin account (shown only this once).", bold=True)
    typer.echo(f"  email:     {created.user.email}")
    typer.echo(f"  password:  {created.generated_password}")
    typer.echo(f"  workspace: {created.workspace.name}")
    typer.echo("Change the password with POST /api/v1/auth/password.\n")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port")] = None,
    init: Annotated[
        bool, typer.Option(help="Apply migrations and create the first admin if there is none")
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Worker processes. More than one needs FIELDWATCH_REDIS_URL (shared presence) "
            "and FIELDWATCH_RABBITMQ_URL (events and commands reach devices connected to "
            "other workers), and FIELDWATCH_MQTT_URL for MQTT (the embedded broker runs in "
            "one worker only).",
        ),
    ] = 1,
) -> None:
    """Run the whole platform in one process."""
    import uvicorn

    from fieldwatch.app import create_asgi_app, server_options
    from fieldwatch.core.observability import configure_logging
    from fieldwatch.db import migrate
    from fieldwatch.db.engine import create_engine

    settings = get_settings()
    try:
        settings.check_production_safety()
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    configure_logging(settings.log_level, settings.log_format)
    if init:
        asyncio.run(_upgrade(settings))
        asyncio.run(_bootstrap_admin(settings))
    else:

        async def _check() -> bool:
            engine = create_engine(settings.resolved_database_url)
            try:
                return await migrate.is_up_to_date(engine)
            finally:
                await engine.dispose()

        if not asyncio.run(_check()):
            raise _fail("The database schema is not current: run `fieldwatch db upgrade` first.")
    host = host or settings.host
    port = port or settings.port
    typer.echo(f"Fieldwatch on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    if workers > 1:
        missing = [name for name, value in (
            ("FIELDWATCH_REDIS_URL", settings.redis_url),
            ("FIELDWATCH_RABBITMQ_URL", settings.rabbitmq_url),
            ("FIELDWATCH_MQTT_URL", settings.mqtt_url or not settings.mqtt_embedded),
        ) if not value]  # fmt: skip
        if missing:
            typer.echo(
                f"Warning: {workers} workers without {', '.join(missing)}: each worker then "
                "has its own devices' presence, sessions and events.",
                err=True,
            )
        uvicorn.run(
            "fieldwatch.app:create_worker_app", factory=True, workers=workers,
            host=host, port=port, **server_options(settings),
        )  # fmt: skip
    else:
        uvicorn.run(create_asgi_app(settings), host=host, port=port, **server_options(settings))


async def _create_user(email: str, role: Role, workspace: str, password: str | None) -> None:
    from fieldwatch.app import standalone_uow
    from fieldwatch.auth.accounts import AccountService
    from fieldwatch.auth.schemas import normalize_email

    async with standalone_uow() as uow:
        created = await AccountService(uow.session).create_user(
            normalize_email(email), role=role, workspace_name=workspace, password=password
        )
        await uow.commit()
    if created.created_workspace:
        typer.echo(f"Created workspace {created.workspace.name!r}.")
    if created.created_user:
        typer.echo(
            f"Created user {created.user.email} as {role.value} in {created.workspace.name!r}."
        )
    else:
        typer.echo(
            f"User {created.user.email} exists; now {role.value} in {created.workspace.name!r}"
            + ("; password changed." if password else "; password unchanged.")
        )
    if created.generated_password:
        typer.echo(f"Password (shown only now): {created.generated_password}")


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Argument(help="Login email")],
    role: Annotated[Role, typer.Option(help="Role in the workspace")] = Role.viewer,
    workspace: Annotated[str, typer.Option(help="Workspace name (created if missing)")] = "default",
    password: Annotated[
        str | None, typer.Option(help="Password; without it one is generated and printed once")
    ] = None,
) -> None:
    """Create a user (or change an existing user's role) in a workspace."""
    from fieldwatch.auth.passwords import MIN_PASSWORD_LENGTH

    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise _fail(f"A password needs at least {MIN_PASSWORD_LENGTH} characters.")
    try:
        asyncio.run(_create_user(email, role, workspace, password))
    except ValueError as exc:
        raise _fail(str(exc)) from exc


async def _import(path: Path, text: str, workspace: str, dry_run: bool) -> int:
    from fieldwatch.app import standalone_uow
    from fieldwatch.auth.principal import Principal
    from fieldwatch.auth.repository import WorkspaceRepository
    from fieldwatch.core.errors import AppError
    from fieldwatch.inventory.importer import DeviceImporter, parse_csv, parse_json

    try:
        rows = parse_json(json.loads(text)) if path.suffix.lower() == ".json" else parse_csv(text)
    except (AppError, json.JSONDecodeError) as exc:
        raise _fail(f"{path}: {getattr(exc, 'detail', exc)}") from exc
    # The import publishes device events: the bus is started first.
    async with standalone_uow(start_bus=True) as uow:
        ws = await WorkspaceRepository(uow.session).by_name(workspace)
        if ws is None:
            raise _fail(f"No workspace {workspace!r}.")
        principal = Principal(
            kind="user", workspace_id=ws.id, workspace_name=ws.name,
            role=Role.admin, label="cli",
        )  # fmt: skip

        def progress(done: int, total: int) -> None:
            typer.echo(f"  {done}/{total} rows", err=True)

        typer.echo(f"Importing {len(rows)} rows from {path} into {ws.name!r}…", err=True)
        result = await DeviceImporter(uow).run(principal, rows, dry_run=dry_run, progress=progress)
        if dry_run:
            await uow.rollback()
        else:
            await uow.commit()
    for row in result.rows:
        if row.status == "error":
            problems = "; ".join(f"{e['field']}: {e['message']}" for e in row.errors)
            where = f"line {row.line}" if row.line else f"row {row.row}"
            typer.echo(f"  {where}: {problems}", err=True)
    saved = "dry run, nothing saved" if dry_run else "good rows saved"
    typer.echo(
        f"{result.created} created, {result.updated} updated, {result.unchanged} unchanged, "
        f"{result.failed} failed ({result.total} rows; {saved})."
    )
    return 1 if result.failed else 0


@devices_app.command("import")
def devices_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A .csv or .json file")],
    workspace: Annotated[str, typer.Option(help="Target workspace")] = "default",
    dry_run: Annotated[bool, typer.Option(help="Check every row, save nothing")] = False,
) -> None:
    """Import devices from CSV (or a JSON array). Exit code 1 if any row failed."""
    text = file.read_text(encoding="utf-8-sig")
    code = asyncio.run(_import(file, text, workspace, dry_run))
    raise typer.Exit(code)


app.command("simulate")(simulate_command)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
