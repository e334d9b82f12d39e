"""SQL of the privacy rules: which devices hold health data, the access log, a
connection's devices, their sync state."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fieldwatch.devices.models import Device
from fieldwatch.integrations.connectors.catalogue import CONNECTORS, takes_uploads
from fieldwatch.integrations.models import (
    DeviceSync,
    HealthAccess,
    Segment,
    SyncCursor,
    SyncRun,
    VendorRecord,
)
from fieldwatch.telemetry.models import Series

#: Up to this many devices are named in the query; more are matched against the
#: workspace's health devices (an IN list of thousands costs more than it saves).
MAX_LISTED = 500


def health_device(workspace_id: uuid.UUID) -> ColumnElement[bool]:
    """Whether a device's data is health data: it is fed by a vendor cloud or by health
    exports (it has a device sync), or it is registered as a wearable — its specs'
    ``integration_type`` or ``integration`` names a connector, or its type is that of a
    connector whose data a companion app uploads (``apple_health``, ``apple_health_watch``,
    as health exports accept)."""
    kinds = sorted(CONNECTORS)
    uploads = [k for k in kinds if takes_uploads(k)]
    return or_(
        Device.id.in_(select(DeviceSync.device_id).where(DeviceSync.workspace_id == workspace_id)),
        Device.specs["integration_type"].as_string().in_(kinds),
        Device.specs["integration"].as_string().in_(kinds),
        Device.type.in_(uploads),
        *(Device.type.startswith(f"{k}_", autoescape=True) for k in uploads),
    )


class PrivacyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def health_devices(
        self, workspace_id: uuid.UUID, device_ids: Collection[uuid.UUID] | None, *,
        fed_since: datetime | None = None,
    ) -> set[uuid.UUID]:  # fmt: skip
        """Those of ``device_ids`` (None: every device of the workspace) whose data is
        health data (``health_device``); with ``fed_since``, only those with a series
        that had a reading at or after it. One query, whatever the number of devices."""
        where = [Device.workspace_id == workspace_id, health_device(workspace_id)]
        ids = None if device_ids is None else set(device_ids)
        if ids is not None:
            if not ids:
                return set()
            if len(ids) <= MAX_LISTED:
                where.append(Device.id.in_(ids))
        if fed_since is not None:
            where.append(Device.id.in_(select(Series.device_id).where(
                Series.workspace_id == workspace_id, Series.last_ts >= fed_since)))  # fmt: skip
        found = set(await self.session.scalars(select(Device.id).where(*where)))
        return found if ids is None else found & ids

    async def device_names(
        self, workspace_id: uuid.UUID, device_ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, str]:
        if not device_ids:
            return {}
        rows = await self.session.execute(select(Device.id, Device.name).where(
            Device.workspace_id == workspace_id, Device.id.in_(list(device_ids))))  # fmt: skip
        return {i: n for i, n in rows.tuples()}

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
