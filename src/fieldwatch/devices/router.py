from __future__ import annotations

import uuid
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Response, status
from fastapi.responses import StreamingResponse

from fieldwatch.auth.dependencies import Operator, Viewer
from fieldwatch.auth.roles import Role
from fieldwatch.core.clock import utcnow
from fieldwatch.core.components import SettingsDep
from fieldwatch.core.paging import Limit, Offset, Page, page_of
from fieldwatch.core.schemas import inline_schema, parsed
from fieldwatch.db.dependencies import SessionmakerDep, UowDep, WriteUow
from fieldwatch.devices.csvio import export_csv
from fieldwatch.devices.dependencies import CredentialIssuedDep, DeviceAuth
from fieldwatch.devices.groups import GroupService
from fieldwatch.devices.lifecycle import Action, DeviceStatus
from fieldwatch.devices.repository import DeviceFilter
from fieldwatch.devices.schemas import (
    AgentTokenCreate,
    AgentTokenCreated,
    AgentTokenRead,
    Connectivity,
    DeviceCreate,
    DeviceListItem,
    DeviceRead,
    DeviceSelf,
    DeviceUpdate,
)
from fieldwatch.devices.service import DeviceService
from fieldwatch.devices.transitions import LifecycleService
from fieldwatch.integrations.dependencies import KeyRingDep
from fieldwatch.integrations.registration.schemas import (
    DeviceRegistration,
    RegistrationRead,
    is_registration,
)
from fieldwatch.integrations.registration.service import RegistrationService
from fieldwatch.monitoring.dependencies import MonitoringDep, PresenceDep
from fieldwatch.telemetry.dependencies import HubDep

router = APIRouter(prefix="/api/v1", tags=["devices"])

Sort = Literal[
    "name", "-name", "type", "-type", "status", "-status", "location", "-location",
    "serial_number", "-serial_number", "created_at", "-created_at", "updated_at", "-updated_at",
]  # fmt: skip


async def _filter(
    principal: Viewer,
    uow: UowDep,
    status_: Annotated[list[DeviceStatus] | None, Query(alias="status")] = None,
    type_: Annotated[str | None, Query(alias="type", max_length=100)] = None,
    location: Annotated[str | None, Query(max_length=200)] = None,
    q: Annotated[str | None, Query(max_length=100, description="Search name and serial")] = None,
    connectivity: Annotated[
        Connectivity | None,
        Query(description="Only online (or offline, including never seen) devices"),
    ] = None,
    tag: Annotated[
        list[str] | None, Query(description="Only devices with this tag (repeat: all of them)")
    ] = None,
    group: Annotated[uuid.UUID | None, Query(description="Only the devices of this group")] = None,
) -> DeviceFilter:
    tags = list(dict.fromkeys(t.strip() for t in tag or [] if t.strip()))
    return DeviceFilter(
        status=[s.value for s in status_ or []], type=type_, location=location, q=q or None,
        connectivity=connectivity, tags=tags,
        group=await GroupService(uow).scope(principal, group) if group else None,
    )  # fmt: skip


FilterDep = Annotated[DeviceFilter, Depends(_filter)]


@router.get("/devices", response_model=Page[DeviceListItem])
async def list_devices(
    principal: Viewer,
    service: MonitoringDep,
    flt: FilterDep,
    limit: Limit = 50,
    offset: Offset = 0,
    sort: Sort = "-created_at",
):
    """Devices of the caller's workspace, filtered and paginated; ``total`` counts all
    matches. Each has its ``connectivity`` and ``last_seen`` as
    ``GET /devices/{id}/status`` tells them; ``?connectivity=`` filters on the
    online/offline state the database records, written at each transition (with presence
    in Redis as well), so it agrees with the items but for a transition in flight."""
    return await service.device_page(principal, flt, limit=limit, offset=offset, sort=sort)


@router.get("/devices/in_stock", response_model=Page[DeviceListItem])
async def list_in_stock(
    principal: Viewer, service: MonitoringDep, flt: FilterDep, limit: Limit = 50, offset: Offset = 0
):
    flt.status = [DeviceStatus.in_stock.value]
    return await service.device_page(principal, flt, limit=limit, offset=offset, sort="name")


@router.get("/devices/deployed", response_model=Page[DeviceListItem])
async def list_deployed(
    principal: Viewer, service: MonitoringDep, flt: FilterDep, limit: Limit = 50, offset: Offset = 0
):
    flt.status = [DeviceStatus.deployed.value]
    return await service.device_page(principal, flt, limit=limit, offset=offset, sort="name")


@router.get(
    "/devices/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "All matching devices as CSV"}},
)
async def export_devices(principal: Viewer, sessionmaker: SessionmakerDep, flt: FilterDep):
    filename = f"devices-{principal.workspace_name}-{utcnow():%Y%m%d-%H%M%S}.csv"
    return StreamingResponse(
        export_csv(sessionmaker, principal, flt),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


#: Either shape (the route checks the body itself: see ``create_device``).
CREATE_BODY = {"anyOf": [inline_schema(DeviceCreate), inline_schema(DeviceRegistration)]}


@router.post(
    "/devices",
    response_model=DeviceRead | RegistrationRead,
    status_code=status.HTTP_201_CREATED,
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": CREATE_BODY}}}},
)
async def create_device(
    body: Annotated[dict[str, Any], Body()],
    principal: Operator,
    uow: WriteUow,
    settings: SettingsDep,
    ring: KeyRingDep,
):
    """Register a device. A body with ``integration_type``, ``credentials`` or
    ``sync_settings`` is the seed's registration shape (a device fed by a vendor cloud:
    answers ``device_id``, ``status: registered`` and its sync state); any other is the
    device registry's own shape (answers the device)."""
    if is_registration(body):
        registration = parsed(DeviceRegistration, body)
        return await RegistrationService(uow, settings, ring).register(principal, registration)
    return await DeviceService(uow).create(principal, parsed(DeviceCreate, body))


@router.get("/devices/{device_id}", response_model=DeviceRead)
async def get_device(device_id: uuid.UUID, principal: Viewer, uow: UowDep):
    return await DeviceService(uow).get(principal, device_id)


@router.patch("/devices/{device_id}", response_model=DeviceRead)
async def update_device(
    device_id: uuid.UUID, body: DeviceUpdate, principal: Operator, uow: WriteUow
):
    return await DeviceService(uow).update(principal, device_id, body)


@router.put("/devices/{device_id}", response_model=DeviceRead)
async def replace_device(
    device_id: uuid.UUID, body: DeviceUpdate, principal: Operator, uow: WriteUow
):
    """Same as PATCH (seed compatibility): only the fields sent change."""
    return await update_device(device_id, body, principal, uow)


@router.delete(
    "/devices/{device_id}",
    response_model=DeviceRead,
    responses={204: {"description": "Purged (with ?purge=true)"}},
)
async def delete_device(
    device_id: uuid.UUID,
    principal: Operator,
    uow: WriteUow,
    hub: HubDep,
    presence: PresenceDep,
    purge: Annotated[bool, Query(description="Delete for good (admins only)")] = False,
    notes: Annotated[str | None, Query(max_length=2000)] = None,
):
    """Retires the device (the audit trail keeps it). ``?purge=true`` deletes it for good."""
    if purge:
        principal.require(Role.admin)
        await DeviceService(uow).purge(principal, device_id)
        uow.after_commit(partial(hub.forget_device, device_id))
        uow.after_commit(partial(presence.forget, device_id))
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return await LifecycleService(uow).perform(principal, device_id, Action.retired, notes=notes)


@router.post(
    "/devices/{device_id}/tokens",
    response_model=AgentTokenCreated,
    status_code=status.HTTP_201_CREATED,
)
async def issue_token(
    device_id: uuid.UUID,
    principal: Operator,
    uow: WriteUow,
    credential_issued: CredentialIssuedDep,
    body: AgentTokenCreate | None = None,
):
    """A new agent token for the device. The token is in this response only."""
    created = await DeviceService(uow).issue_token(principal, device_id, body or AgentTokenCreate())
    uow.after_commit(
        partial(credential_issued, "device_token", created.device_id, created.id, created.token)
    )
    return created


@router.get("/devices/{device_id}/tokens", response_model=Page[AgentTokenRead])
async def list_tokens(
    device_id: uuid.UUID, principal: Viewer, uow: UowDep, limit: Limit = 50, offset: Offset = 0
):
    """The device's agent tokens (revoked ones too), oldest first."""
    items, total = await DeviceService(uow).list_tokens(
        principal, device_id, limit=limit, offset=offset
    )
    return page_of(AgentTokenRead, items, total, limit=limit, offset=offset)


@router.delete("/devices/{device_id}/tokens/{token_id}", response_model=AgentTokenRead)
async def revoke_token(
    device_id: uuid.UUID, token_id: uuid.UUID, principal: Operator, uow: WriteUow
):
    return await DeviceService(uow).revoke_token(principal, device_id, token_id)


@router.get("/device/me", response_model=DeviceSelf, tags=["device api"])
async def device_self(device: DeviceAuth):
    """Device-facing: who this agent token is. Firmware can call it to check its token."""
    d = device.device
    return DeviceSelf(
        device_id=d.id,
        workspace_id=d.workspace_id,
        name=d.name,
        type=d.type,
        status=DeviceStatus(d.status),
        token_id=device.token_id,
        mqtt=device.mqtt,
    )
