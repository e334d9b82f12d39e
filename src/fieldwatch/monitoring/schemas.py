from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fieldwatch.devices.lifecycle import DeviceStatus


class DeviceStatusRead(BaseModel):
    """Seed 000 ``GET /devices/{id}/status``."""

    device_id: uuid.UUID
    status: DeviceStatus = Field(description="Lifecycle status")
    connectivity: str = Field(description="online | offline")
    last_seen: datetime | None
    battery_level: float | None
    signal_strength: float | str | None
    firmware_version: str | None


class DeviceHealthRead(BaseModel):
    """Seed 002 ``GET /devices/{id}/health``."""

    device_id: uuid.UUID
    status: str = Field(description="online | offline")
    lifecycle_status: DeviceStatus
    last_seen: datetime | None
    battery_level: float | None
    signal_strength: float | str | None
    sync_status: str | None = None
    last_sync: datetime | None = None
    next_sync: datetime | None = None
    errors: list[str]
    warnings: list[str]


class HealthSummary(BaseModel):
    total: int
    online: int
    offline: int
    never_seen: int
    low_battery: int
    by_type: dict[str, dict[str, int]]
    devices_with_errors: list[uuid.UUID]
    sync: dict[str, int] = Field(
        default_factory=dict,
        description="Devices fed by a vendor cloud by sync status (pending, syncing, ok, error, "
        "auth_required, paused)",
    )


class ConnectivityEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    connectivity: str
    reason: str | None
    at: datetime


class HeartbeatSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    heartbeat_interval_s: int = Field(ge=1, le=7 * 86400)
    offline_tolerance: float = Field(default=3.0, ge=1.0, le=100.0)


class DeviceHeartbeatSetting(BaseModel):
    model_config = ConfigDict(extra="forbid")
    heartbeat_interval_s: int | None = Field(
        ge=1, le=7 * 86400, description="null: use the device type's or the default"
    )


class MetricStats(BaseModel):
    count: int
    min: float
    avg: float
    max: float


class MonitoringStats(BaseModel):
    window_s: int
    devices_by_status: dict[DeviceStatus, int]
    online_by_status: dict[DeviceStatus, int] = Field(
        default_factory=dict, description="Devices online now, per lifecycle status"
    )
    online: int
    offline: int
    readings_last_minute: int
    readings_per_minute: float = Field(description="Average over the window")
    metrics: dict[str, MetricStats]
    generated_at: datetime
    extra: dict[str, Any] = Field(default_factory=dict)


class OfflineDevice(BaseModel):
    """A device that went offline recently and is still offline."""

    device_id: uuid.UUID
    name: str
    went_offline_at: datetime
    last_seen: datetime | None


class RateLimit(BaseModel):
    """At most ``messages`` per ``window_s`` seconds on average (bursts of up to
    ``messages``), on every transport."""

    model_config = ConfigDict(extra="forbid")
    messages: int = Field(ge=1, le=1_000_000)
    window_s: int = Field(ge=1, le=86_400)


class RateLimitRead(BaseModel):
    source: Literal["device", "type", "default"] = Field(
        description="Where the limit comes from: the device's own, its type's, or the "
        "transports' defaults"
    )
    limits: dict[Literal["websocket", "mqtt", "http"], RateLimit] = Field(
        description="The limit in force on each transport"
    )
