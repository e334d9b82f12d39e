"""All SQL of the inventory domain: stock summaries. (The device log is the registry's:
``devices.repository.DeviceLogRepository``.)"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from fieldwatch.devices.models import Device


class InventoryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def counts(self, workspace_id: uuid.UUID) -> Sequence[tuple[str, str, str | None, int]]:
        """Device counts grouped by (status, type, location)."""
        rows = await self.session.execute(
            select(Device.status, Device.type, Device.location, func.count())
            .where(Device.workspace_id == workspace_id)
            .group_by(Device.status, Device.type, Device.location)
        )
        return [(s, t, loc, int(n)) for s, t, loc, n in rows.tuples()]
