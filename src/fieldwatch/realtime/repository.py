"""The SQL the realtime server needs: which of the requested devices a workspace owns."""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fieldwatch.devices.models import Device


class RealtimeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def owned_devices(
        self, workspace_id: uuid.UUID, device_ids: Collection[uuid.UUID]
    ) -> set[uuid.UUID]:
        if not device_ids:
            return set()
        rows = await self.session.scalars(
            select(Device.id).where(Device.workspace_id == workspace_id, Device.id.in_(device_ids))
        )
        return set(rows)
