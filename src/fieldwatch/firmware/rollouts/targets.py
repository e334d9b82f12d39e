"""A rollout's target as a selectable of device ids (of the workspace)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from fieldwatch.devices.models import Device
from fieldwatch.firmware.rollouts.errors import TargetInvalid
from fieldwatch.firmware.rollouts.repository import RolloutRepository


async def check(session: AsyncSession, workspace_id: uuid.UUID, target: dict[str, Any]) -> None:
    """422 for a target that names what is not there (unknown devices, group)."""
    if "device_ids" in target:
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
        return
    await device_ids(session, workspace_id, target)


async def device_ids(
    session: AsyncSession, workspace_id: uuid.UUID, target: dict[str, Any]
) -> Select[tuple[uuid.UUID]]:
    """The ids of the target's devices in the workspace, as a selectable."""
    if "device_ids" in target:
        wanted = [uuid.UUID(str(d)) for d in target["device_ids"]]
        return select(Device.id).where(Device.workspace_id == workspace_id, Device.id.in_(wanted))
    kind = "group_id" if "group_id" in target else "filter"
    raise TargetInvalid(
        "Device groups and filters are not available as rollout targets yet; "
        "list the devices (target.device_ids).",
        errors=[{"field": f"target.{kind}", "message": "not available yet", "type": "unsupported"}],
    )
