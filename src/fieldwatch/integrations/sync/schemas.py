"""API shapes of vendor devices, imports, sync runs and device sync status."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fieldwatch.core.schemas import StrictModel

RunStatus = Literal[
    "queued", "running", "completed", "partial", "failed", "retry_wait", "auth_required",
    "cancelled",
]  # fmt: skip
SyncType = Literal["manual", "automatic", "bulk", "webhook", "backfill"]
#: Runs that are still to finish: one per device at a time.
OPEN = ("queued", "running", "retry_wait")
FINAL = ("completed", "partial", "failed", "auth_required", "cancelled")
#: Runs a retry may follow (auth_required only once the connection is authorised again).
RETRYABLE = ("failed", "partial", "auth_required", "cancelled")


class SyncSettings(StrictModel):
    auto_sync: bool = True
    sync_interval_minutes: int | None = Field(
        default=None, ge=1, le=7 * 24 * 60,
        description="Default: FIELDWATCH_SYNC_INTERVAL_MINUTES",
    )  # fmt: skip
    sync_historical_days: int | None = Field(
        default=None, ge=0, le=3650,
        description="How far back the first sync reaches; default: "
        "FIELDWATCH_SYNC_HISTORICAL_DAYS (at most what the vendor keeps)",
    )  # fmt: skip


class SyncSettingsUpdate(StrictModel):
    """A change of a device's sync settings: only the fields given change."""

    auto_sync: bool | None = None
    sync_interval_minutes: int | None = Field(default=None, ge=1, le=7 * 24 * 60)
    sync_historical_days: int | None = Field(
        default=None, ge=0, le=3650,
        description="How far back a first sync (or a backfill) reaches; at most what the "
        "vendor keeps",
    )  # fmt: skip

    @model_validator(mode="after")
    def _something(self) -> SyncSettingsUpdate:
        if not self.model_dump(exclude_none=True):
            raise ValueError("give auto_sync, sync_interval_minutes or sync_historical_days")
        return self


class VendorDeviceRead(BaseModel):
    vendor_device_id: str
    title: str
    model: str | None
    firmware_version: str | None
    #: The Fieldwatch device it was imported as, if it was.
    device_id: uuid.UUID | None


class ImportRequest(StrictModel):
    connection_id: uuid.UUID
    devices: list[str] = Field(min_length=1, max_length=100, description="Vendor device ids")
    sync_settings: SyncSettings = Field(default_factory=SyncSettings)


class ImportedDevice(BaseModel):
    vendor_device_id: str
    device_id: uuid.UUID
    #: False: it had been imported before.
    created: bool
    #: It had been imported before and the sync settings given changed it.
    updated: bool = False
    sync_status: str
    next_sync: datetime | None


class SyncRequest(StrictModel):
    data_types: list[str] | None = Field(
        default=None, max_length=20,
        description="Only these metrics (default: all the connection shares)",
    )  # fmt: skip


class BulkSyncRequest(StrictModel):
    device_ids: list[uuid.UUID] | None = Field(default=None, min_length=1, max_length=1000)
    all: bool = False

    @model_validator(mode="after")
    def _one_of(self) -> BulkSyncRequest:
        if (self.device_ids is None) == (not self.all):
            raise ValueError("give either device_ids or all: true")
        return self


class SyncRunRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    sync_id: uuid.UUID = Field(validation_alias="id")
    device_id: uuid.UUID
    connection_id: uuid.UUID | None
    sync_type: str
    status: str
    attempt: int
    retry_of: uuid.UUID | None
    bulk_id: uuid.UUID | None
    requested_by: str
    data_types: list[str]
    not_before: datetime | None
    start_time: datetime | None
    end_time: datetime | None
    duration_seconds: float | None
    records_processed: int
    records_synced: int
    records_failed: int
    error_message: str | None
    error_details: dict[str, Any] | None
    created_at: datetime


class BulkSkipped(BaseModel):
    device_id: uuid.UUID
    reason: str
    sync_id: uuid.UUID | None = None


class BulkSyncRead(BaseModel):
    bulk_id: uuid.UUID
    runs: list[SyncRunRead]
    skipped: list[BulkSkipped]


class DeviceSyncStatus(BaseModel):
    device_id: uuid.UUID
    device_name: str
    connector: str
    connection_id: uuid.UUID | None
    #: The connection's status (``active``, ``auth_required``, ``revoked``…); None for
    #: a device fed by uploads.
    connection_status: str | None = None
    vendor_device_id: str | None
    auto_sync: bool
    sync_interval_minutes: int
    sync_historical_days: int
    sync_status: str
    last_sync: datetime | None
    next_sync: datetime | None
    failures: int
    #: Its queued, waiting or running run, if any.
    open_runs: list[SyncRunRead]
