"""All SQL of device groups and their members. Every query is scoped to one workspace."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from fieldwatch.db.paging import scalars_page
from fieldwatch.devices.models import Device, DeviceGroup, DeviceGroupMember


class DeviceGroupRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, workspace_id: uuid.UUID, group_id: uuid.UUID) -> DeviceGroup | None:
        return await self.session.scalar(
            select(DeviceGroup).where(
                DeviceGroup.id == group_id, DeviceGroup.workspace_id == workspace_id
            )
        )

    async def by_name(self, workspace_id: uuid.UUID, name: str) -> DeviceGroup | None:
        return await self.session.scalar(
            select(DeviceGroup).where(
                DeviceGroup.workspace_id == workspace_id, DeviceGroup.name == name
            )
        )

    async def page(
        self, workspace_id: uuid.UUID, *, limit: int, offset: int
    ) -> tuple[Sequence[DeviceGroup], int]:
        stmt = (
            select(DeviceGroup)
            .where(DeviceGroup.workspace_id == workspace_id)
            .order_by(DeviceGroup.name, DeviceGroup.id)
        )
        return await scalars_page(self.session, stmt, limit=limit, offset=offset)

    async def all(self, workspace_id: uuid.UUID) -> Sequence[DeviceGroup]:
        stmt = select(DeviceGroup).where(DeviceGroup.workspace_id == workspace_id)
        return (await self.session.scalars(stmt.order_by(DeviceGroup.name))).all()

    async def member_counts(self, group_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, int]:
        ids = list(group_ids)
        if not ids:
            return {}
        rows = await self.session.execute(
            select(DeviceGroupMember.group_id, func.count())
            .where(DeviceGroupMember.group_id.in_(ids))
            .group_by(DeviceGroupMember.group_id)
        )
        found = {group_id: int(n) for group_id, n in rows.tuples()}
        return {group_id: found.get(group_id, 0) for group_id in ids}

    def add(self, group: DeviceGroup) -> None:
        self.session.add(group)

    async def delete(self, group: DeviceGroup) -> None:
        await self.session.execute(
            delete(DeviceGroupMember).where(DeviceGroupMember.group_id == group.id)
        )
        await self.session.delete(group)

    async def devices_in_workspace(
        self, workspace_id: uuid.UUID, device_ids: Sequence[uuid.UUID]
    ) -> set[uuid.UUID]:
        """Those of ``device_ids`` that are devices of ``workspace_id``."""
        rows = await self.session.scalars(
            select(Device.id).where(Device.workspace_id == workspace_id, Device.id.in_(device_ids))
        )
        return set(rows)

    async def members_among(
        self, group_id: uuid.UUID, device_ids: Sequence[uuid.UUID]
    ) -> set[uuid.UUID]:
        rows = await self.session.scalars(
            select(DeviceGroupMember.device_id).where(
                DeviceGroupMember.group_id == group_id,
                DeviceGroupMember.device_id.in_(device_ids),
            )
        )
        return set(rows)

    async def add_members(self, group_id: uuid.UUID, device_ids: Sequence[uuid.UUID]) -> None:
        if device_ids:
            rows = [{"group_id": group_id, "device_id": d} for d in device_ids]
            await self.session.execute(insert(DeviceGroupMember), rows)

    async def remove_member(self, group_id: uuid.UUID, device_id: uuid.UUID) -> bool:
        result = await self.session.execute(
            delete(DeviceGroupMember).where(
                DeviceGroupMember.group_id == group_id, DeviceGroupMember.device_id == device_id
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]
