"""Telemetry storage: series (one per device and metric), readings, rollups.

``readings`` is the narrow hot table: ``(series_id, ts, value, text_value, quality)``
with the primary key ``(series_id, ts)`` doing the deduplication. On PostgreSQL it is
range-partitioned by week on ``ts`` (see the migration and ``storage/partitions.py``).
Numbers and booleans live in ``value`` (booleans as 0/1, the series says which);
strings in ``text_value``.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from fieldwatch.core.clock import utcnow
from fieldwatch.db.base import Base

BigId = BigInteger().with_variant(Integer(), "sqlite")


class Series(Base):
    __tablename__ = "series"
    __table_args__ = (UniqueConstraint("device_id", "metric"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(8))  # number | bool | text
    unit: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_ts: Mapped[datetime | None]
    last_value: Mapped[float | None] = mapped_column(Float)
    last_text: Mapped[str | None] = mapped_column(Text)
    last_quality: Mapped[int | None] = mapped_column(SmallInteger)


class Reading(Base):
    __tablename__ = "readings"

    series_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    ts: Mapped[datetime] = mapped_column(primary_key=True)
    value: Mapped[float | None] = mapped_column(Float)
    text_value: Mapped[str | None] = mapped_column(Text)
    quality: Mapped[int | None] = mapped_column(SmallInteger)


class _Rollup:
    series_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    bucket: Mapped[datetime] = mapped_column(primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    sum: Mapped[float] = mapped_column(Float)
    min: Mapped[float] = mapped_column(Float)
    max: Mapped[float] = mapped_column(Float)


class Rollup1m(_Rollup, Base):
    """Per-minute count/sum/min/max of numeric readings, kept as readings arrive."""

    __tablename__ = "rollup_1m"


class Rollup1h(_Rollup, Base):
    """Per-hour count/sum/min/max of numeric readings, kept as readings arrive."""

    __tablename__ = "rollup_1h"


class WorkspaceTelemetrySettings(Base):
    """Per-workspace telemetry settings (retention)."""

    __tablename__ = "workspace_telemetry_settings"

    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    retention_days: Mapped[int] = mapped_column(Integer, default=365)
