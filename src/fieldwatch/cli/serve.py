"""``fieldwatch serve``: the whole platform in one process (or N workers), or one part of
it (``--role``, ``core.process_roles``)."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Annotated

import typer

from fieldwatch.auth.roles import Role
from fieldwatch.cli.database import require_schema, upgrade_schema
from fieldwatch.cli.errors import CliError, load_settings
from fieldwatch.core.process_roles import ProcessRole, duties_of, missing_shared, unshared_secrets
from fieldwatch.core.settings import Settings


def ensure_port_free(host: str, port: int, what: str = "the API") -> None:
    """Fail before anything is printed or started when ``host:port`` cannot be bound
    (the server binds it the same way, address reuse on)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise CliError(
                f"Cannot listen on {host}:{port} for {what}: {exc.strerror or exc}.\n"
                "Another program may use that port: stop it, or choose another one "
                "(--port or FIELDWATCH_PORT)."
            ) from exc


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
    typer.echo("Sign in to the console with it; change it with POST /api/v1/auth/password.\n")


def check_role(settings: Settings) -> None:
    """Refuse a role without the shared components it needs (exit code 2), before
    anything is started; warn about keys each process would generate on its own."""
    missing = missing_shared(settings)
    if missing:
        lines = "\n".join(f"  {item}" for item in missing)
        raise CliError(
            f"Role {settings.role} (--role, FIELDWATCH_ROLE) runs one part of a scaled-out "
            f"installation and needs the components its processes share. Not set:\n{lines}\n"
            "Set them, or run the whole platform in one process (--role all).",
            exit_code=2,
        )
    for name in unshared_secrets(settings):
        typer.echo(
            f"Warning: {name} is not set: every process of the installation must then "
            "share FIELDWATCH_DATA_DIR (the key generated there), or set the same value "
            "in each.",
            err=True,
        )


def _banner(settings: Settings, host: str, port: int) -> str:
    base = f"http://{host}:{port}"
    duties = duties_of(settings.role)
    if duties.api:
        first = f"Fieldwatch on {base}  (console: {base}/console/, API docs: {base}/docs)"
        return first if duties.devices else first.replace("Fieldwatch", "Fieldwatch API", 1)
    if duties.devices:
        where = [f"ws://{host}:{port}/ws/device"]
        if settings.device_ws_port:
            where.append(f"ws://{settings.device_ws_host}:{settings.device_ws_port}/ws/device")
        return f"Fieldwatch gateway on {base}  (devices: {', '.join(where)})"
    return f"Fieldwatch worker  (health: {base}/health/ready)"


def _run_workers(settings: Settings, host: str, port: int, workers: int) -> None:
    import uvicorn

    from fieldwatch.app import server_options

    missing = [name for name, value in (
        ("FIELDWATCH_REDIS_URL", settings.redis_url),
        ("FIELDWATCH_RABBITMQ_URL", settings.rabbitmq_url),
        ("FIELDWATCH_MQTT_URL", settings.mqtt_url or not settings.mqtt_embedded),
    ) if not value]  # fmt: skip
    if missing and settings.role == ProcessRole.all:  # a part was checked (check_role)
        typer.echo(
            f"Warning: {workers} workers without {', '.join(missing)}: each worker then "
            "has its own devices' presence, sessions and events.",
            err=True,
        )
    os.environ["FIELDWATCH_ROLE"] = settings.role  # each worker reads its settings anew
    os.environ["FIELDWATCH_HOST"], os.environ["FIELDWATCH_PORT"] = host, str(port)
    uvicorn.run(
        "fieldwatch.app:create_worker_app", factory=True, workers=workers,
        host=host, port=port, **server_options(settings),
    )  # fmt: skip


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
    role: Annotated[
        ProcessRole | None,
        typer.Option(
            case_sensitive=False,
            help="What this process runs: all (default, FIELDWATCH_ROLE), or one part of a "
            "scaled-out installation: api (HTTP API, console, Socket.IO), gateway (device "
            "WebSockets, MQTT) or worker (periodic and background jobs). A part needs "
            "PostgreSQL, RabbitMQ and Redis (a gateway with MQTT: FIELDWATCH_MQTT_URL).",
        ),
    ] = None,
) -> None:
    """Run the whole platform in one process, or one part of it (--role)."""
    import uvicorn

    from fieldwatch.app import create_asgi_app, server_options
    from fieldwatch.core.observability import configure_logging

    settings = load_settings()
    if role is not None:
        settings = settings.model_copy(update={"role": role.value})
    check_role(settings)
    host = host or settings.host
    port = port or settings.port
    # What the process listens on is what the settings say: the public address
    # (FIELDWATCH_PUBLIC_URL's default: OAuth callbacks, signed download links) follows it.
    settings = settings.model_copy(update={"host": host, "port": port})
    ensure_port_free(host, port)
    if settings.device_ws_port and duties_of(settings.role).devices:
        ensure_port_free(settings.device_ws_host, settings.device_ws_port, "device WebSockets")
    configure_logging(settings.log_level, settings.log_format)
    if init:
        asyncio.run(upgrade_schema(settings))
        asyncio.run(_bootstrap_admin(settings))
    else:
        asyncio.run(require_schema(settings))
    typer.echo(_banner(settings, host, port))
    if workers > 1:
        _run_workers(settings, host, port, workers)
    else:
        uvicorn.run(create_asgi_app(settings), host=host, port=port, **server_options(settings))
