from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from fieldwatch.core.schemas import StrictModel
from fieldwatch.devices.lifecycle import DeviceStatus

#: Fields that exist on a device but that no create/update body may set.
READ_ONLY_FIELDS = {
    "id": "it is assigned by the server",
    "workspace_id": "a device stays in its workspace",
    "status": "change it with PUT /devices/{id}/status or a lifecycle action",
    "deploy_date": "it is set by PUT /devices/{id}/deploy",
    "last_seen": "it is set when the device talks to the server",
    "created_at": "it is set by the server",
    "updated_at": "it is set by the server",
    "version": "it is set by the server",
}

Text100 = Field(default=None, max_length=100)


def _clean_capabilities(value: list[str]) -> list[str]:
    out: list[str] = []
    for item in value:
        item = item.strip()
        if not item:
            raise ValueError("capabilities may not contain empty strings")
        if len(item) > 100:
            raise ValueError("a capability is at most 100 characters")
        if item not in out:
            out.append(item)
    return out


#: How many tags a device may carry, and the longest tag.
MAX_TAGS, MAX_TAG_LENGTH = 20, 50


def clean_tags(value: list[str]) -> list[str]:
    """Tags as given, trimmed; refused when empty, too long, repeated, holding ``;`` (the
    CSV cell's separator) or more than ``MAX_TAGS``."""
    if len(value) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags")
    out: list[str] = []
    for raw in value:
        tag = raw.strip()
        if not tag:
            raise ValueError("a tag may not be empty")
        if len(tag) > MAX_TAG_LENGTH:
            raise ValueError(f"a tag is at most {MAX_TAG_LENGTH} characters: {tag[:20]!r}…")
        if ";" in tag:
            raise ValueError(f"a tag may not contain ';': {tag!r}")
        if tag in out:
            raise ValueError(f"tag {tag!r} is given twice")
        out.append(tag)
    return out


class _DeviceFields(StrictModel):
    model_config = ConfigDict(populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _reject_read_only(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if key in READ_ONLY_FIELDS:
                    raise PydanticCustomError(
                        "read_only_field",
                        "'{field}' cannot be set here: {why}",
                        {"field": key, "why": READ_ONLY_FIELDS[key]},
                    )
        return data

    @field_validator("capabilities", check_fields=False)
    @classmethod
    def _caps(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _clean_capabilities(v)

    @field_validator("tags", check_fields=False)
    @classmethod
    def _tags(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else clean_tags(v)


class DeviceCreate(_DeviceFields):
    name: str = Field(
        min_length=1, max_length=200, validation_alias=AliasChoices("name", "device_name")
    )
    type: str = Field(
        min_length=1, max_length=100, validation_alias=AliasChoices("type", "device_type")
    )
    serial_number: str | None = Field(default=None, min_length=1, max_length=100)
    manufacturer: str | None = Text100
    model: str | None = Text100
    firmware_version: str | None = Field(default=None, max_length=50)
    hardware_version: str | None = Field(default=None, max_length=50)
    capabilities: list[str] = Field(default_factory=list, max_length=200)
    tags: list[str] = Field(default_factory=list, description="Free labels, at most 20")
    specs: dict[str, Any] = Field(default_factory=dict)
    location: str | None = Field(default=None, max_length=200)
    purchase_date: date | None = None
    last_maintenance: date | None = None


class DeviceUpdate(_DeviceFields):
    """Partial update: only the fields present change. ``null`` clears an optional field."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    type: str | None = Field(default=None, min_length=1, max_length=100)
    serial_number: str | None = Field(default=None, min_length=1, max_length=100)
    manufacturer: str | None = Text100
    model: str | None = Text100
    firmware_version: str | None = Field(default=None, max_length=50)
    hardware_version: str | None = Field(default=None, max_length=50)
    capabilities: list[str] | None = Field(default=None, max_length=200)
    tags: list[str] | None = Field(default=None, description="Replaces the tags; null clears")
    specs: dict[str, Any] | None = None
    location: str | None = Field(default=None, max_length=200)
    purchase_date: date | None = None
    last_maintenance: date | None = None

    @model_validator(mode="after")
    def _required_not_null(self) -> DeviceUpdate:
        for name in ("name", "type"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"'{name}' cannot be null")
        return self

    def changes(self) -> dict[str, Any]:
        data = self.model_dump(exclude_unset=True)
        for key, empty in (("capabilities", []), ("tags", []), ("specs", {})):
            if key in data and data[key] is None:
                data[key] = empty
        return data


class DeviceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    type: str
    serial_number: str | None
    manufacturer: str | None
    model: str | None
    firmware_version: str | None
    hardware_version: str | None
    capabilities: list[str]
    tags: list[str]
    specs: dict[str, Any]
    location: str | None
    status: DeviceStatus
    purchase_date: date | None
    deploy_date: date | None
    last_maintenance: date | None
    last_seen: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int


Connectivity = Literal["online", "offline"]


class DeviceListItem(DeviceRead):
    """A device in a list, with its presence as ``GET /devices/{id}/status`` tells it."""

    connectivity: Connectivity = Field(description="online | offline (never seen: offline)")
    last_seen: datetime | None = Field(description="When the device was last heard from")

    @classmethod
    def of(cls, device: Any, connectivity: str, last_seen: datetime | None) -> DeviceListItem:
        read = DeviceRead.model_validate(device)
        return cls.model_validate(
            {**read.__dict__, "connectivity": connectivity, "last_seen": last_seen}
        )


class DeviceSummary(BaseModel):
    """Who a device is, in what refers to it (alerts, their events, webhooks)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    serial_number: str | None
    type: str
    location: str | None


class StatusChangeRead(BaseModel):
    """One lifecycle status change from the device log."""

    device_id: uuid.UUID
    device_name: str | None = Field(description="null once the device is purged")
    old_status: DeviceStatus
    new_status: DeviceStatus
    action: str
    actor: str | None
    at: datetime


MQTT_TOKEN = (
    "The token is for MQTT: with FIELDWATCH_MQTT_DEVICE_LOGINS=on_request only such tokens "
    "log in to the MQTT broker; with all (the default) every token does"
)


class AgentTokenCreate(StrictModel):
    name: str | None = Field(default=None, max_length=100)
    expires_at: AwareDatetime | None = Field(
        default=None, description="With a timezone, e.g. 2027-01-01T00:00:00Z"
    )
    mqtt: bool = Field(default=False, description=MQTT_TOKEN)


class AgentTokenRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    device_id: uuid.UUID
    name: str | None
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    mqtt: bool = Field(description=MQTT_TOKEN)


class AgentTokenCreated(BaseModel):
    id: uuid.UUID
    token: str = Field(description="The device credential. Shown only in this response.")
    created_at: datetime
    device_id: uuid.UUID
    prefix: str
    expires_at: datetime | None
    mqtt: bool = Field(description=MQTT_TOKEN)


class DeviceSelf(BaseModel):
    """What a device learns about itself with its own token."""

    device_id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    type: str
    status: DeviceStatus
    token_id: uuid.UUID
    mqtt: bool = Field(description="This token was made for MQTT")


SERIAL_PATTERN = r"^[A-Za-z0-9._:-]{1,100}$"
ProvisionStatus = Literal["in_stock", "reserved", "deployed"]


class ProvisioningKeyCreate(StrictModel):
    name: str = Field(min_length=1, max_length=100)
    initial_status: ProvisionStatus = Field(
        default="in_stock", description="The status of devices that register with this key"
    )


class ProvisioningKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    prefix: str
    initial_status: ProvisionStatus
    created_at: datetime
    rotated_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    devices_registered: int


class ProvisioningKeyCreated(ProvisioningKeyRead):
    key: str = Field(description="The provisioning key. Shown only in this response.")


class ProvisionRequest(BaseModel):
    """Seed 003's register payload, plus the device's own identifier (its serial)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    serial_number: str = Field(
        pattern=SERIAL_PATTERN,
        validation_alias=AliasChoices("serial_number", "device_id"),
        description="The device's own identifier (serial number, MAC, …)",
    )
    name: str = Field(min_length=1, max_length=200)
    type: str = Field(min_length=1, max_length=100)
    firmware_version: str | None = Field(default=None, max_length=50)
    hardware_version: str | None = Field(default=None, max_length=50)
    location: str | None = Field(default=None, max_length=200)
    capabilities: list[str] = Field(default_factory=list, max_length=200)
    mqtt: bool = Field(
        default=False,
        description="The device will use MQTT: its token is made for MQTT (always so for a "
        "registration over MQTT)",
    )


class ServerConfig(BaseModel):
    heartbeat_interval: int
    data_reporting_interval: int
    max_retry_attempts: int


class ProvisionResponse(BaseModel):
    status: Literal["registered"] = "registered"
    device_id: uuid.UUID
    serial_number: str
    auth_token: str = Field(description="The device's token. Keep it; it is shown once.")
    token_id: uuid.UUID
    created: bool = Field(description="True when this registration created the device")
    device_status: DeviceStatus
    timestamp: float
    server_config: ServerConfig
