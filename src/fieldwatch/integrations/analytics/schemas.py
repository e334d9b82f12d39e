"""Shapes of the analytics answers."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel


class Period(BaseModel):
    start: datetime
    end: datetime


class MetricUsage(BaseModel):
    metric: str
    readings: int
    days_with_data: int
    last_data: datetime | None


class DeviceUsage(BaseModel):
    device_id: uuid.UUID
    connector: str
    readings: int
    days_with_data: int
    last_data: datetime | None
    metrics: list[MetricUsage]


class UsageRead(BaseModel):
    period: Period
    devices: list[DeviceUsage]
    by_connector: dict[str, int]


class QualityRow(BaseModel):
    device_id: uuid.UUID
    connector: str
    metric: str
    segments: int
    readings: int
    mean_quality: float
    #: Mean of each part of the score (completeness, plausibility, duplicates, gaps).
    parts: dict[str, float]
    #: Segments (pages) with readings outside the plausible range, and with gaps.
    implausible_segments: int
    gappy_segments: int
    #: Readings flagged as anomalies (at most 100 are kept per page).
    anomalies: int


class QualityRead(BaseModel):
    period: Period
    rows: list[QualityRow]
    mean_quality: float | None


class SyncGroup(BaseModel):
    runs: int
    by_status: dict[str, int]
    by_type: dict[str, int]
    success_rate: float | None
    duration_p50_s: float | None
    duration_p95_s: float | None
    records_per_second: float | None
    retries: int
    auth_required: int


class SyncPerformanceRead(BaseModel):
    period: Period
    overall: SyncGroup
    by_connector: dict[str, SyncGroup]
