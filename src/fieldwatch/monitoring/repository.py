"""All SQL of the monitoring domain."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fieldwatch.db.upsert import upsert
from fieldwatch.devices.models import Device
from fieldwatch.monitoring.models import (
    ConnectivityEvent,
    DevicePresence,
    DeviceRateLimit,
    DeviceTypeRateLimit,
    DeviceTypeSettings,
)
from fieldwatch.monitoring.presence_state import OFFLINE, ONLINE
from fieldwatch.telemetry.models import Rollup1m, Series


class MonitoringRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def presence(self, device_id: uuid.UUID) -> DevicePresence | None:
        return await self.session.get(DevicePresence, device_id)

    async def history(
        self, device_id: uuid.UUID, limit: int, before_id: int | None
    ) -> Sequence[ConnectivityEvent]:
        stmt = (
            select(ConnectivityEvent)
            .where(ConnectivityEvent.device_id == device_id)
            .order_by(ConnectivityEvent.id.desc())
            .limit(limit)
        )
        if before_id is not None:
            stmt = stmt.where(ConnectivityEvent.id < before_id)
        return (await self.session.scalars(stmt)).all()

    async def type_settings(self, workspace_id: uuid.UUID, type_: str) -> DeviceTypeSettings | None:
        return await self.session.get(DeviceTypeSettings, (workspace_id, type_))

    async def set_type_settings(
        self, workspace_id: uuid.UUID, type_: str, **values: Any
    ) -> DeviceTypeSettings:
        key = {"workspace_id": workspace_id, "type": type_}
        await upsert(self.session, DeviceTypeSettings, {**key, **values}, list(key))
        found = await self.session.get(
            DeviceTypeSettings, (workspace_id, type_), populate_existing=True
        )
        assert found is not None
        return found

    async def set_heartbeat_interval(
        self, device_id: uuid.UUID, workspace_id: uuid.UUID, interval: int | None
    ) -> None:
        """The device's own heartbeat interval; its presence row is made if missing."""
        values = {"device_id": device_id, "workspace_id": workspace_id}
        await upsert(
            self.session,
            DevicePresence,
            {**values, "connectivity": "offline", "heartbeat_interval_s": interval},
            ["device_id"],
            update=["heartbeat_interval_s"],
        )

    async def rate_limits(
        self, workspace_id: uuid.UUID
    ) -> tuple[dict[str, tuple[int, int]], dict[uuid.UUID, tuple[int, int]]]:
        """The workspace's rate limits: per type and per device, (messages, window_s)."""
        types = await self.session.execute(
            select(DeviceTypeRateLimit.type, DeviceTypeRateLimit.messages,
                   DeviceTypeRateLimit.window_s)
            .where(DeviceTypeRateLimit.workspace_id == workspace_id)
        )  # fmt: skip
        devices = await self.session.execute(
            select(DeviceRateLimit.device_id, DeviceRateLimit.messages, DeviceRateLimit.window_s)
            .where(DeviceRateLimit.workspace_id == workspace_id)
        )  # fmt: skip
        return (
            {t: (m, w) for t, m, w in types.tuples()},
            {d: (m, w) for d, m, w in devices.tuples()},
        )

    async def set_type_rate_limit(
        self, workspace_id: uuid.UUID, type_: str, messages: int, window_s: int
    ) -> None:
        values = {"workspace_id": workspace_id, "type": type_}
        await upsert(
            self.session, DeviceTypeRateLimit,
            {**values, "messages": messages, "window_s": window_s}, list(values),
        )  # fmt: skip

    async def set_device_rate_limit(
        self, device_id: uuid.UUID, workspace_id: uuid.UUID, messages: int, window_s: int
    ) -> None:
        await upsert(
            self.session, DeviceRateLimit,
            {"device_id": device_id, "workspace_id": workspace_id, "messages": messages,
             "window_s": window_s},
            ["device_id"],
        )  # fmt: skip

    async def type_rate_limit(
        self, workspace_id: uuid.UUID, type_: str
    ) -> DeviceTypeRateLimit | None:
        return await self.session.get(
            DeviceTypeRateLimit, (workspace_id, type_), populate_existing=True
        )

    async def device_rate_limit(self, device_id: uuid.UUID) -> DeviceRateLimit | None:
        return await self.session.get(DeviceRateLimit, device_id, populate_existing=True)

    async def delete_type_rate_limit(self, workspace_id: uuid.UUID, type_: str) -> None:
        await self.session.execute(
            delete(DeviceTypeRateLimit).where(
                DeviceTypeRateLimit.workspace_id == workspace_id, DeviceTypeRateLimit.type == type_
            )
        )

    async def delete_device_rate_limit(self, device_id: uuid.UUID) -> None:
        await self.session.execute(
            delete(DeviceRateLimit).where(DeviceRateLimit.device_id == device_id)
        )

    async def device_type(self, device_id: uuid.UUID) -> str | None:
        return await self.session.scalar(select(Device.type).where(Device.id == device_id))

    def add(self, obj: Any) -> None:
        self.session.add(obj)

    async def latest_metrics(
        self, device_ids: Sequence[uuid.UUID], metrics: Sequence[str]
    ) -> dict[uuid.UUID, dict[str, Series]]:
        out: dict[uuid.UUID, dict[str, Series]] = {}
        if not device_ids:
            return out
        rows = await self.session.scalars(
            select(Series).where(Series.device_id.in_(device_ids), Series.metric.in_(metrics))
        )
        for s in rows:
            out.setdefault(s.device_id, {})[s.metric] = s
        return out

    async def devices(self, workspace_id: uuid.UUID) -> Sequence[tuple[uuid.UUID, str, str]]:
        """(id, status, type) of every device of the workspace."""
        rows = await self.session.execute(
            select(Device.id, Device.status, Device.type).where(Device.workspace_id == workspace_id)
        )
        return list(rows.tuples())

    async def went_offline(
        self, workspace_id: uuid.UUID, since: datetime, limit: int
    ) -> tuple[Sequence[tuple[uuid.UUID, str, datetime, datetime | None]], int]:
        """Devices of the workspace offline now whose last transition (to offline) is at
        or after ``since``, latest first: (id, name, changed_at, last_seen), and how many
        there are."""
        recent = (
            DevicePresence.workspace_id == workspace_id,
            DevicePresence.connectivity == OFFLINE,
            DevicePresence.changed_at >= since,
        )
        rows = await self.session.execute(
            select(Device.id, Device.name, DevicePresence.changed_at,
                   func.coalesce(DevicePresence.last_seen, Device.last_seen))
            .join(Device, Device.id == DevicePresence.device_id)
            .where(*recent)
            .order_by(DevicePresence.changed_at.desc(), Device.id)
            .limit(limit)
        )  # fmt: skip
        total = await self.session.scalar(
            select(func.count()).select_from(DevicePresence).where(*recent)
        )
        return list(rows.tuples()), int(total or 0)

    async def readings_per_minute(
        self, workspace_id: uuid.UUID, since: datetime, until: datetime
    ) -> int:
        total = await self.session.scalar(
            select(func.coalesce(func.sum(Rollup1m.count), 0))
            .join(Series, Series.id == Rollup1m.series_id)
            .where(
                Series.workspace_id == workspace_id,
                Rollup1m.bucket >= since,
                Rollup1m.bucket < until,
            )
        )
        return int(total or 0)

    async def metric_stats(
        self, workspace_id: uuid.UUID, since: datetime, until: datetime
    ) -> Sequence[tuple[str, int, float, float, float]]:
        """Per metric over the window: (metric, count, sum, min, max) from minute rollups."""
        rows = await self.session.execute(
            select(
                Series.metric,
                func.sum(Rollup1m.count),
                func.sum(Rollup1m.sum),
                func.min(Rollup1m.min),
                func.max(Rollup1m.max),
            )
            .join(Series, Series.id == Rollup1m.series_id)
            .where(
                Series.workspace_id == workspace_id,
                Rollup1m.bucket >= since,
                Rollup1m.bucket < until,
            )
            .group_by(Series.metric)
            .order_by(Series.metric)
        )
        return [(m, int(c), float(s), float(lo), float(hi)) for m, c, s, lo, hi in rows.tuples()]


class PresenceRepository:
    """The SQL of presence: the online devices, what their offline timeouts come from,
    transitions and ``last_seen``."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def online(self) -> list[tuple[DevicePresence, str]]:
        """The presence rows marked online, each with its device's type (all workspaces)."""
        rows = await self.session.execute(
            select(DevicePresence, Device.type)
            .join(Device, Device.id == DevicePresence.device_id)
            .where(DevicePresence.connectivity == ONLINE)
        )
        return list(rows.tuples())

    async def type_heartbeats(
        self, workspace_id: uuid.UUID, types: set[str]
    ) -> dict[str, tuple[int, float]]:
        """(heartbeat interval, offline tolerance) of the device types that have settings."""
        if not types:
            return {}
        rows = await self.session.execute(
            select(
                DeviceTypeSettings.type,
                DeviceTypeSettings.heartbeat_interval_s,
                DeviceTypeSettings.offline_tolerance,
            ).where(
                DeviceTypeSettings.workspace_id == workspace_id,
                DeviceTypeSettings.type.in_(types),
            )
        )
        return {t: (i, tol) for t, i, tol in rows.tuples()}

    async def types_and_intervals(
        self, device_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, tuple[str, int | None]]:
        """Each device's type and its own heartbeat interval (if it has one)."""
        rows = await self.session.execute(
            select(Device.id, Device.type, DevicePresence.heartbeat_interval_s)
            .join(DevicePresence, DevicePresence.device_id == Device.id, isouter=True)
            .where(Device.id.in_(device_ids))
        )
        return {d: (t, i) for d, t, i in rows.tuples()}

    async def device_types(
        self, workspace_id: uuid.UUID, device_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, str]:
        """The type of each of these devices that exists in the workspace."""
        rows = await self.session.execute(
            select(Device.id, Device.type).where(
                Device.workspace_id == workspace_id, Device.id.in_(device_ids)
            )
        )
        return dict(rows.tuples().all())

    async def presences(self, device_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, DevicePresence]:
        rows = await self.session.scalars(
            select(DevicePresence).where(DevicePresence.device_id.in_(device_ids))
        )
        return {p.device_id: p for p in rows}

    def add(self, row: DevicePresence | ConnectivityEvent) -> None:
        self.session.add(row)

    async def set_devices_last_seen(self, seen: list[dict[str, object]]) -> None:
        """``devices.last_seen`` from ``{"device": id, "seen": at}`` items, in one
        statement executed for them all."""
        if not seen:
            return
        devices = cast(Table, Device.__table__)
        await self.session.execute(
            update(devices)
            .where(devices.c.id == bindparam("device"))
            .values(last_seen=bindparam("seen")),
            seen,
        )

    async def write_last_seen(self, seen: Sequence[tuple[uuid.UUID, datetime]]) -> None:
        """Devices still online: their ``last_seen`` in their presence rows and device rows,
        as two executemany UPDATEs by primary key (pipelined by the driver: a flush of
        thousands of devices is a few round trips, not two per device)."""
        if not seen:
            return
        rows = [{"p_id": d, "p_ts": ts} for d, ts in seen]
        tables: tuple[tuple[Table, str], ...] = (
            (cast(Table, DevicePresence.__table__), "device_id"),
            (cast(Table, Device.__table__), "id"),
        )
        for table, key in tables:
            # The tables, not the ORM: a device row's optimistic lock (its version) is
            # for edits, not for this bookkeeping.
            await self.session.execute(
                update(table)
                .where(table.c[key] == bindparam("p_id"))
                .values(last_seen=bindparam("p_ts")),
                rows,
            )
