"""A rollout's target as a selectable of device ids of the workspace: listed devices, a
device group (a dynamic one's filter evaluated now) or an ad-hoc filter (the fields of a
dynamic group)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from fieldwatch.devices import group_filter
from fieldwatch.devices.group_repository import DeviceGroupRepository
from fieldwatch.devices.models import Device
from fieldwatch.firmware.rollouts.errors import TargetInvalid
from fieldwatch.firmware.rollouts.repository import RolloutRepository


async def check(session: AsyncSession, workspace_id: uuid.UUID, target: dict[str, Any]) -> None:
    """422 for a target that names what is not there (devices, a group)."""
    if "device_ids" not in target:
        await device_ids(session, workspace_id, target)
        return
    wanted = [uuid.UUID(str(d)) for d in target["device_ids"]]
    found = await RolloutRepository(session).existing_devices(workspace_id, wanted)
    unknown = [str(d) for d in wanted if d not in found]
    if unknown:
        raise TargetInvalid(
            f"{len(unknown)} of the target's devices are not in this workspace.",
            errors=[
                {"field": "target.device_ids", "message": f"no device {d}", "type": "unknown"}
                for d in unknown[:20]
            ],
        )


async def device_ids(
    session: AsyncSession, workspace_id: uuid.UUID, target: dict[str, Any]
) -> Select[tuple[uuid.UUID]]:
    """The ids of the target's devices in the workspace, now, as a selectable."""
    if "device_ids" in target:
        wanted = [uuid.UUID(str(d)) for d in target["device_ids"]]
        return select(Device.id).where(Device.workspace_id == workspace_id, Device.id.in_(wanted))
    if "filter" in target:
        return select(Device.id).where(group_filter.resolve_filter(workspace_id, target["filter"]))
    group_id = uuid.UUID(str(target["group_id"]))
    group = await DeviceGroupRepository(session).get(workspace_id, group_id)
    if group is None:
        raise TargetInvalid(
            f"No device group {group_id} in this workspace.",
            errors=[{"field": "target.group_id", "message": "no such group", "type": "unknown"}],
        )
    return group_filter.device_ids_select(group)
