"""All SQL of Garmin's callbacks: the connections of a Garmin user (in every
workspace), the devices they feed, the summaries seen already."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from fieldwatch.integrations.models import Connection, DeviceSync, VendorRecord

KIND = "garmin"


class GarminRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def connections(self, user_id: str) -> Sequence[Connection]:
        """Every workspace's connection of Garmin user ``user_id``."""
        rows = await self.session.scalars(
            select(Connection).where(Connection.connector == KIND,
                                     Connection.external_user_id == user_id)
            .order_by(Connection.created_at)
        )  # fmt: skip
        return rows.all()

    async def device_syncs(self, connection_id: uuid.UUID) -> Sequence[DeviceSync]:
        rows = await self.session.scalars(
            select(DeviceSync).where(DeviceSync.connection_id == connection_id)
        )
        return rows.all()

    async def seen(self, connection_id: uuid.UUID, kind: str, ids: Iterable[str]) -> set[str]:
        """Which of the summaries ``ids`` of type ``kind`` were stored already."""
        wanted = list(set(ids))
        if not wanted:
            return set()
        rows = await self.session.scalars(
            select(VendorRecord.vendor_id).where(
                VendorRecord.connection_id == connection_id, VendorRecord.data_type == kind,
                VendorRecord.vendor_id.in_(wanted))
        )  # fmt: skip
        return set(rows.all())

    async def remember(self, record: VendorRecord) -> bool:
        """Note a summary as stored (False: another request noted it first)."""
        try:
            async with self.session.begin_nested():
                self.session.add(record)
        except IntegrityError:
            return False
        return True

    async def revoke(self, connection_id: uuid.UUID, reason: str, now: datetime) -> None:
        """The user ended the grant at Garmin: the connection is revoked, its tokens
        forgotten."""
        await self.session.execute(
            update(Connection).where(Connection.id == connection_id)
            .values(status="revoked", status_reason=reason, credentials=None,
                    token_expires_at=None, updated_at=now)
        )  # fmt: skip
