"""``fieldwatch serve``: the whole platform in one process (or N workers)."""

from __future__ import annotations

import asyncio
import socket
from typing import Annotated

import typer

from fieldwatch.auth.roles import Role
from fieldwatch.cli.database import require_schema, upgrade_schema
from fieldwatch.cli.errors import CliError, load_settings
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


def _run_workers(settings: Settings, host: str, port: int, workers: int) -> None:
    import uvicorn

    from fieldwatch.app import server_options

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

    settings = load_settings()
    host = host or settings.host
    port = port or settings.port
    ensure_port_free(host, port)
    if settings.device_ws_port:
        ensure_port_free(settings.device_ws_host, settings.device_ws_port, "device WebSockets")
    configure_logging(settings.log_level, settings.log_format)
    if init:
        asyncio.run(upgrade_schema(settings))
        asyncio.run(_bootstrap_admin(settings))
    else:
        asyncio.run(require_schema(settings))
    typer.echo(
        f"Fieldwatch on http://{host}:{port}  (console: http://{host}:{port}/console/, "
        f"API docs: http://{host}:{port}/docs)"
    )
    if workers > 1:
        _run_workers(settings, host, port, workers)
    else:
        uvicorn.run(create_asgi_app(settings), host=host, port=port, **server_options(settings))
