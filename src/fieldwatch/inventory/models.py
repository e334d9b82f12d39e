from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from fieldwatch.core.clock import utcnow
from fieldwatch.db.base import Base, JSONType


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
