"""All SQL of the inventory domain: the append-only device log and stock summaries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from fieldwatch.devices.models import Device
from fieldwatch.inventory.models import DeviceLog


class DeviceLogRepository:
    """Append and read. There is intentionally no update or delete here."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def append(self, entry: DeviceLog) -> None:
        self.session.add(entry)

    async def append_many(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self.session.execute(insert(DeviceLog), rows)

    async def for_device(
        self, workspace_id: uuid.UUID, device_id: uuid.UUID, *, limit: int, before_id: int | None
    ) -> Sequence[DeviceLog]:
        stmt = (
            select(DeviceLog)
            .where(DeviceLog.workspace_id == workspace_id, DeviceLog.device_id == device_id)
            .order_by(DeviceLog.id.desc())
            .limit(limit)
        )
        if before_id is not None:
            stmt = stmt.where(DeviceLog.id < before_id)
        return (await self.session.scalars(stmt)).all()


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
