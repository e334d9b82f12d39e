"""Shapes of the privacy API."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from fieldwatch.core.schemas import StrictModel


class ConsentUpdate(StrictModel):
    data_types: list[str] = Field(
        max_length=100, description="The data types (metric names) the account holder shares"
    )


class ConsentRead(BaseModel):
    connection_id: uuid.UUID
    connector: str
    data_types: list[str]


class DisconnectRead(BaseModel):
    connection_id: uuid.UUID
    status: str
    #: Whether the vendor revoked the grant (False: it has no revoke endpoint or failed).
    revoked_at_vendor: bool
    devices: list[uuid.UUID]
    purged: bool
    readings_deleted: int


class HealthAccessRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    device_id: uuid.UUID
    actor: str
    action: str
    what: str
    at: datetime
