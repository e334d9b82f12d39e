"""Webhooks and their delivery queue (the ``webhook_deliveries`` table *is* the queue)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from fieldwatch.core.clock import utcnow
from fieldwatch.db.base import Base, IdMixin, JSONType

DEFAULT_EVENT_TYPES = ["alert.*"]

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"


def _default_event_types() -> list[str]:
    return list(DEFAULT_EVENT_TYPES)


class Webhook(IdMixin, Base):
    __tablename__ = "webhooks"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(String(500))
    #: fnmatch patterns of event types this webhook receives (``alert.*``).
    event_types: Mapped[list[str]] = mapped_column(JSONType, default=_default_event_types)
    #: The signing key. Unlike API keys and device tokens it is stored as is, not as a
    #: digest: the server needs the key itself to compute the HMAC of every delivery.
    #: It is shown only in the create and rotate-secret responses and never logged.
    secret: Mapped[str] = mapped_column(String(100))
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    last_delivery_at: Mapped[datetime | None]
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(1000))
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)


class WebhookDelivery(Base):
    """One event to send to one webhook; pending until delivered or given up."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index(None, "status", "next_attempt_at"),
        Index(None, "webhook_id", "id"),
        # The same event is queued once per webhook, however many processes receive it.
        UniqueConstraint("webhook_id", "event_id"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    webhook_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_id: Mapped[uuid.UUID]
    event_type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    occurred_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(10), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
