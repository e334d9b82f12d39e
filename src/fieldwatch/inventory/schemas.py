from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from fieldwatch.core.schemas import StrictModel
from fieldwatch.devices.lifecycle import DeviceStatus


class _Body(StrictModel):
    notes: str | None = Field(default=None, max_length=2000)
    # Seed 001 clients send the target status along with the action; it must match.
    status: DeviceStatus | None = None


class DeployRequest(_Body):
    location: str = Field(min_length=1, max_length=200, description="Where the device goes")


class RecallRequest(_Body):
    location: str | None = Field(
        default=None, max_length=200, description="The warehouse it returns to"
    )


class MaintenanceRequest(_Body):
    location: str | None = Field(default=None, max_length=200, description="The workshop")


class ReserveRequest(_Body):
    location: str | None = Field(default=None, max_length=200)


class RetireRequest(_Body):
    pass


class StatusChange(StrictModel):
    status: DeviceStatus
    location: str | None = Field(default=None, max_length=200)
    notes: str | None = Field(default=None, max_length=2000)


class DeviceLogRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    device_id: uuid.UUID
    action: str
    old_status: str | None
    new_status: str | None
    performed_by: uuid.UUID | None
    actor: str | None
    notes: str | None
    request_id: str | None
    changes: dict[str, Any]
    created_at: datetime


class StatusBreakdown(BaseModel):
    count: int
    by_type: dict[str, int]
    by_location: dict[str, int]


class InventorySummary(BaseModel):
    total: int
    by_status: dict[DeviceStatus, int]
    breakdown: dict[DeviceStatus, StatusBreakdown]


class ImportRowResult(BaseModel):
    row: int = Field(description="1-based position of the row among the data rows")
    line: int | None = Field(default=None, description="CSV only: the row's line in the file")
    status: str = Field(description="created | updated | unchanged | error")
    device_id: uuid.UUID | None = None
    serial_number: str | None = None
    errors: list[dict[str, Any]] = Field(default_factory=list)


class ImportResult(BaseModel):
    dry_run: bool
    total: int
    created: int
    updated: int
    unchanged: int
    failed: int
    rows: list[ImportRowResult]


class BulkOutcome(BaseModel):
    """What a lifecycle action done on several devices did to one of them."""

    device_id: uuid.UUID
    name: str | None = Field(default=None, description="None when no such device is here")
    serial_number: str | None = None
    done: bool
    status: DeviceStatus | None = Field(default=None, description="The status it has now")
    detail: str | None = Field(default=None, description="Why it was refused")
    allowed_statuses: list[DeviceStatus] = Field(default_factory=list)
