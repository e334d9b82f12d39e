"""SQL of the privacy rules: the access log, a connection's devices, their sync state."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fieldwatch.integrations.models import (
    DeviceSync,
    HealthAccess,
    Segment,
    SyncCursor,
    SyncRun,
    VendorRecord,
)


class PrivacyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def synced_devices(
        self, workspace_id: uuid.UUID, device_ids: Iterable[uuid.UUID]
    ) -> list[uuid.UUID]:
        """Those of ``device_ids`` fed by a vendor cloud."""
        ids = list(device_ids)
        if not ids:
            return []
        found = await self.session.scalars(
            select(DeviceSync.device_id).where(
                DeviceSync.workspace_id == workspace_id, DeviceSync.device_id.in_(ids)
            )
        )
        return list(found)

    def log(self, rows: Iterable[HealthAccess]) -> None:
        self.session.add_all(list(rows))

    async def access_log(
        self, workspace_id: uuid.UUID, device_id: uuid.UUID | None, *, limit: int, offset: int,
        actor: str | None = None,
    ) -> tuple[Sequence[HealthAccess], int]:  # fmt: skip
        """Newest first; ``actor``: those whose actor contains it (any case)."""
        where = [HealthAccess.workspace_id == workspace_id]
        if device_id is not None:
            where.append(HealthAccess.device_id == device_id)
        if actor:
            escaped = actor.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append(HealthAccess.actor.ilike(f"%{escaped}%", escape="\\"))
        total = await self.session.scalar(select(func.count()).select_from(HealthAccess)
                                          .where(*where))  # fmt: skip
        rows = await self.session.scalars(
            select(HealthAccess).where(*where)
            .order_by(HealthAccess.at.desc(), HealthAccess.id).limit(limit).offset(offset)
        )  # fmt: skip
        return rows.all(), int(total or 0)

    async def devices_of(self, connection_id: uuid.UUID) -> list[uuid.UUID]:
        found = await self.session.scalars(
            select(DeviceSync.device_id).where(DeviceSync.connection_id == connection_id)
        )
        return list(found)

    async def stop_syncs(self, connection_id: uuid.UUID, device_ids: list[uuid.UUID],
                         now: datetime) -> None:  # fmt: skip
        await self.session.execute(
            update(DeviceSync).where(DeviceSync.connection_id == connection_id)
            .values(auto_sync=False, next_sync_at=None, sync_status="paused")
        )  # fmt: skip
        if device_ids:
            await self.session.execute(
                update(SyncRun).where(SyncRun.device_id.in_(device_ids),
                                      SyncRun.status.in_(("queued", "retry_wait")))
                .values(status="cancelled", end_time=now,
                        error_message="the vendor connection was disconnected")
            )  # fmt: skip

    async def forget_synced(self, connection_id: uuid.UUID, device_ids: list[uuid.UUID]) -> None:
        """Provenance, cursors and vendor ids of purged devices (a new connection
        backfills again)."""
        await self.session.execute(delete(Segment).where(Segment.device_id.in_(device_ids)))
        await self.session.execute(delete(SyncCursor).where(SyncCursor.device_id.in_(device_ids)))
        await self.session.execute(
            delete(VendorRecord).where(VendorRecord.connection_id == connection_id)
        )
