"""Commands, their transitions, and device configuration (desired and reported).

The database is the source of truth: a command's state survives restarts, and every
process claims a delivery with a conditional UPDATE, so two processes never send the
same attempt.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fieldwatch.core.clock import utcnow
from fieldwatch.db.base import Base, IdMixin, JSONType

PENDING = "pending"
SENT = "sent"
ACKNOWLEDGED = "acknowledged"
COMPLETED = "completed"
FAILED = "failed"
EXPIRED = "expired"
CANCELLED = "cancelled"

#: States a command can still leave (towards completion, expiry or cancellation).
OPEN_STATES = (PENDING, SENT, ACKNOWLEDGED)
FINAL_STATES = (COMPLETED, FAILED, EXPIRED, CANCELLED)
STATES = OPEN_STATES + FINAL_STATES


class Command(IdMixin, Base):
    __tablename__ = "commands"
    __table_args__ = (
        UniqueConstraint("device_id", "idempotency_key"),
        Index(None, "device_id", "status", "created_at"),
        Index(None, "status", "next_attempt_at"),
        Index(None, "workspace_id", "created_at"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    command: Mapped[str] = mapped_column(String(100))
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(12), default=PENDING)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    ttl_s: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    #: When a sent, unacknowledged command is due for a resend.
    next_attempt_at: Mapped[datetime | None]
    transport: Mapped[str | None] = mapped_column(String(16))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class CommandTransition(IdMixin, Base):
    """One kept, timestamped state change of a command."""

    __tablename__ = "command_transitions"
    __table_args__ = (Index(None, "command_id", "at"),)

    command_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("commands.id", ondelete="CASCADE"))
    from_status: Mapped[str | None] = mapped_column(String(12))
    to_status: Mapped[str] = mapped_column(String(12))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    detail: Mapped[str | None] = mapped_column(Text)


class DeviceConfig(Base):
    """A device's desired configuration and the version it last reported applied."""

    __tablename__ = "device_configs"

    device_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    desired: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    desired_version: Mapped[int] = mapped_column(Integer, default=0)
    desired_at: Mapped[datetime] = mapped_column(default=utcnow)
    desired_by: Mapped[str | None] = mapped_column(String(200))
    reported_version: Mapped[int | None] = mapped_column(Integer)
    reported_at: Mapped[datetime | None]
    pushed_version: Mapped[int | None] = mapped_column(Integer)
    pushed_at: Mapped[datetime | None]


class ConfigVersion(IdMixin, Base):
    """Every desired document ever set, so the reported version's document is known.
    Its id is the seed 003 ``config_id`` of the push."""

    __tablename__ = "config_versions"
    __table_args__ = (UniqueConstraint("device_id", "version"),)

    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(200))
