"""All SQL of the device registry and its log. Every query is scoped to one workspace."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fieldwatch.auth.principal import Principal
from fieldwatch.db.paging import scalars_page
from fieldwatch.devices.listing import DeviceFilter, filter_clauses
from fieldwatch.devices.log import log_row
from fieldwatch.devices.models import AgentToken, Device, DeviceLog, ProvisioningKey
from fieldwatch.monitoring.models import DevicePresence

SORTABLE = {"name", "type", "status", "location", "serial_number", "created_at", "updated_at"}
#: From this offset on, a page is found in two steps: the ids of its rows first, by the
#: sort's index alone (an index-only scan on PostgreSQL: the rows skipped are never read),
#: then those rows. The last of 100,000 devices: ~40 → ~14 ms on PostgreSQL.
DEEP_OFFSET = 1000


class DeviceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(
        self, workspace_id: uuid.UUID, device_id: uuid.UUID, *, for_update: bool = False
    ) -> Device | None:
        stmt = select(Device).where(Device.id == device_id, Device.workspace_id == workspace_id)
        if for_update:
            stmt = stmt.with_for_update()
        return await self.session.scalar(stmt)

    async def workspace_of(self, device_id: uuid.UUID) -> uuid.UUID | None:
        return await self.session.scalar(select(Device.workspace_id).where(Device.id == device_id))

    async def by_serial(self, workspace_id: uuid.UUID, serial: str) -> Device | None:
        return await self.session.scalar(
            select(Device).where(
                Device.workspace_id == workspace_id, Device.serial_number == serial
            )
        )

    async def by_serials(
        self, workspace_id: uuid.UUID, serials: Iterable[str]
    ) -> dict[str, Device]:
        found: dict[str, Device] = {}
        chunk: list[str] = []
        for serial in serials:
            chunk.append(serial)
            if len(chunk) == 1000:
                found.update(await self._by_serials(workspace_id, chunk))
                chunk = []
        if chunk:
            found.update(await self._by_serials(workspace_id, chunk))
        return found

    async def _by_serials(self, workspace_id: uuid.UUID, serials: list[str]) -> dict[str, Device]:
        rows = await self.session.scalars(
            select(Device).where(
                Device.workspace_id == workspace_id, Device.serial_number.in_(serials)
            )
        )
        return {d.serial_number: d for d in rows if d.serial_number is not None}

    async def _where(self, workspace_id: uuid.UUID, flt: DeviceFilter) -> list[ColumnElement[bool]]:
        return [Device.workspace_id == workspace_id, *await filter_clauses(self.session, flt)]

    async def page(
        self,
        workspace_id: uuid.UUID,
        flt: DeviceFilter,
        *,
        limit: int,
        offset: int,
        sort: str = "-created_at",
    ) -> tuple[Sequence[Device], int]:
        column_name = sort.lstrip("-")
        if column_name not in SORTABLE:
            raise ValueError(f"cannot sort devices by {column_name!r}")
        column = getattr(Device, column_name)
        if flt.q:  # a search finds its few rows by the trigram indexes, then sorts them:
            column = func.coalesce(column, column)  # not by walking the (created_at, id) index
        order = column.desc() if sort.startswith("-") else column.asc()
        tiebreak = Device.id.desc() if sort.startswith("-") else Device.id.asc()
        where = await self._where(workspace_id, flt)
        if offset < DEEP_OFFSET:
            stmt = select(Device).where(*where)
        else:  # skip the offset in the index alone, then read the page's rows
            ids = (
                select(Device.id)
                .where(*where)
                .order_by(order, tiebreak)
                .limit(limit)
                .offset(offset)
                .subquery()
            )
            stmt, offset = select(Device).join(ids, Device.id == ids.c.id), 0
        stmt = stmt.order_by(order, tiebreak).limit(limit).offset(offset)
        rows = await self.session.scalars(stmt)
        return rows.all(), await self._count(workspace_id, flt, where)

    async def _count(
        self, workspace_id: uuid.UUID, flt: DeviceFilter, where: list[ColumnElement[bool]]
    ) -> int:
        """How many devices match. Filtered by connectivity alone, from the presence index
        (a presence row belongs to a device of its workspace), without a join."""
        if flt.connectivity and not replace(flt, connectivity=None).clauses():
            online = await self._scalar_count(
                select(func.count())
                .select_from(DevicePresence)
                .where(
                    DevicePresence.workspace_id == workspace_id,
                    DevicePresence.connectivity == "online",
                )
            )
            if flt.connectivity == "online":
                return online
            everything = [Device.workspace_id == workspace_id]
            return await self._count(workspace_id, DeviceFilter(), everything) - online
        return await self._scalar_count(select(func.count()).select_from(Device).where(*where))

    async def _scalar_count(self, stmt: Select[Any]) -> int:
        return int(await self.session.scalar(stmt) or 0)

    async def stream(
        self, workspace_id: uuid.UUID, flt: DeviceFilter, batch: int = 1000
    ) -> AsyncIterator[Sequence[Device]]:
        """All matching devices, in id order, a batch at a time (keyset pagination)."""
        where = await self._where(workspace_id, flt)
        last: uuid.UUID | None = None
        while True:
            stmt = select(Device).where(*where).order_by(Device.id).limit(batch)
            if last is not None:
                stmt = stmt.where(Device.id > last)
            rows = (await self.session.scalars(stmt)).all()
            if not rows:
                return
            yield rows
            last = rows[-1].id

    def add(self, device: Device) -> None:
        self.session.add(device)

    async def insert_many(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self.session.execute(insert(Device), rows)

    async def delete(self, device: Device) -> None:
        await self.session.delete(device)

    async def flush(self) -> None:
        await self.session.flush()


class DeviceLogRepository:
    """Append and read the device log. There is intentionally no update or delete."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def record(
        self,
        device: Device,
        action: str,
        actor: Principal | None,
        *,
        old_status: str | None = None,
        new_status: str | None = None,
        notes: str | None = None,
        changes: dict[str, Any] | None = None,
        actor_label: str | None = None,
    ) -> None:
        """One entry for ``device``, written with the next flush (``actor_label``: who
        acted when it was no principal, e.g. the device itself)."""
        self.session.add(
            DeviceLog(
                **log_row(
                    workspace_id=device.workspace_id,
                    device_id=device.id,
                    action=action,
                    actor=actor,
                    old_status=old_status,
                    new_status=new_status,
                    notes=notes,
                    changes=changes,
                    actor_label=actor_label,
                )
            )
        )

    async def append_many(self, rows: list[dict[str, Any]]) -> None:
        """Many entries at once, from ``log.log_row`` values (bulk import)."""
        if rows:
            await self.session.execute(insert(DeviceLog), rows)

    async def for_device(
        self, workspace_id: uuid.UUID, device_id: uuid.UUID, *, limit: int, before_id: int | None
    ) -> Sequence[DeviceLog]:
        stmt = (
            select(DeviceLog)
            .where(DeviceLog.workspace_id == workspace_id, DeviceLog.device_id == device_id)
            .order_by(DeviceLog.id.desc())
            .limit(limit)
        )
        if before_id is not None:
            stmt = stmt.where(DeviceLog.id < before_id)
        return (await self.session.scalars(stmt)).all()

    async def status_changes(
        self, workspace_id: uuid.UUID, limit: int
    ) -> Sequence[tuple[DeviceLog, str | None]]:
        """The workspace's latest lifecycle status changes, newest first, each with its
        device's name (None once the device is purged)."""
        rows = await self.session.execute(
            select(DeviceLog, Device.name)
            .join(Device, Device.id == DeviceLog.device_id, isouter=True)
            .where(
                DeviceLog.workspace_id == workspace_id,
                DeviceLog.old_status.is_not(None),
                DeviceLog.new_status.is_not(None),
                DeviceLog.old_status != DeviceLog.new_status,
            )
            .order_by(DeviceLog.created_at.desc(), DeviceLog.id.desc())
            .limit(limit)
        )
        return list(rows.tuples())


class AgentTokenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, token: AgentToken) -> None:
        self.session.add(token)

    async def page(
        self, device_id: uuid.UUID, *, limit: int, offset: int
    ) -> tuple[Sequence[AgentToken], int]:
        stmt = (
            select(AgentToken)
            .where(AgentToken.device_id == device_id)
            .order_by(AgentToken.created_at, AgentToken.id)
        )
        return await scalars_page(self.session, stmt, limit=limit, offset=offset)

    async def by_ids(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, AgentToken]:
        found = await self.session.scalars(select(AgentToken).where(AgentToken.id.in_(ids)))
        return {t.id: t for t in found}

    async def get(self, device_id: uuid.UUID, token_id: uuid.UUID) -> AgentToken | None:
        return await self.session.scalar(
            select(AgentToken).where(AgentToken.id == token_id, AgentToken.device_id == device_id)
        )

    async def by_digests(self, digests: Sequence[str]) -> dict[str, tuple[AgentToken, Device]]:
        if not digests:
            return {}
        rows = await self.session.execute(
            select(AgentToken, Device)
            .join(Device, Device.id == AgentToken.device_id)
            .where(AgentToken.token_digest.in_(digests))
        )
        return {token.token_digest: (token, device) for token, device in rows.tuples()}

    async def revoke_all(self, device_id: uuid.UUID, at: datetime) -> int:
        result = await self.session.execute(
            update(AgentToken)
            .where(AgentToken.device_id == device_id, AgentToken.revoked_at.is_(None))
            .values(revoked_at=at)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def delete_for_device(self, device_id: uuid.UUID) -> None:
        await self.session.execute(delete(AgentToken).where(AgentToken.device_id == device_id))

    async def touch(self, token_ids: Iterable[uuid.UUID], at: datetime) -> None:
        await self.session.execute(
            update(AgentToken)
            .where(AgentToken.id.in_(list(token_ids)))
            .values(last_used_at=at)
            .execution_options(synchronize_session=False)
        )


class ProvisioningKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, key: ProvisioningKey) -> None:
        self.session.add(key)

    async def page(
        self, workspace_id: uuid.UUID, *, limit: int, offset: int
    ) -> tuple[Sequence[ProvisioningKey], int]:
        stmt = (
            select(ProvisioningKey)
            .where(ProvisioningKey.workspace_id == workspace_id)
            .order_by(ProvisioningKey.created_at, ProvisioningKey.id)
        )
        return await scalars_page(self.session, stmt, limit=limit, offset=offset)

    async def get(self, workspace_id: uuid.UUID, key_id: uuid.UUID) -> ProvisioningKey | None:
        return await self.session.scalar(
            select(ProvisioningKey).where(
                ProvisioningKey.id == key_id, ProvisioningKey.workspace_id == workspace_id
            )
        )

    async def by_id(self, key_id: uuid.UUID) -> ProvisioningKey | None:
        return await self.session.get(ProvisioningKey, key_id)

    async def by_digest(self, key_digest: str) -> ProvisioningKey | None:
        return await self.session.scalar(
            select(ProvisioningKey).where(ProvisioningKey.key_digest == key_digest)
        )

    async def revoke_provisioned_tokens(self, device_id: uuid.UUID, at: datetime) -> int:
        """Revoke the device's tokens that earlier registrations issued."""
        result = await self.session.execute(
            update(AgentToken)
            .where(
                AgentToken.device_id == device_id,
                AgentToken.revoked_at.is_(None),
                AgentToken.name == PROVISIONED_TOKEN_NAME,
            )
            .values(revoked_at=at)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


#: The name of the agent tokens that self-registration issues.
PROVISIONED_TOKEN_NAME = "self-registered"
