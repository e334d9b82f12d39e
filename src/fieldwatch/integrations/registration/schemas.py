"""The seed's registration shape (``POST /api/v1/devices`` with ``integration_type``,
``credentials``, ``sync_settings``) and its answer."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr

from fieldwatch.core.schemas import StrictModel
from fieldwatch.integrations.sync.schemas import SyncSettings

#: Fields only the seed's shape has: a body with any of them is a registration.
SEED_FIELDS = frozenset({"integration_type", "credentials", "sync_settings"})


def is_registration(body: Any) -> bool:
    return isinstance(body, dict) and bool(SEED_FIELDS & body.keys())


class VendorCredentials(StrictModel):
    """A vendor token set; sealed at rest, never returned nor logged."""

    access_token: SecretStr = Field(min_length=1, max_length=8192)
    refresh_token: SecretStr | None = Field(default=None, max_length=8192)
    expires_at: datetime | None = None


class DeviceRegistration(StrictModel):
    device_type: str = Field(min_length=1, max_length=100)
    device_name: str = Field(min_length=1, max_length=200)
    manufacturer: str | None = Field(default=None, max_length=100)
    model: str | None = Field(default=None, max_length=100)
    serial_number: str | None = Field(default=None, min_length=1, max_length=100)
    firmware_version: str | None = Field(default=None, max_length=50)
    capabilities: list[str] = Field(default_factory=list, max_length=200)
    integration_type: str = Field(
        default="api", max_length=50, description="api (a vendor cloud), bluetooth, wifi, …"
    )
    connector: str | None = Field(
        default=None, max_length=40,
        description="The vendor connector (default: the device type's prefix, oura_ring → oura)",
    )  # fmt: skip
    credentials: VendorCredentials | None = None
    sync_settings: SyncSettings = Field(default_factory=SyncSettings)


class RegistrationRead(BaseModel):
    device_id: uuid.UUID
    status: Literal["registered"] = "registered"
    sync_status: str | None
    last_sync: datetime | None
    next_sync: datetime | None
    created_at: datetime
    connector: str | None = None
    connection_id: uuid.UUID | None = None
