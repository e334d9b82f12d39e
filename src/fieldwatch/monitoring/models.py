"""Presence: connectivity of devices and its history; heartbeat settings; rate limits
per device type and per device."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from fieldwatch.core.clock import utcnow
from fieldwatch.db.base import Base


class DevicePresence(Base):
    """The live side of a device: online/offline, when last heard, what it last said
    about itself (heartbeat fields)."""

    __tablename__ = "device_presence"
    #: The device list's connectivity filter: a workspace's online (or not) devices.
    __table_args__ = (Index(None, "workspace_id", "connectivity", "device_id"),)

    device_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    connectivity: Mapped[str] = mapped_column(String(8), default="offline")
    last_seen: Mapped[datetime | None]
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_interval_s: Mapped[int | None] = mapped_column(Integer)


class ConnectivityEvent(Base):
    """The connection history: every online/offline transition."""

    __tablename__ = "connectivity_events"
    __table_args__ = (Index(None, "device_id", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    workspace_id: Mapped[uuid.UUID]
    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    connectivity: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str | None] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class DeviceTypeSettings(Base):
    """Heartbeat expectations per device type in a workspace."""

    __tablename__ = "device_type_settings"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    type: Mapped[str] = mapped_column(String(100), primary_key=True)
    heartbeat_interval_s: Mapped[int] = mapped_column(Integer, default=60)
    offline_tolerance: Mapped[float] = mapped_column(default=3.0)


class DeviceTypeRateLimit(Base):
    """How many messages a device of this type may send per window (every transport),
    instead of the transport's default; a device's own limit comes first."""

    __tablename__ = "device_type_rate_limits"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    type: Mapped[str] = mapped_column(String(100), primary_key=True)
    messages: Mapped[int] = mapped_column(Integer)
    window_s: Mapped[int] = mapped_column(Integer)


class DeviceRateLimit(Base):
    """One device's own rate limit (over its type's and the default)."""

    __tablename__ = "device_rate_limits"

    device_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    messages: Mapped[int] = mapped_column(Integer)
    window_s: Mapped[int] = mapped_column(Integer)
