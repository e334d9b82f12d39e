"""Analytics API of devices fed by vendor clouds (workspace-scoped)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from fieldwatch.auth.dependencies import Viewer
from fieldwatch.db.dependencies import UowDep
from fieldwatch.integrations.analytics.schemas import (
    QualityRead,
    SyncPerformanceRead,
    UsageRead,
)
from fieldwatch.integrations.analytics.service import AnalyticsService, period

router = APIRouter(prefix="/api/v1/analytics", tags=["analytics"])

Start = Annotated[
    datetime | None, Query(description="ISO 8601 with an offset; default end − 7 days")
]
End = Annotated[datetime | None, Query(description="ISO 8601 with an offset; default now")]
DeviceId = Annotated[uuid.UUID | None, Query(description="Only this device")]
Connector = Annotated[str | None, Query(max_length=40, description="Only this connector")]


@router.get("/device-usage", response_model=UsageRead)
async def device_usage(principal: Viewer, uow: UowDep, start: Start = None, end: End = None,
                       device_id: DeviceId = None, connector: Connector = None):  # fmt: skip
    """Per vendor-fed device and metric: readings in the period, days with data, last data."""
    return await AnalyticsService(uow).usage(principal, period(start, end), device_id, connector)


@router.get("/data-quality", response_model=QualityRead)
async def data_quality(principal: Viewer, uow: UowDep, start: Start = None, end: End = None,
                       device_id: DeviceId = None, connector: Connector = None):  # fmt: skip
    """Mean quality and its parts per device, connector and metric, from the sync's pages."""
    return await AnalyticsService(uow).quality(principal, period(start, end), device_id,
                                               connector)  # fmt: skip


@router.get("/sync-performance", response_model=SyncPerformanceRead)
async def sync_performance(principal: Viewer, uow: UowDep, start: Start = None,
                           end: End = None, device_id: DeviceId = None,
                           connector: Connector = None):  # fmt: skip
    """Sync runs created in the period: by status and type, success rate, durations,
    records per second, retries, auth_required."""
    return await AnalyticsService(uow).sync_performance(principal, period(start, end),
                                                        device_id, connector)  # fmt: skip
