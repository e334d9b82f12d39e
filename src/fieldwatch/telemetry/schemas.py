from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from fieldwatch.core.paging import CursorPage
from fieldwatch.integrations.schemas import HealthMetricRead, health_metrics_field
from fieldwatch.telemetry.query.queries import reading_dict


class Rejection(BaseModel):
    index: int = Field(description="Position of the reading (or of the item, in a batch)")
    reason: str
    metric: str | None = None


class IngestResponse(BaseModel):
    accepted: int = Field(description="New readings, committed")
    duplicates: int = Field(description="Readings already stored (same device, metric, time)")
    rejected: list[Rejection]


class HeartbeatResponse(IngestResponse):
    server_time: datetime
    heartbeat_interval: int


class ReadingRead(BaseModel):
    data_type: str
    timestamp: datetime
    value: float | bool | str | None
    unit: str | None
    quality: str | None


class ReadingPage(CursorPage[ReadingRead]):
    device_id: uuid.UUID | None = None
    health_metrics: dict[str, HealthMetricRead] = health_metrics_field()


class MonitoringReading(ReadingRead):
    device_id: uuid.UUID


class MonitoringPage(CursorPage[MonitoringReading]):
    health_metrics: dict[str, HealthMetricRead] = health_metrics_field()


class LatestValue(BaseModel):
    timestamp: datetime
    value: float | bool | str | None
    unit: str | None
    quality: str | None


class LatestRead(BaseModel):
    device_id: uuid.UUID
    metrics: dict[str, LatestValue]
    health_metrics: dict[str, HealthMetricRead] = health_metrics_field()


class AggregateBucket(BaseModel):
    start: datetime = Field(description="Bucket start, in the requested time zone")
    end: datetime
    value: float | None = Field(description="null when the bucket holds no readings")
    count: int


class AggregateRead(BaseModel):
    device_id: uuid.UUID
    data_type: str
    unit: str | None
    agg: str
    interval: str
    tz: str
    start_time: datetime
    end_time: datetime
    sources: list[str] = Field(description="Where the figures came from: rollup_1h, rollup_1m, raw")
    buckets: list[AggregateBucket]
    health_metric: HealthMetricRead | None = Field(
        default=None,
        description="The metric's LOINC code and UCUM unit, when it is a health "
        "metric of a health device (a wearable or its uploads)",
    )


class TelemetrySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    retention_days: int = Field(
        ge=1, le=3650, description="Readings older than this many days are removed"
    )


class DeleteResult(BaseModel):
    deleted: int


def latest_value(series: Any) -> LatestValue:
    d = reading_dict(
        series, series.last_ts, series.last_value, series.last_text, series.last_quality
    )
    return LatestValue(
        timestamp=d["timestamp"], value=d["value"], unit=d["unit"], quality=d["quality"]
    )
