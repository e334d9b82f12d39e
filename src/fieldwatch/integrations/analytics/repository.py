"""SQL of the analytics: readings per device and metric, segments, sync runs — all
scoped to a workspace and a period."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from fieldwatch.integrations.models import DeviceSync, Segment, SyncRun
from fieldwatch.telemetry.models import Reading, Series


class AnalyticsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _devices(self, workspace_id: uuid.UUID, device_id: uuid.UUID | None,
                 connector: str | None) -> Any:  # fmt: skip
        query = select(DeviceSync.device_id).where(DeviceSync.workspace_id == workspace_id)
        if device_id is not None:
            query = query.where(DeviceSync.device_id == device_id)
        if connector is not None:
            query = query.where(DeviceSync.connector == connector)
        return query

    async def connectors(self, workspace_id: uuid.UUID) -> dict[uuid.UUID, str]:
        rows = await self.session.execute(
            select(DeviceSync.device_id, DeviceSync.connector)
            .where(DeviceSync.workspace_id == workspace_id)
        )  # fmt: skip
        return {d: c for d, c in rows.all()}

    async def usage(
        self, workspace_id: uuid.UUID, start: datetime, end: datetime,
        device_id: uuid.UUID | None, connector: str | None,
    ) -> Sequence[Row[Any]]:  # fmt: skip
        """(device, metric, readings, days with data, last reading) in the period."""
        devices = self._devices(workspace_id, device_id, connector)
        query = (
            select(Series.device_id, Series.metric, func.count(),
                   func.count(distinct(func.date(Reading.ts))), func.max(Reading.ts))
            .join(Reading, Reading.series_id == Series.id)
            .where(Series.workspace_id == workspace_id, Series.device_id.in_(devices),
                   Reading.ts >= start, Reading.ts < end)
            .group_by(Series.device_id, Series.metric)
            .order_by(Series.device_id, Series.metric)
        )  # fmt: skip
        return (await self.session.execute(query)).all()

    async def segments(
        self, workspace_id: uuid.UUID, start: datetime, end: datetime,
        device_id: uuid.UUID | None, connector: str | None,
    ) -> Sequence[Row[Any]]:  # fmt: skip
        query = select(
            Segment.device_id, Segment.connector, Segment.metric, Segment.count,
            Segment.quality, Segment.quality_parts, Segment.anomalies,
        ).where(Segment.workspace_id == workspace_id, Segment.ts_to >= start,
                Segment.ts_from < end)  # fmt: skip
        if device_id is not None:
            query = query.where(Segment.device_id == device_id)
        if connector is not None:
            query = query.where(Segment.connector == connector)
        return (await self.session.execute(query)).all()

    async def runs(
        self, workspace_id: uuid.UUID, start: datetime, end: datetime,
        device_id: uuid.UUID | None, connector: str | None,
    ) -> Sequence[Row[Any]]:  # fmt: skip
        query = (
            select(DeviceSync.connector, SyncRun.status, SyncRun.sync_type, SyncRun.attempt,
                   SyncRun.duration_seconds, SyncRun.records_synced)
            .join(DeviceSync, DeviceSync.device_id == SyncRun.device_id)
            .where(SyncRun.workspace_id == workspace_id, SyncRun.created_at >= start,
                   SyncRun.created_at < end)
        )  # fmt: skip
        if device_id is not None:
            query = query.where(SyncRun.device_id == device_id)
        if connector is not None:
            query = query.where(DeviceSync.connector == connector)
        return (await self.session.execute(query)).all()
