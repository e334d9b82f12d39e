"""Device groups over HTTP: ``/api/v1/device-groups``. Viewers read; operators write."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from fieldwatch.auth.dependencies import Operator, Viewer
from fieldwatch.core.paging import Limit, Offset, Page
from fieldwatch.db.dependencies import UowDep, WriteUow
from fieldwatch.devices.group_schemas import (
    DeviceGroupCreate,
    DeviceGroupRead,
    DeviceGroupUpdate,
    MembersAdd,
    MembersAdded,
)
from fieldwatch.devices.groups import GroupService
from fieldwatch.devices.listing import DeviceFilter
from fieldwatch.devices.router import Sort
from fieldwatch.devices.schemas import DeviceListItem
from fieldwatch.monitoring.dependencies import MonitoringDep

router = APIRouter(prefix="/api/v1/device-groups", tags=["device groups"])


@router.get("", response_model=Page[DeviceGroupRead])
async def list_groups(principal: Viewer, uow: UowDep, limit: Limit = 50, offset: Offset = 0):
    """The workspace's groups by name; a static group with its member count."""
    items, total = await GroupService(uow).page(principal, limit=limit, offset=offset)
    return Page[DeviceGroupRead](items=items, total=total, limit=limit, offset=offset)


@router.post("", response_model=DeviceGroupRead, status_code=status.HTTP_201_CREATED)
async def create_group(body: DeviceGroupCreate, principal: Operator, uow: WriteUow):
    """A static group (add members after) or a dynamic group (its ``filter``)."""
    return await GroupService(uow).create(principal, body)


@router.get("/{group_id}", response_model=DeviceGroupRead)
async def get_group(group_id: uuid.UUID, principal: Viewer, uow: UowDep):
    return await GroupService(uow).read(principal, group_id)


@router.patch("/{group_id}", response_model=DeviceGroupRead)
async def update_group(
    group_id: uuid.UUID, body: DeviceGroupUpdate, principal: Operator, uow: WriteUow
):
    return await GroupService(uow).update(principal, group_id, body)


@router.delete("/{group_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_group(group_id: uuid.UUID, principal: Operator, uow: WriteUow) -> Response:
    """Deletes the group (never its devices)."""
    await GroupService(uow).delete(principal, group_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{group_id}/members", response_model=MembersAdded)
async def add_members(group_id: uuid.UUID, body: MembersAdd, principal: Operator, uow: WriteUow):
    """Adds devices to a static group; the outcome of each id (``added``,
    ``already_member``, ``not_found`` for an unknown id or another workspace's device)."""
    return await GroupService(uow).add_members(principal, group_id, body.device_ids)


@router.delete("/{group_id}/members/{device_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_member(
    group_id: uuid.UUID, device_id: uuid.UUID, principal: Operator, uow: WriteUow
) -> Response:
    await GroupService(uow).remove_member(principal, group_id, device_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{group_id}/devices", response_model=Page[DeviceListItem])
async def group_devices(
    group_id: uuid.UUID,
    principal: Viewer,
    service: MonitoringDep,
    limit: Limit = 50,
    offset: Offset = 0,
    sort: Sort = "name",
):
    """The group's devices now (a static group's members, a dynamic group's matches),
    like ``GET /devices``."""
    flt = DeviceFilter(group=await GroupService(service.uow).scope(principal, group_id))
    return await service.device_page(principal, flt, limit=limit, offset=offset, sort=sort)
