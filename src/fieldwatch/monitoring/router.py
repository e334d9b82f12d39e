from __future__ import annotations

import uuid
from datetime import datetime
from functools import partial
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Query, Response

from fieldwatch.auth.dependencies import Operator, Viewer
from fieldwatch.auth.principal import Principal
from fieldwatch.core.components import SettingsDep
from fieldwatch.core.paging import BeforeId, BeforeIdPage
from fieldwatch.db.dependencies import UowDep, WriteUow
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.service import DeviceService
from fieldwatch.integrations.privacy.service import record_fleet_reads, record_reads
from fieldwatch.integrations.schemas import health_metrics
from fieldwatch.monitoring.dependencies import LimitsDep, MonitoringDep, PresenceDep
from fieldwatch.monitoring.limits import DeviceLimiter
from fieldwatch.monitoring.schemas import (
    ConnectivityEventRead,
    DeviceHealthRead,
    DeviceHeartbeatSetting,
    DeviceStatusRead,
    HealthSummary,
    HeartbeatSettings,
    MonitoringStats,
    RateLimit,
    RateLimitRead,
)
from fieldwatch.monitoring.service import window_start
from fieldwatch.telemetry.dependencies import TelemetryDep
from fieldwatch.telemetry.query.queries import require_range
from fieldwatch.telemetry.schemas import MonitoringPage

router = APIRouter(prefix="/api/v1", tags=["monitoring"])


Start = Annotated[datetime | None, Query(description="Inclusive, ISO 8601 with a timezone")]
End = Annotated[datetime | None, Query(description="Exclusive, ISO 8601 with a timezone")]


@router.get("/devices/health/summary", response_model=HealthSummary)
async def health_summary(principal: Viewer, service: MonitoringDep):
    """Online/offline counts (overall and by type), never-seen and low-battery devices, and
    the deployed devices that are offline."""
    return await service.health_summary(principal)


@router.get("/devices/{device_id}/status", response_model=DeviceStatusRead)
async def device_status(device_id: uuid.UUID, principal: Viewer, service: MonitoringDep):
    """Lifecycle status, connectivity, last seen, battery, signal and firmware (seed 000)."""
    return await service.status(principal, device_id)


@router.get("/devices/{device_id}/health", response_model=DeviceHealthRead)
async def device_health(device_id: uuid.UUID, principal: Viewer, service: MonitoringDep):
    """Seed 002 health document, with errors (offline while deployed) and warnings."""
    return await service.health(principal, device_id)


@router.get("/devices/{device_id}/connectivity", response_model=BeforeIdPage[ConnectivityEventRead])
async def connectivity_history(
    device_id: uuid.UUID,
    principal: Viewer,
    service: MonitoringDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before_id: BeforeId = None,
):
    """The device's online/offline transitions, newest first."""
    rows = await service.history(principal, device_id, limit, before_id)
    items = [ConnectivityEventRead.model_validate(r) for r in rows]
    return BeforeIdPage[ConnectivityEventRead](
        items=items, next_before_id=items[-1].id if len(items) == limit else None
    )


@router.put("/devices/{device_id}/heartbeat-interval", response_model=DeviceHeartbeatSetting)
async def set_device_heartbeat(
    device_id: uuid.UUID,
    body: DeviceHeartbeatSetting,
    principal: Operator,
    service: MonitoringDep,
    uow: WriteUow,
    presence: PresenceDep,
):
    """How often this device is expected to report (null: its type's or the default)."""
    await service.set_device_heartbeat(principal, device_id, body.heartbeat_interval_s)
    uow.after_commit(partial(presence.reload_timeouts, principal.workspace_id))
    return body


@router.get("/device-types/{type_}/heartbeat", response_model=HeartbeatSettings)
async def type_heartbeat(
    type_: str, principal: Viewer, service: MonitoringDep, settings: SettingsDep
):
    own = await service.type_heartbeat(principal, type_)
    if own is None:
        return HeartbeatSettings(
            heartbeat_interval_s=settings.heartbeat_interval_s,
            offline_tolerance=settings.offline_tolerance,
        )
    return HeartbeatSettings(
        heartbeat_interval_s=own.heartbeat_interval_s, offline_tolerance=own.offline_tolerance
    )


@router.put("/device-types/{type_}/heartbeat", response_model=HeartbeatSettings)
async def set_type_heartbeat(
    type_: str,
    body: HeartbeatSettings,
    principal: Operator,
    service: MonitoringDep,
    uow: WriteUow,
    presence: PresenceDep,
):
    """A device of this type is offline after ``heartbeat_interval_s × offline_tolerance``
    seconds of silence (unless the device has its own interval)."""
    await service.set_type_heartbeat(
        principal, type_, body.heartbeat_interval_s, body.offline_tolerance
    )
    uow.after_commit(partial(presence.reload_timeouts, principal.workspace_id))
    return body


def _rate_limit_changed(uow: UnitOfWork, limits: DeviceLimiter, principal: Principal) -> None:
    """Once the rate-limit change is committed this process reads the workspace's limits
    again at once (the change's event tells the other processes)."""
    uow.after_commit(partial(limits.forget, principal.workspace_id))


@router.get("/device-types/{type_}/rate-limit", response_model=RateLimitRead)
async def type_rate_limit(type_: str, principal: Viewer, service: MonitoringDep, limits: LimitsDep):
    """The rate limit of devices of this type (unless a device has its own)."""
    return await service.type_rate_limit(principal, type_, limits)


@router.put("/device-types/{type_}/rate-limit", response_model=RateLimitRead)
async def set_type_rate_limit(
    type_: str,
    body: RateLimit,
    principal: Operator,
    service: MonitoringDep,
    uow: WriteUow,
    limits: LimitsDep,
):
    """Devices of this type may send ``messages`` per ``window_s`` seconds on average
    (bursts of up to ``messages``), over every transport, instead of the defaults.
    Excess messages are refused (WebSocket ``rate_limited`` errors, HTTP 429, MQTT
    messages dropped, a device that keeps flooding disconnected)."""
    await service.set_type_rate_limit(principal, type_, body)
    _rate_limit_changed(uow, limits, principal)
    return await service.type_rate_limit(principal, type_, limits)


@router.delete("/device-types/{type_}/rate-limit", response_model=RateLimitRead)
async def remove_type_rate_limit(
    type_: str, principal: Operator, service: MonitoringDep, uow: WriteUow, limits: LimitsDep
):
    """Back to the defaults for devices of this type."""
    await service.set_type_rate_limit(principal, type_, None)
    _rate_limit_changed(uow, limits, principal)
    return await service.type_rate_limit(principal, type_, limits)


@router.get("/devices/{device_id}/rate-limit", response_model=RateLimitRead)
async def device_rate_limit(
    device_id: uuid.UUID, principal: Viewer, service: MonitoringDep, limits: LimitsDep
):
    """The rate limit in force for this device: its own, its type's, or the defaults."""
    return await service.device_rate_limit(principal, device_id, limits)


@router.put("/devices/{device_id}/rate-limit", response_model=RateLimitRead)
async def set_device_rate_limit(
    device_id: uuid.UUID,
    body: RateLimit,
    principal: Operator,
    service: MonitoringDep,
    uow: WriteUow,
    limits: LimitsDep,
):
    """This device's own rate limit, over its type's and the defaults."""
    await service.set_device_rate_limit(principal, device_id, body)
    _rate_limit_changed(uow, limits, principal)
    return await service.device_rate_limit(principal, device_id, limits)


@router.delete("/devices/{device_id}/rate-limit", response_model=RateLimitRead)
async def remove_device_rate_limit(
    device_id: uuid.UUID, principal: Operator, service: MonitoringDep, uow: WriteUow,
    limits: LimitsDep,
):  # fmt: skip
    """Back to the type's limit or the defaults."""
    await service.set_device_rate_limit(principal, device_id, None)
    _rate_limit_changed(uow, limits, principal)
    return await service.device_rate_limit(principal, device_id, limits)


@router.get("/monitoring/data", response_model=MonitoringPage)
async def monitoring_data(
    principal: Viewer,
    telemetry: TelemetryDep,
    uow: UowDep,
    device_id: uuid.UUID | None = None,
    type: Annotated[str | None, Query(max_length=100, description="Device type")] = None,
    data_type: Annotated[str | None, Query(max_length=100)] = None,
    start_time: Start = None,
    end_time: End = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    order: Literal["asc", "desc"] = "desc",
    cursor: Annotated[str | None, Query(max_length=200)] = None,
):
    """Readings across the workspace's devices (seed 001), filtered and cursor-paged. The
    read of health devices' readings in the page is recorded in the access log (one row
    per device); ``health_metrics`` describes their metrics (LOINC, UCUM)."""
    require_range(start_time, end_time)
    series = await telemetry.repo.workspace_series(
        principal.workspace_id, device_id=device_id, device_type=type, metric=data_type
    )
    items, next_cursor = await telemetry.readings_page(
        series, start=start_time, end=end_time, limit=limit,
        descending=order == "desc", cursor=cursor,
    )  # fmt: skip
    read = {item["device_id"] for item in items}
    health = await record_reads(uow, principal, read, f"monitoring data {data_type or 'all'}")
    described = health_metrics(i["data_type"] for i in items if i["device_id"] in health)
    return {"items": items, "next_cursor": next_cursor, "health_metrics": described}


@router.get("/monitoring/data/{device_id}", response_model=MonitoringPage)
async def monitoring_device_data(
    device_id: uuid.UUID,
    principal: Viewer,
    telemetry: TelemetryDep,
    uow: UowDep,
    data_type: Annotated[str | None, Query(max_length=100)] = None,
    start_time: Start = None,
    end_time: End = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
):
    """One device's readings (seed 001)."""
    await DeviceService(uow).get(principal, device_id)
    return await monitoring_data(
        principal, telemetry, uow, device_id, None, data_type, start_time, end_time, limit,
        "desc", cursor,
    )  # fmt: skip


@router.get(
    "/monitoring/latest",
    response_class=Response,
    responses={200: {"description": "{devices: {device_id: {metric: {timestamp, value, "
                     "unit, quality}}}, count, health_metrics: {metric: {name, title, loinc, "
                     "unit, omh_schema}}}", "content": {"application/json": {}}}},
)  # fmt: skip
async def monitoring_latest(
    principal: Viewer,
    telemetry: TelemetryDep,
    uow: UowDep,
    device_id: Annotated[list[uuid.UUID] | None, Query(description="Repeat for several")] = None,
    type: Annotated[str | None, Query(max_length=100, description="Device type")] = None,
    data_type: Annotated[list[str] | None, Query(description="Metrics; repeat for several")] = None,
) -> Response:
    """The latest value of every metric of every device (or of the chosen ones): what a
    fleet dashboard shows. Served from each series' stored latest value. The read of
    health devices' values is recorded in the access log (one row per device);
    ``health_metrics`` describes their metrics (LOINC, UCUM)."""
    ids: list[str] | None = [str(d) for d in device_id] if device_id else None
    if type is not None:
        of_type = {
            str(d) for d in await telemetry.repo.device_ids_of_type(principal.workspace_id, type)
        }
        ids = [d for d in ids if d in of_type] if ids is not None else list(of_type)
    devices = await telemetry.hub.latest.snapshot(principal.workspace_id, ids, data_type or ())
    what = f"monitoring latest {','.join(data_type or ()) or 'all'}"
    health = {str(d) for d in await record_reads(uow, principal, map(uuid.UUID, devices), what)}
    described = health_metrics(m for d in health for m in devices[d])
    body = {"count": len(devices), "devices": devices,
            "health_metrics": {n: h.model_dump() for n, h in described.items()}}  # fmt: skip
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("/monitoring/stats", response_model=MonitoringStats)
async def monitoring_stats(
    principal: Viewer,
    service: MonitoringDep,
    uow: UowDep,
    window_s: Annotated[int, Query(ge=60, le=31 * 86400, description="Statistics window")] = 3600,
):
    """Devices by lifecycle status, online/offline, readings per minute, and per-metric
    min/avg/max over the window (from the minute rollups). The figures take in the
    health devices that sent readings in the window: the read is recorded in the access
    log for each of them."""
    stats = await service.stats(principal, window_s)
    await record_fleet_reads(uow, principal, window_start(stats.generated_at, window_s),
                             "monitoring stats")  # fmt: skip
    return stats
