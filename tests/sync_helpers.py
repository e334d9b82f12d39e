"""What the sync tests share: readings in the store, runs in the database."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, select, update

from fieldwatch.core.clock import utcnow
from fieldwatch.integrations.models import DeviceSync, Segment, SyncCursor, SyncRun
from fieldwatch.runtime import Runtime
from fieldwatch.telemetry.models import Reading, Series


async def readings(runtime: Runtime, device_id: str, metric: str) -> list[datetime]:
    """The times of the device's stored readings of ``metric``."""
    async with runtime.uow() as uow:
        rows = await uow.session.scalars(
            select(Reading.ts).join(Series, Series.id == Reading.series_id)
            .where(Series.device_id == uuid.UUID(device_id), Series.metric == metric)
            .order_by(Reading.ts)
        )  # fmt: skip
        return list(rows.all())


async def runs(runtime: Runtime, device_id: str) -> list[SyncRun]:
    async with runtime.uow() as uow:
        rows = await uow.session.scalars(
            select(SyncRun).where(SyncRun.device_id == uuid.UUID(device_id))
            .order_by(SyncRun.created_at, SyncRun.attempt)
        )  # fmt: skip
        return list(rows.all())


async def device_sync(runtime: Runtime, device_id: str) -> DeviceSync:
    async with runtime.uow() as uow:
        row = await uow.session.get(DeviceSync, uuid.UUID(device_id))
    assert row is not None
    return row


async def cursor(runtime: Runtime, device_id: str, metric: str) -> datetime | None:
    async with runtime.uow() as uow:
        row = await uow.session.get(SyncCursor, (uuid.UUID(device_id), metric))
    return row.synced_until if row is not None else None


async def make_due(runtime: Runtime, run_id: uuid.UUID) -> None:
    """A waiting run's backoff is over (instead of waiting for it)."""
    async with runtime.uow() as uow:
        await uow.session.execute(
            update(SyncRun).where(SyncRun.id == run_id)
            .values(not_before=utcnow() - timedelta(seconds=1))
        )  # fmt: skip
        await uow.commit()


async def count_runs(runtime: Runtime) -> int:
    async with runtime.uow() as uow:
        return int(await uow.session.scalar(select(func.count()).select_from(SyncRun)) or 0)


async def segments_of(runtime: Runtime, run_id: uuid.UUID) -> list[Segment]:
    async with runtime.uow() as uow:
        rows = await uow.session.scalars(select(Segment).where(Segment.run_id == run_id))
        return list(rows.all())
