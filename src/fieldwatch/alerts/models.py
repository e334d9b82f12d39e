"""Alert rules and alerts.

An alert is active or cleared, and acknowledged or not (four states). At most one alert
is active per (rule, device): a partial unique index enforces it, so a repeat of the
condition updates the open alert (count, last value) instead of opening another.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from fieldwatch.core.clock import utcnow
from fieldwatch.db.base import Base, IdMixin, JSONType, TimestampMixin
from fieldwatch.devices.models import Device


class AlertRule(IdMixin, TimestampMixin, Base):
    __tablename__ = "alert_rules"
    __table_args__ = (Index(None, "workspace_id", "kind"),)

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), default="threshold")  # threshold | offline
    metric: Mapped[str | None] = mapped_column(String(100))
    operator: Mapped[str | None] = mapped_column(String(2))
    threshold: Mapped[float | None] = mapped_column(Float)
    duration_s: Mapped[int] = mapped_column(Integer, default=0)
    severity: Mapped[str] = mapped_column(String(10))
    scope: Mapped[str] = mapped_column(String(12), default="all")  # all | device | device_type
    scope_value: Mapped[str | None] = mapped_column(String(100))
    enabled: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )


class Alert(IdMixin, Base):
    __tablename__ = "alerts"
    __table_args__ = (
        Index(
            "uq_alerts_one_active",
            "rule_id",
            "device_id",
            unique=True,
            postgresql_where=text("status = 'active'"),
            sqlite_where=text("status = 'active'"),
        ),
        Index(None, "workspace_id", "status", "started_at"),
        Index(None, "device_id", "status"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    rule_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("alert_rules.id", ondelete="SET NULL")
    )
    rule_name: Mapped[str] = mapped_column(String(200))
    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    severity: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(8), default="active")  # active | cleared
    acknowledged: Mapped[bool] = mapped_column(default=False)
    metric: Mapped[str | None] = mapped_column(String(100))
    message: Mapped[str] = mapped_column(Text)
    count: Mapped[int] = mapped_column(Integer, default=1)
    first_value: Mapped[float | None] = mapped_column(Float)
    last_value: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_triggered_at: Mapped[datetime] = mapped_column(default=utcnow)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(200))
    cleared_at: Mapped[datetime | None]
    cleared_by: Mapped[str | None] = mapped_column(String(200))
    clear_reason: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)

    #: Loaded with the alert (one join), for the device's name, serial, type and location.
    device: Mapped[Device] = relationship(lazy="joined", innerjoin=True)
