from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from fieldwatch.auth.dependencies import Admin, Viewer
from fieldwatch.core.clock import utcnow
from fieldwatch.core.components import SettingsDep
from fieldwatch.core.errors import (
    AppError,
    BadRequest,
    NotFound,
    ServiceUnavailable,
    ValidationFailed,
)
from fieldwatch.db.dependencies import UowDep, WriteUow
from fieldwatch.devices.service import DeviceService
from fieldwatch.firmware.updates.dependencies import FirmwareUpdatesDep
from fieldwatch.firmware.updates.messages import version_in
from fieldwatch.integrations.privacy.service import record_deletion, record_reads
from fieldwatch.integrations.schemas import health_metrics
from fieldwatch.telemetry.dependencies import IngestDep, JsonBody, RawBody, TelemetryDep, WriterDep
from fieldwatch.telemetry.ingest.parse import parse_heartbeat, parse_monitoring, parse_upload
from fieldwatch.telemetry.ingest.service import Incoming, IngestResult, TelemetryService
from fieldwatch.telemetry.ingest.writer import Overloaded
from fieldwatch.telemetry.query.aggregate import aggregate
from fieldwatch.telemetry.query.buckets import ACCEPTED_INTERVALS, parse_interval, parse_timezone
from fieldwatch.telemetry.query.queries import require_range
from fieldwatch.telemetry.schemas import (
    AggregateBucket,
    AggregateRead,
    DeleteResult,
    HeartbeatResponse,
    IngestResponse,
    LatestRead,
    ReadingPage,
    TelemetrySettings,
    latest_value,
)

router = APIRouter(prefix="/api/v1", tags=["telemetry"])

INGEST_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"description": "Body over the size limit; nothing stored"},
    422: {"description": "No reading could be stored; the body says why for each"},
    429: {
        "description": "Over the device's rate limit (device tokens); retry after the "
        "Retry-After seconds"
    },
    503: {"description": "Write path saturated; retry after the Retry-After seconds"},
}


class NothingStored(AppError):
    status, slug, title = 422, "no-readings-stored", "No reading was stored"


async def _ingest(ingest: TelemetryService, incoming: Incoming) -> IngestResult:
    """Ingestion's answer, or the HTTP error that says why there is none."""
    try:
        result = await ingest.ingest(incoming)
    except Overloaded as exc:
        raise ServiceUnavailable(
            "The write path is saturated; retry shortly.",
            headers={"Retry-After": str(exc.retry_after)},
        ) from exc
    if result.accepted == 0 and result.duplicates == 0 and result.rejected:
        raise NothingStored(f"All {len(result.rejected)} readings were rejected.", **result.body())
    return result


@router.post("/devices/{device_id}/data", response_model=IngestResponse, responses=INGEST_RESPONSES)
async def upload_device_data(
    device_id: uuid.UUID, writer: WriterDep, raw: RawBody, ingest: IngestDep
):
    """Seed 002 shape: ``{data_type, timestamp, values: [{timestamp, value, unit, quality}],
    metadata}``. A 2xx answer means the readings are committed."""
    try:
        readings = parse_upload(raw, device_id, utcnow())
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    incoming = Incoming(
        writer.workspace_id, readings, "http", device_id=device_id, own=writer.device_id
    )
    return (await _ingest(ingest, incoming)).body()


@router.post("/monitoring/data", response_model=IngestResponse, responses=INGEST_RESPONSES)
async def upload_monitoring_data(writer: WriterDep, body: JsonBody, ingest: IngestDep):
    """Seed 001 shape: ``{device_id, timestamp?, metrics: {name: value}}``, or an array
    of those (a gateway uploading for many devices)."""
    readings = parse_monitoring(body, utcnow())
    incoming = Incoming(writer.workspace_id, readings, "http", own=writer.device_id)
    return (await _ingest(ingest, incoming)).body()


@router.post(
    "/devices/{device_id}/heartbeat", response_model=HeartbeatResponse, responses=INGEST_RESPONSES
)
async def heartbeat(
    device_id: uuid.UUID,
    writer: WriterDep,
    body: JsonBody,
    ingest: IngestDep,
    settings: SettingsDep,
    firmware: FirmwareUpdatesDep,
):
    """Seed 003 heartbeat: ``battery_level``, ``signal_strength``, ``memory_usage``,
    ``cpu_usage``; kept as readings. The device is marked online even with no fields.
    ``firmware_version`` (or ``firmware``) reports the version it runs (firmware updates
    complete on it)."""
    try:
        readings = parse_heartbeat(body, device_id, utcnow())
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    incoming = Incoming(
        writer.workspace_id, readings, "http", "heartbeat", device_id=device_id,
        own=writer.device_id,
    )  # fmt: skip
    result = await _ingest(ingest, incoming)
    if isinstance(body, dict) and (version := version_in(body)) is not None:
        await firmware.version_reported(device_id, version)
    return {
        **result.body(),
        "server_time": utcnow(),
        "heartbeat_interval": settings.heartbeat_interval_s,
    }


Start = Annotated[datetime | None, Query(description="Inclusive, ISO 8601 with a timezone")]
End = Annotated[datetime | None, Query(description="Exclusive, ISO 8601 with a timezone")]


@router.get("/devices/{device_id}/data", response_model=ReadingPage)
async def device_data(
    device_id: uuid.UUID,
    principal: Viewer,
    uow: UowDep,
    service: TelemetryDep,
    data_type: Annotated[str | None, Query(max_length=100)] = None,
    start_time: Start = None,
    end_time: End = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    order: Literal["asc", "desc"] = "desc",
    cursor: Annotated[str | None, Query(max_length=200)] = None,
):
    """Raw readings, newest first by default; follow ``next_cursor`` for more. For a
    health device (a wearable) the read is recorded in the access log and
    ``health_metrics`` gives its metrics' LOINC codes and UCUM units."""
    await DeviceService(uow).get(principal, device_id)
    require_range(start_time, end_time)
    series = await service.series(device_id, data_type)
    items, next_cursor = await service.readings_page(
        series, start=start_time, end=end_time, limit=limit,
        descending=order == "desc", cursor=cursor,
    )  # fmt: skip
    health = await record_reads(uow, principal, [device_id], f"data {data_type or 'all'}")
    described = health_metrics(s.metric for s in series) if health else {}
    return {"device_id": device_id, "items": items, "next_cursor": next_cursor,
            "health_metrics": described}  # fmt: skip


@router.get("/devices/{device_id}/data/latest", response_model=LatestRead)
async def device_latest(
    device_id: uuid.UUID, principal: Viewer, uow: UowDep, service: TelemetryDep
):
    """The latest value of every metric of the device (a health device's: recorded in the
    access log, its metrics described in ``health_metrics``)."""
    await DeviceService(uow).get(principal, device_id)
    series = await service.series(device_id, None)
    health = await record_reads(uow, principal, [device_id], "data latest")
    metrics = {s.metric: latest_value(s) for s in series if s.last_ts is not None}
    return LatestRead(device_id=device_id, metrics=metrics,
                      health_metrics=health_metrics(metrics) if health else {})  # fmt: skip


@router.get("/devices/{device_id}/data/aggregate", response_model=AggregateRead)
async def device_aggregate(
    device_id: uuid.UUID,
    principal: Viewer,
    uow: UowDep,
    service: TelemetryDep,
    data_type: Annotated[str, Query(max_length=100)],
    start_time: Start = None,
    end_time: End = None,
    interval: Annotated[str, Query(description=", ".join(ACCEPTED_INTERVALS))] = "1h",
    agg: Annotated[Literal["avg", "min", "max", "sum", "count"], Query()] = "avg",
    tz: Annotated[str, Query(description="IANA time zone, e.g. Europe/Berlin")] = "UTC",
):
    """Aggregate one metric over calendar buckets in a time zone (a day bucket spans local
    midnight to midnight, 23 or 25 hours on DST days; a month bucket is a calendar month).
    Default range: the last 24 hours. Answered from rollups where they cover the range."""
    await DeviceService(uow).get(principal, device_id)
    require_range(start_time, end_time)
    end = end_time or utcnow()
    start = start_time or end - timedelta(days=1)
    if start >= end:
        raise BadRequest("start_time must be before end_time.")
    try:
        zone = parse_timezone(tz)
        parsed = parse_interval(interval)
    except ValueError as exc:
        field = "tz" if "zone" in str(exc) else "interval"
        raise ValidationFailed(str(exc), errors=[{"field": field, "message": str(exc)}]) from exc
    series = await service.series(device_id, data_type)
    if not series:
        raise NotFound(f"The device has no readings of {data_type!r}.")
    if series[0].kind == "text":
        raise ValidationFailed(f"{data_type} holds text; only numbers and booleans aggregate.")
    try:
        result = await aggregate(service.repo, series[0].id, start, end, parsed, zone, agg)
    except ValueError as exc:  # too many buckets
        raise ValidationFailed(
            str(exc), errors=[{"field": "interval", "message": str(exc)}]
        ) from exc
    health = await record_reads(uow, principal, [device_id], f"data aggregate {data_type}")
    described = health_metrics([data_type]) if health else {}
    return AggregateRead(
        device_id=device_id, data_type=data_type, unit=series[0].unit, agg=agg,
        interval=parsed.label, tz=tz, start_time=start, end_time=end, sources=result.sources,
        buckets=[
            AggregateBucket(start=a.astimezone(zone), end=b.astimezone(zone), value=v, count=n)
            for (a, b), v, n in zip(result.spans, result.values, result.counts, strict=True)
        ], health_metric=described.get(data_type),
    )  # fmt: skip


@router.get("/telemetry/settings", response_model=TelemetrySettings)
async def telemetry_settings(principal: Viewer, service: TelemetryDep):
    days = await service.hub.retention_days(principal.workspace_id)
    return TelemetrySettings(retention_days=days)


@router.put("/telemetry/settings", response_model=TelemetrySettings)
async def set_telemetry_settings(
    body: TelemetrySettings, principal: Admin, service: TelemetryDep, uow: WriteUow
):
    """Retention of this workspace's readings (admins). Shortening it removes older
    readings at the next maintenance run; new readings older than it are refused."""
    await service.repo.set_retention_days(principal.workspace_id, body.retention_days)
    uow.after_commit(partial(service.hub.forget_retention, principal.workspace_id))
    return body


@router.delete("/devices/{device_id}/data", response_model=DeleteResult)
async def delete_device_data(
    device_id: uuid.UUID,
    principal: Admin,
    uow: WriteUow,
    service: TelemetryDep,
    data_type: Annotated[str | None, Query(max_length=100)] = None,
    start_time: Start = None,
    end_time: End = None,
):
    """Delete readings (admins). Without a range, all of them; rollups are rebuilt. The
    deletion of a health device's readings is recorded in the access log."""
    await DeviceService(uow).get(principal, device_id)
    require_range(start_time, end_time)
    series = await service.series(device_id, data_type)
    deleted = await service.delete(series, start_time, end_time)
    if deleted:
        await record_deletion(uow, principal, device_id, f"data {data_type or 'all'}")
    uow.after_commit(partial(service.hub.latest.reload_device, principal.workspace_id, device_id))
    return DeleteResult(deleted=deleted)
