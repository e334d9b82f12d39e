"""The console's device page: the control section (loaded into the page by htmx).

Commands: send one (a name, JSON parameters, a time to live), the device's commands
newest first and paged, cancel one that has not finished. Configuration: the desired
document against the one the device reports applied, key by key, and the desired one
edited as JSON. Routes call the API's services (``CommandService``, ``ConfigService``)
and answer with fragments; ``static/console/control.js`` fetches them again when the
page's live connection passes on a ``command`` or ``config`` event of the device.

A form with a wrong field is answered 422: a summary that the console shows in the
form's error region, and the form's fields again, each with its message next to it
(an out-of-band swap).
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fieldwatch.auth.roles import Role
from fieldwatch.commands.config import ConfigService
from fieldwatch.commands.dependencies import CommandServiceDep
from fieldwatch.commands.errors import CommandNotFound
from fieldwatch.commands.schemas import CommandRead
from fieldwatch.commands.service import CommandService
from fieldwatch.console.access import ConsoleUser, CsrfChecked
from fieldwatch.console.device_control_forms import (
    ConfigForm,
    SendForm,
    command_row,
    config_rows,
)
from fieldwatch.console.pages import Operator, Viewer, render
from fieldwatch.core.paging import Offset
from fieldwatch.db.dependencies import UowDep, WriteUow
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.lifecycle import DeviceStatus
from fieldwatch.devices.service import DeviceService

router = APIRouter(include_in_schema=False)

BASE = "/console/devices/{device_id}/control"
PAGE_SIZE = 20
#: Events the answers of the forms raise in the page (``HX-Trigger``): the section
#: fetches its list or its configuration again.
COMMANDS_CHANGED = '{"control:commands": true}'
CONFIG_CHANGED = '{"control:config": true}'


def _base(device_id: uuid.UUID) -> str:
    return BASE.format(device_id=device_id)


def _who(user: ConsoleUser, device_id: uuid.UUID) -> dict[str, Any]:
    return {
        "base": _base(device_id),
        "device_id": device_id,
        "can_operate": user.principal.role.allows(Role.operator),
        "csrf": user.session.csrf,
    }


async def _commands(
    service: CommandService, user: ConsoleUser, device_id: uuid.UUID, offset: int
) -> dict[str, Any]:
    items, total = await service.page(
        user.principal, device_id=device_id, statuses=[], limit=PAGE_SIZE, offset=offset
    )
    rows = [command_row(CommandRead.model_validate(c)) for c in items]
    return {"rows": rows, "total": total, "offset": offset, "limit": PAGE_SIZE}


async def _config(uow: UnitOfWork, user: ConsoleUser, device_id: uuid.UUID) -> dict[str, Any]:
    config = await ConfigService(uow).read(user.principal, device_id)
    return {"config": config, "config_rows": config_rows(config)}


@router.get(BASE)
async def control_section(
    device_id: uuid.UUID,
    request: Request,
    user: Viewer,
    uow: UowDep,
    service: CommandServiceDep,
    offset: Offset = 0,
) -> Response:
    """The whole section: the command form and list, the configuration and its form."""
    device = await DeviceService(uow).get(user.principal, device_id)
    context = _who(user, device_id)
    context.update(await _commands(service, user, device_id, offset))
    context.update(await _config(uow, user, device_id))
    context.update(
        retired=device.status == DeviceStatus.retired,
        send=SendForm(),
        config_form=ConfigForm.of(context["config"]),
    )
    return render(request, "_device_control.html", context)


@router.get(BASE + "/commands")
async def command_list(
    device_id: uuid.UUID,
    request: Request,
    user: Viewer,
    service: CommandServiceDep,
    offset: Offset = 0,
) -> Response:
    """The commands table at ``offset`` (newest first)."""
    context = _who(user, device_id)
    context.update(await _commands(service, user, device_id, offset))
    return render(request, "_device_control_commands.html", context)


@router.post(BASE + "/commands", dependencies=[CsrfChecked])
async def send_command(
    device_id: uuid.UUID,
    request: Request,
    user: Operator,
    uow: WriteUow,
    service: CommandServiceDep,
) -> Response:
    """Queue a command, as ``POST /api/v1/devices/{id}/commands`` does: delivered at once
    to a connected device (once committed), else when it connects."""
    sent = SendForm.read(await request.form())
    context = _who(user, device_id)
    if sent.body is None:
        await DeviceService(uow).get(user.principal, device_id)  # 404 before 422
        context.update(send=sent, oob=True)
        return render(request, "_device_control_send_invalid.html", context, 422)
    command, created = await service.create(user.principal, device_id, sent.body)
    context.update(send=sent.again(), sent=CommandRead.model_validate(command), created=created)
    response = render(request, "_device_control_send.html", context)
    response.headers["HX-Trigger"] = COMMANDS_CHANGED
    return response


async def _device_command(
    service: CommandService, user: ConsoleUser, device_id: uuid.UUID, command_id: uuid.UUID
) -> None:
    """404 unless the command is one of this device's (in the user's workspace)."""
    command = await service.get(user.principal, command_id)
    if command.device_id != device_id:
        raise CommandNotFound(f"No command {command_id} for this device.")


def _row(request: Request, user: ConsoleUser, device_id: uuid.UUID, command: Any) -> Response:
    context = _who(user, device_id)
    context.update(row=command_row(CommandRead.model_validate(command)))
    return render(request, "_device_control_row.html", context)


@router.get(BASE + "/commands/{command_id}")
async def command_row_fragment(
    device_id: uuid.UUID,
    command_id: uuid.UUID,
    request: Request,
    user: Viewer,
    service: CommandServiceDep,
) -> Response:
    """One row of the table, as it is now."""
    await _device_command(service, user, device_id, command_id)
    return _row(request, user, device_id, await service.get(user.principal, command_id))


@router.post(BASE + "/commands/{command_id}/cancel", dependencies=[CsrfChecked])
async def cancel_command(
    device_id: uuid.UUID,
    command_id: uuid.UUID,
    request: Request,
    user: Operator,
    uow: WriteUow,
    service: CommandServiceDep,
) -> Response:
    """Cancel a command that has not finished (409, shown in its row, once it has)."""
    await _device_command(service, user, device_id, command_id)
    cancelled = await service.cancel(user.principal, command_id)
    return _row(request, user, device_id, cancelled)


@router.get(BASE + "/config")
async def config_view(
    device_id: uuid.UUID, request: Request, user: Viewer, uow: UowDep
) -> Response:
    """Desired against reported configuration, as it is now."""
    context = _who(user, device_id)
    context.update(await _config(uow, user, device_id))
    return render(request, "_device_control_config.html", context)


@router.get(BASE + "/config/form")
async def config_form(
    device_id: uuid.UUID, request: Request, user: Operator, uow: UowDep
) -> Response:
    """The desired-configuration form filled with the stored document."""
    context = _who(user, device_id)
    config = await ConfigService(uow).read(user.principal, device_id)
    context.update(config=config, config_form=ConfigForm.of(config))
    return render(request, "_device_control_config_form.html", context)


@router.post(BASE + "/config", dependencies=[CsrfChecked])
async def put_config(
    device_id: uuid.UUID, request: Request, user: Operator, uow: WriteUow
) -> Response:
    """Set the whole desired configuration, as ``PUT /api/v1/devices/{id}/config`` does:
    its version goes up unless it is unchanged; pushed to a connected device."""
    typed = ConfigForm.read(await request.form())
    context = _who(user, device_id)
    service = ConfigService(uow)
    before = await service.read(user.principal, device_id)  # 404 before 422
    if typed.document is None:
        context.update(config=before, config_form=typed, oob=True)
        return render(request, "_device_control_config_invalid.html", context, 422)
    await service.put(user.principal, device_id, typed.document)
    config = await service.read(user.principal, device_id)
    context.update(
        config=config,
        config_form=ConfigForm.of(config),
        saved=config.desired_version != before.desired_version,
    )
    response = render(request, "_device_control_config_form.html", context)
    response.headers["HX-Trigger"] = CONFIG_CHANGED
    return response
