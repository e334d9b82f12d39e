"""``fieldwatch tokens …``: devices' agent tokens (their credentials)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from fieldwatch.cli.database import cli_uow, workspace_principal
from fieldwatch.cli.errors import CliError, load_settings
from fieldwatch.cli.output import print_json, table

if TYPE_CHECKING:
    from fieldwatch.devices.schemas import AgentTokenCreated

tokens_app = typer.Typer(help="Devices' agent tokens.", no_args_is_help=True)

DeviceArgument = Annotated[str, typer.Argument(help="The device's id or serial number")]
WorkspaceOption = Annotated[str, typer.Option(help="The device's workspace")]


async def _create(
    workspace: str, device: str, name: str | None, expires: datetime | None, mqtt: bool
) -> AgentTokenCreated:
    from fieldwatch.devices.schemas import AgentTokenCreate
    from fieldwatch.devices.service import DeviceService

    async with cli_uow() as uow:
        principal = await workspace_principal(uow, workspace)
        service = DeviceService(uow)
        found = await service.find(principal, device)
        created = await service.issue_token(
            principal, found.id, AgentTokenCreate(name=name, expires_at=expires, mqtt=mqtt)
        )
        await uow.commit()
    return created


@tokens_app.command("create")
def tokens_create(
    device: DeviceArgument,
    workspace: WorkspaceOption = "default",
    name: Annotated[str | None, typer.Option(help="A label for the token")] = None,
    expires: Annotated[
        datetime | None,
        typer.Option(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"], help="Expiry (UTC if no zone)"),
    ] = None,
    mqtt: Annotated[
        bool, typer.Option("--mqtt", help="For MQTT (see FIELDWATCH_MQTT_DEVICE_LOGINS)")
    ] = False,
) -> None:
    """A new agent token for a device, printed once on stdout (nothing else is)."""
    if expires is not None and expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    created = asyncio.run(_create(workspace, device, name, expires, mqtt))
    typer.echo(
        f"Token {created.id} for device {created.device_id} (shown only now; "
        f"revoke it with `fieldwatch tokens revoke {created.device_id} {created.id}`):",
        err=True,
    )
    typer.echo(created.token)
    settings = load_settings()
    for_broker = mqtt or settings.mqtt_device_logins == "all"
    if settings.mqtt_url and settings.mqtt_dynsec and for_broker:
        typer.echo(
            "Note: the external MQTT broker learns of tokens made through the API only; "
            "this one works over HTTP and WebSocket.",
            err=True,
        )


async def _revoke(workspace: str, device: str, token_id: uuid.UUID) -> None:
    from fieldwatch.devices.service import DeviceService

    # Running servers learn of the revocation through the event bus.
    async with cli_uow(start_bus=True) as uow:
        principal = await workspace_principal(uow, workspace)
        service = DeviceService(uow)
        found = await service.find(principal, device)
        await service.revoke_token(principal, found.id, token_id)
        await uow.commit()


@tokens_app.command("revoke")
def tokens_revoke(
    device: DeviceArgument,
    token_id: Annotated[str, typer.Argument(help="The token's id (`tokens list DEVICE`)")],
    workspace: WorkspaceOption = "default",
) -> None:
    """Revoke a device's agent token: the device can no longer use it."""
    try:
        parsed = uuid.UUID(token_id)
    except ValueError as exc:
        raise CliError(f"{token_id!r} is not a token id: see `fieldwatch tokens list`.") from exc
    asyncio.run(_revoke(workspace, device, parsed))
    typer.echo(f"Token {parsed} revoked.")


async def _list(workspace: str, device: str) -> list[dict[str, object]]:
    from fieldwatch.devices.schemas import AgentTokenRead
    from fieldwatch.devices.service import DeviceService

    async with cli_uow() as uow:
        principal = await workspace_principal(uow, workspace)
        service = DeviceService(uow)
        found = await service.find(principal, device)
        tokens: list[object] = []
        total = 1
        while len(tokens) < total:  # every page
            page, total = await service.list_tokens(
                principal, found.id, limit=500, offset=len(tokens)
            )
            if not page:
                break
            tokens += page
        return [AgentTokenRead.model_validate(t).model_dump(mode="json") for t in tokens]


@tokens_app.command("list")
def tokens_list(
    device: DeviceArgument,
    workspace: WorkspaceOption = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """A device's agent tokens (never the secrets)."""
    tokens = asyncio.run(_list(workspace, device))
    if as_json:
        print_json(tokens)
        return
    keys = ["id", "name", "prefix", "mqtt", "created_at", "last_used_at", "expires_at",
            "revoked_at"]  # fmt: skip
    headers = ["ID", "NAME", "PREFIX", "MQTT", "CREATED", "LAST USED", "EXPIRES", "REVOKED"]
    typer.echo(table(headers, [[t.get(k) for k in keys] for t in tokens]))
