"""HTTP: send commands to devices, follow them, cancel them; desired configuration."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response, status

from fieldwatch.auth.dependencies import Operator, Viewer
from fieldwatch.commands.config import ConfigService
from fieldwatch.commands.dependencies import CommandServiceDep
from fieldwatch.commands.schemas import (
    CommandCreate,
    CommandDetail,
    CommandRead,
    CommandStatus,
    CommandTransitionRead,
    ConfigRead,
)
from fieldwatch.core.paging import Limit, Offset, Page
from fieldwatch.db.dependencies import UowDep, WriteUow

router = APIRouter(prefix="/api/v1", tags=["commands"])


async def _create(
    device_id: uuid.UUID,
    body: CommandCreate,
    principal: Operator,
    service: CommandServiceDep,
    response: Response,
) -> CommandRead:
    command, created = await service.create(principal, device_id, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return CommandRead.model_validate(command)


@router.post(
    "/devices/{device_id}/commands",
    response_model=CommandRead,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "Same idempotency key: the existing command"}},
)
async def create_command(
    device_id: uuid.UUID,
    body: CommandCreate,
    principal: Operator,
    uow: WriteUow,
    service: CommandServiceDep,
    response: Response,
):
    """Queue a command. It is delivered at once if the device is connected, otherwise
    when it next connects; 409 for a retired device. A repeated ``idempotency_key``
    answers 200 with the command it created the first time."""
    # The commit (after this returns) starts the delivery, to a connected device at once.
    return await _create(device_id, body, principal, service, response)


@router.post(
    "/devices/{device_id}/command",
    response_model=CommandRead,
    status_code=status.HTTP_201_CREATED,
    include_in_schema=False,
)
async def create_command_seed_path(
    device_id: uuid.UUID,
    body: CommandCreate,
    principal: Operator,
    uow: WriteUow,
    service: CommandServiceDep,
    response: Response,
):
    """Seed 000's path for the same thing."""
    return await _create(device_id, body, principal, service, response)


@router.get("/devices/{device_id}/commands", response_model=Page[CommandRead])
async def list_device_commands(
    device_id: uuid.UUID,
    principal: Viewer,
    service: CommandServiceDep,
    status_: Annotated[list[CommandStatus] | None, Query(alias="status")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
):
    """The device's commands, newest first; ``status`` may be repeated."""
    items, total = await service.page(
        principal, device_id=device_id, statuses=status_ or [], limit=limit, offset=offset
    )
    return Page[CommandRead](
        items=[CommandRead.model_validate(c) for c in items], total=total, limit=limit,
        offset=offset,
    )  # fmt: skip


@router.get("/commands/{command_id}", response_model=CommandDetail)
async def get_command(command_id: uuid.UUID, principal: Viewer, service: CommandServiceDep):
    """One command with every state change it went through."""
    command = await service.get(principal, command_id)
    transitions = await service.transitions(command)
    return CommandDetail(
        **CommandRead.model_validate(command).model_dump(),
        transitions=[CommandTransitionRead.model_validate(t) for t in transitions],
    )


@router.post("/commands/{command_id}/cancel", response_model=CommandRead)
async def cancel_command(
    command_id: uuid.UUID, principal: Operator, uow: WriteUow, service: CommandServiceDep
):
    """Stop a command that has not finished: it is not sent or resent any more, and a
    result the device reports later is not taken. 409 once it has finished."""
    return CommandRead.model_validate(await service.cancel(principal, command_id))


@router.put("/devices/{device_id}/config", response_model=ConfigRead)
async def put_config(
    device_id: uuid.UUID,
    principal: Operator,
    uow: WriteUow,
    document: Annotated[dict[str, Any], Body(description="The whole desired configuration")],
):
    """Set the desired configuration (the whole document). Its version goes up unless it
    is unchanged; it is pushed to the device, which reports the version it applied."""
    service = ConfigService(uow)
    await service.put(principal, device_id, document)
    # Pushed to a connected device once committed (after this returns).
    return await service.read(principal, device_id)


@router.get("/devices/{device_id}/config", response_model=ConfigRead)
async def get_config(device_id: uuid.UUID, principal: Viewer, uow: UowDep):
    """Desired and reported configuration, their versions and the difference."""
    return await ConfigService(uow).read(principal, device_id)
