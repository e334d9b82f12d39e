"""All SQL of device syncs, sync runs and cursors.

Claims are conditional UPDATEs: a run is taken by the process whose UPDATE still finds
it claimable (queued or waiting and due, or running with its lease run out), which on
PostgreSQL re-checks the condition on the locked row, so two processes never both get
it; SQLite serves one process.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fieldwatch.db.upsert import insert_for
from fieldwatch.devices.models import Device
from fieldwatch.integrations.models import (
    Connection,
    DeviceSync,
    SyncCursor,
    SyncRun,
    VendorRecord,
)
from fieldwatch.integrations.sync.schemas import OPEN


def _claimable(now: datetime) -> Any:
    return or_(
        and_(
            SyncRun.status.in_(("queued", "retry_wait")),
            or_(SyncRun.not_before.is_(None), SyncRun.not_before <= now),
        ),
        and_(SyncRun.status == "running", SyncRun.claimed_until < now),
    )


class SyncRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, obj: DeviceSync | SyncRun | SyncCursor) -> None:
        self.session.add(obj)

    # --- device syncs -----------------------------------------------------------------

    async def device_sync(
        self, workspace_id: uuid.UUID | None, device_id: uuid.UUID, *, lock: bool = False
    ) -> DeviceSync | None:
        """A device's sync settings (``workspace_id`` None: any workspace's, for the
        engine); ``lock``: the row locked until the transaction ends (PostgreSQL), so
        two requests cannot both open a run for it."""
        query = select(DeviceSync).where(DeviceSync.device_id == device_id)
        if workspace_id is not None:
            query = query.where(DeviceSync.workspace_id == workspace_id)
        if lock:
            query = query.with_for_update()
        return await self.session.scalar(query.execution_options(populate_existing=True))

    async def status_counts(self, workspace_id: uuid.UUID) -> dict[str, int]:
        rows = await self.session.execute(
            select(DeviceSync.sync_status, func.count())
            .where(DeviceSync.workspace_id == workspace_id)
            .group_by(DeviceSync.sync_status)
        )
        return dict(sorted((str(s), int(n)) for s, n in rows.all()))

    async def auth_required(self, workspace_id: uuid.UUID) -> list[uuid.UUID]:
        found = await self.session.scalars(
            select(DeviceSync.device_id).where(
                DeviceSync.workspace_id == workspace_id, DeviceSync.sync_status == "auth_required"
            )
        )
        return list(found)

    async def imported(self, connection_id: uuid.UUID) -> dict[str, uuid.UUID]:
        """Vendor device id → Fieldwatch device of a connection's imported devices."""
        rows = await self.session.execute(
            select(DeviceSync.vendor_device_id, DeviceSync.device_id).where(
                DeviceSync.connection_id == connection_id
            )
        )
        return {v: d for v, d in rows.all() if v is not None}

    async def workspace_devices(self, workspace_id: uuid.UUID) -> list[uuid.UUID]:
        rows = await self.session.scalars(
            select(DeviceSync.device_id).where(DeviceSync.workspace_id == workspace_id)
        )
        return list(rows.all())

    async def status_page(
        self, workspace_id: uuid.UUID, device_id: uuid.UUID | None, *, limit: int, offset: int
    ) -> tuple[Sequence[tuple[DeviceSync, str]], int]:
        where = [DeviceSync.workspace_id == workspace_id]
        if device_id is not None:
            where.append(DeviceSync.device_id == device_id)
        total = await self.session.scalar(select(func.count()).where(*where)
                                          .select_from(DeviceSync))  # fmt: skip
        rows = await self.session.execute(
            select(DeviceSync, Device.name).join(Device, Device.id == DeviceSync.device_id)
            .where(*where).order_by(Device.name, DeviceSync.device_id).limit(limit).offset(offset)
        )  # fmt: skip
        return [(s, n) for s, n in rows.all()], int(total or 0)

    async def due(self, now: datetime, limit: int) -> Sequence[DeviceSync]:
        """Device syncs whose automatic sync is due, on an active connection, of
        devices that are not retired (ingestion would refuse their readings)."""
        rows = await self.session.scalars(
            select(DeviceSync)
            .join(Connection, Connection.id == DeviceSync.connection_id)
            .join(Device, Device.id == DeviceSync.device_id)
            .where(DeviceSync.auto_sync.is_(True), DeviceSync.next_sync_at <= now,
                   Connection.status == "active", Device.status != "retired")
            .order_by(DeviceSync.next_sync_at).limit(limit)
        )  # fmt: skip
        return rows.all()

    async def advance_next(
        self, device_id: uuid.UUID, seen: datetime | None, next_at: datetime | None
    ) -> bool:
        """Move a due sync's next time on, if nobody else did since it was read."""
        result = await self.session.execute(
            update(DeviceSync)
            .where(DeviceSync.device_id == device_id, DeviceSync.next_sync_at == seen)
            .values(next_sync_at=next_at)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def set_device_sync(self, device_id: uuid.UUID, **values: Any) -> None:
        await self.session.execute(
            update(DeviceSync).where(DeviceSync.device_id == device_id).values(**values)
        )

    # --- runs ---------------------------------------------------------------------------

    async def run(self, workspace_id: uuid.UUID | None, run_id: uuid.UUID) -> SyncRun | None:
        query = select(SyncRun).where(SyncRun.id == run_id)
        if workspace_id is not None:
            query = query.where(SyncRun.workspace_id == workspace_id)
        return await self.session.scalar(query.execution_options(populate_existing=True))

    async def open_runs(self, device_ids: Sequence[uuid.UUID]) -> Sequence[SyncRun]:
        if not device_ids:
            return []
        rows = await self.session.scalars(
            select(SyncRun).where(SyncRun.device_id.in_(device_ids), SyncRun.status.in_(OPEN))
            .order_by(SyncRun.created_at)
        )  # fmt: skip
        return rows.all()

    async def history(
        self,
        workspace_id: uuid.UUID,
        *,
        device_id: uuid.UUID | None,
        status: str | None,
        limit: int,
        offset: int,
        sync_type: str | None = None,
        connection_id: uuid.UUID | None = None,
    ) -> tuple[Sequence[SyncRun], int]:
        where = [SyncRun.workspace_id == workspace_id]
        for column, value in ((SyncRun.device_id, device_id), (SyncRun.status, status),
                              (SyncRun.sync_type, sync_type),
                              (SyncRun.connection_id, connection_id)):  # fmt: skip
            if value is not None:
                where.append(column == value)
        total = await self.session.scalar(select(func.count()).where(*where)
                                          .select_from(SyncRun))  # fmt: skip
        rows = await self.session.scalars(
            select(SyncRun).where(*where)
            .order_by(SyncRun.created_at.desc(), SyncRun.id).limit(limit).offset(offset)
        )  # fmt: skip
        return rows.all(), int(total or 0)

    async def claimable(self, now: datetime, limit: int) -> list[uuid.UUID]:
        rows = await self.session.scalars(
            select(SyncRun.id).where(_claimable(now))
            .order_by(SyncRun.created_at).limit(limit)
        )  # fmt: skip
        return list(rows.all())

    async def claim(self, run_id: uuid.UUID, owner: str, now: datetime, until: datetime) -> bool:
        result = await self.session.execute(
            update(SyncRun).where(SyncRun.id == run_id, _claimable(now))
            .values(status="running", claimed_by=owner, claimed_until=until,
                    start_time=func.coalesce(SyncRun.start_time,
                                              literal(now, SyncRun.start_time.type)))
        )  # fmt: skip
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def update_claimed(self, run_id: uuid.UUID, owner: str, **values: Any) -> bool:
        """Change a run this process still holds (False: its claim was lost)."""
        result = await self.session.execute(
            update(SyncRun)
            .where(SyncRun.id == run_id, SyncRun.claimed_by == owner,
                   SyncRun.status == "running")
            .values(**values)
        )  # fmt: skip
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def count(
        self, run_id: uuid.UUID, owner: str, processed: int, synced: int, failed: int
    ) -> bool:
        return await self.update_claimed(
            run_id, owner,
            records_processed=SyncRun.records_processed + processed,
            records_synced=SyncRun.records_synced + synced,
            records_failed=SyncRun.records_failed + failed,
        )  # fmt: skip

    # --- cursors ------------------------------------------------------------------------

    async def cursors(self, device_id: uuid.UUID) -> dict[str, SyncCursor]:
        rows = await self.session.scalars(
            select(SyncCursor).where(SyncCursor.device_id == device_id)
        )
        return {c.data_type: c for c in rows.all()}

    async def move_cursor(self, device_id: uuid.UUID, data_type: str, until: datetime) -> None:
        """The cursor moves forward only (a resumed run may commit an older page)."""
        cursor = await self.session.get(SyncCursor, (device_id, data_type))
        if cursor is None:
            self.session.add(SyncCursor(device_id=device_id, data_type=data_type,
                                        synced_until=until))  # fmt: skip
        elif cursor.synced_until is None or cursor.synced_until < until:
            cursor.synced_until = until

    async def keep_vendor_records(
        self,
        connection_id: uuid.UUID,
        device_id: uuid.UUID,
        metric: str,
        records: Sequence[tuple[str, datetime]],
    ) -> None:
        """The vendor's record ids of stored readings (provenance): a record kept before
        stays as it was (a page read again stores nothing twice)."""
        rows = [{"connection_id": connection_id, "data_type": metric,
                 "vendor_id": vendor_id[:200], "device_id": device_id, "metric": metric,
                 "ts": ts} for vendor_id, ts in dict(records).items() if vendor_id]  # fmt: skip
        for start in range(0, len(rows), 1000):  # within the databases' parameter limits
            await self.session.execute(
                insert_for(self.session, VendorRecord)
                .values(rows[start : start + 1000])
                .on_conflict_do_nothing()
            )
