"""API shapes of the command ledger and device configuration."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CommandStatus = Literal[
    "pending", "sent", "acknowledged", "completed", "failed", "expired", "cancelled"
]

MAX_TTL_S = 30 * 24 * 3600


class CommandCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
    params: dict[str, Any] = Field(default_factory=dict)
    ttl_s: int = Field(default=3600, ge=1, le=MAX_TTL_S)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)


class CommandTransitionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    #: A ledger status, or the state of a command kind of its own (firmware updates:
    #: downloading, installing, …).
    from_status: str | None
    to_status: str
    at: datetime
    attempt: int
    detail: str | None


class CommandRead(BaseModel):
    model_config = ConfigDict(from_attributes=True, validate_by_name=True)

    command_id: uuid.UUID = Field(validation_alias="id")
    device_id: uuid.UUID
    command: str
    params: dict[str, Any]
    status: CommandStatus
    idempotency_key: str | None
    ttl_s: int
    expires_at: datetime
    attempts: int
    max_attempts: int
    transport: str | None
    result: dict[str, Any] | None
    reason: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    acknowledged_at: datetime | None
    finished_at: datetime | None


class CommandDetail(CommandRead):
    transitions: list[CommandTransitionRead]


class ConfigDifference(BaseModel):
    path: str
    desired: Any = None
    reported: Any = None
    change: Literal["added", "changed", "removed"]


class ConfigRead(BaseModel):
    device_id: uuid.UUID
    desired: dict[str, Any]
    desired_version: int
    desired_at: datetime | None
    reported: dict[str, Any] | None
    reported_version: int | None
    reported_at: datetime | None
    pushed_version: int | None
    pushed_at: datetime | None
    in_sync: bool
    difference: list[ConfigDifference]
