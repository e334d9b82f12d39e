from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from fieldwatch.core.clock import utcnow
from fieldwatch.db.base import Base, IdMixin, JSONType, TimestampMixin
from fieldwatch.devices.lifecycle import DeviceStatus


class Device(IdMixin, TimestampMixin, Base):
    __tablename__ = "devices"
    __table_args__ = (
        UniqueConstraint("workspace_id", "serial_number"),
        Index(None, "workspace_id", "status", "type", "location", "id"),  # covers a count
        Index(None, "workspace_id", "type"),
        Index(None, "workspace_id", "location"),
        Index(None, "workspace_id", "created_at", "id"),  # the list pages by (created_at, id)
        Index(None, "workspace_id", "name", "id"),  # … or by (name, id)
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(100))
    serial_number: Mapped[str | None] = mapped_column(String(100))
    manufacturer: Mapped[str | None] = mapped_column(String(100))
    model: Mapped[str | None] = mapped_column(String(100))
    firmware_version: Mapped[str | None] = mapped_column(String(50))
    hardware_version: Mapped[str | None] = mapped_column(String(50))
    capabilities: Mapped[list[str]] = mapped_column(JSONType, default=list)
    #: Free labels an operator gives (dynamic groups select on them).
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    specs: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    location: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default=DeviceStatus.in_stock.value)
    purchase_date: Mapped[date | None]
    deploy_date: Mapped[date | None]
    last_maintenance: Mapped[date | None]
    last_seen: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}


class DeviceGroup(IdMixin, Base):
    """A named set of devices: ``static`` (listed members) or ``dynamic`` (a filter over
    type, location, lifecycle status, firmware version and tags, evaluated when used)."""

    __tablename__ = "device_groups"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(8))
    #: The dynamic group's filter (None for a static group).
    filter: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeviceGroupMember(Base):
    """A device listed in a static group."""

    __tablename__ = "device_group_members"
    __table_args__ = (Index(None, "device_id"),)

    group_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("device_groups.id", ondelete="CASCADE"), primary_key=True
    )
    device_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


class AgentToken(IdMixin, Base):
    """A device credential. Only the SHA-256 digest of the token is stored."""

    __tablename__ = "agent_tokens"

    device_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), index=True
    )
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str | None] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    #: Created for MQTT: with ``mqtt_device_logins = "on_request"`` only these tokens log
    #: in to the MQTT broker. Tokens from before the column were all broker logins.
    mqtt: Mapped[bool] = mapped_column(default=False, server_default=true())


class ProvisioningKey(IdMixin, Base):
    """A workspace secret that lets devices register themselves (seed 003 register).
    Only the SHA-256 digest is stored; rotating replaces it."""

    __tablename__ = "provisioning_keys"
    __table_args__ = (Index(None, "workspace_id", "created_at"),)

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    key_digest: Mapped[str] = mapped_column(String(64), unique=True)
    initial_status: Mapped[str] = mapped_column(String(20), default="in_stock")
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    rotated_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    devices_registered: Mapped[int] = mapped_column(default=0)


class DeviceLog(Base):
    """The device audit trail (seed 001 ``t_device_logs``). Append-only: the database
    refuses UPDATE and DELETE on this table (triggers in the initial migration).

    There is deliberately no foreign key to ``devices``: the trail outlives a purge.
    """

    __tablename__ = "device_logs"
    __table_args__ = (
        Index(None, "device_id", "id"),
        Index(None, "workspace_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    workspace_id: Mapped[uuid.UUID]
    device_id: Mapped[uuid.UUID]
    action: Mapped[str] = mapped_column(String(50))
    old_status: Mapped[str | None] = mapped_column(String(20))
    new_status: Mapped[str | None] = mapped_column(String(20))
    performed_by: Mapped[uuid.UUID | None]
    actor: Mapped[str | None] = mapped_column(String(200))
    notes: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(64))
    changes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
