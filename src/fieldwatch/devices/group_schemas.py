"""API shapes of device groups: a static group lists its members, a dynamic group holds a
filter over the registry (``GroupFilter``) evaluated whenever it is used."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fieldwatch.core.schemas import StrictModel
from fieldwatch.devices.lifecycle import DeviceStatus
from fieldwatch.devices.schemas import clean_tags

GroupKind = Literal["static", "dynamic"]
#: The most device ids one request adds to a static group.
MAX_MEMBERS_PER_REQUEST = 1000


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class GroupFilter(StrictModel):
    """Which devices a dynamic group holds: those matching every field given. A list
    (``status``, ``firmware_version``) matches any of its values; ``tags`` all of them."""

    type: str | None = Field(default=None, min_length=1, max_length=100)
    location: str | None = Field(default=None, min_length=1, max_length=200)
    status: list[DeviceStatus] | None = Field(
        default=None, min_length=1, description="Lifecycle status, one or a list"
    )
    firmware_version: list[str] | None = Field(
        default=None, min_length=1, max_length=100, description="One version or a list"
    )
    hardware_version: str | None = Field(default=None, min_length=1, max_length=50)
    tags: list[str] | None = Field(default=None, min_length=1, description="All of these")

    @field_validator("status", "firmware_version", "tags", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return _as_list(v)

    @field_validator("firmware_version")
    @classmethod
    def _versions(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return None
        out = list(dict.fromkeys(item.strip() for item in v))
        if any(not item or len(item) > 50 for item in out):
            raise ValueError("a firmware version is 1 to 50 characters")
        return out

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else clean_tags(v)

    @model_validator(mode="after")
    def _not_empty(self) -> GroupFilter:
        if not self.stored():
            raise ValueError("a dynamic group's filter needs at least one field")
        return self

    def stored(self) -> dict[str, Any]:
        """The filter as the group row keeps it (JSON, the fields given only)."""
        return self.model_dump(mode="json", exclude_none=True)


class DeviceGroupCreate(StrictModel):
    name: str = Field(min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=2000)
    kind: GroupKind = "static"
    filter: GroupFilter | None = Field(default=None, description="Required for a dynamic group")

    @model_validator(mode="after")
    def _filter_fits_kind(self) -> DeviceGroupCreate:
        if self.kind == "dynamic" and self.filter is None:
            raise ValueError("a dynamic group needs a filter")
        if self.kind == "static" and self.filter is not None:
            raise ValueError("a static group has members, not a filter")
        return self


class DeviceGroupUpdate(StrictModel):
    """Only the fields sent change. ``filter`` replaces a dynamic group's filter; a group
    keeps its kind."""

    name: str | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=2000)
    filter: GroupFilter | None = None

    @model_validator(mode="before")
    @classmethod
    def _kind_is_fixed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "kind" in data:
            raise ValueError("a group keeps its kind; create a new group instead")
        return data

    @model_validator(mode="after")
    def _name_not_null(self) -> DeviceGroupUpdate:
        if "name" in self.model_fields_set and self.name is None:
            raise ValueError("'name' cannot be null")
        return self


class DeviceGroupRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    description: str | None
    kind: GroupKind
    filter: dict[str, Any] | None
    member_count: int | None = Field(description="A static group's members; null if dynamic")
    created_by: str
    created_at: datetime
    updated_at: datetime


class MembersAdd(StrictModel):
    device_ids: list[uuid.UUID] = Field(min_length=1, max_length=MAX_MEMBERS_PER_REQUEST)


MemberOutcome = Literal["added", "already_member", "not_found"]


class MemberResult(BaseModel):
    device_id: uuid.UUID
    outcome: MemberOutcome


class MembersAdded(BaseModel):
    """What happened to each device id asked for: another workspace's device is
    ``not_found`` like an unknown id."""

    added: int
    results: list[MemberResult]
