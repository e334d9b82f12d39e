"""Presence: which devices are online.

Any message from a device marks it seen. A device is offline once it has been silent
for longer than its heartbeat interval × tolerance (per device, else per device type,
else the workspace default of 60 s × 3). Transitions are kept in the connection history
and published as ``device.presence_changed`` events.

State lives in this process (a dict) with the database as the record: transitions are
written at once; plain "still here" updates of ``last_seen`` are written at most every
``FLUSH_S`` seconds per device, so a chatty device does not cost a write per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fieldwatch.core.clock import utcnow
from fieldwatch.core.events import Event, EventBus
from fieldwatch.core.settings import Settings
from fieldwatch.devices.models import Device
from fieldwatch.monitoring.models import ConnectivityEvent, DevicePresence, DeviceTypeSettings

log = logging.getLogger(__name__)

PRESENCE_CHANGED = "device.presence_changed"
FLUSH_S = 15.0
ONLINE, OFFLINE = "online", "offline"


@dataclass(slots=True)
class _State:
    workspace_id: uuid.UUID
    connectivity: str
    last_seen: datetime
    written: datetime  # last_seen as last written to the database
    timeout: timedelta


class PresenceTracker:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        bus: EventBus,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.bus = bus
        self.clock = clock
        self._states: dict[uuid.UUID, _State] = {}
        self._loaded = False
        self._lock = asyncio.Lock()
        self._transitions = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        await self._load()
        if self._task is None:
            self._task = asyncio.create_task(self._sweeper(), name="presence-sweeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(self.settings.presence_sweep_s)
            try:
                await self.sweep()
                await self.flush()
            except Exception:
                log.exception("presence sweep failed")

    async def _load(self) -> None:
        """Pick up the devices the database says are online (after a restart)."""
        async with self._lock:
            if self._loaded:
                return
            async with self.sessionmaker() as session:
                rows = (
                    await session.execute(
                        select(DevicePresence, Device.type)
                        .join(Device, Device.id == DevicePresence.device_id)
                        .where(DevicePresence.connectivity == ONLINE)
                    )
                ).all()
                for presence, type_ in rows:
                    timeout = await self._timeout(
                        session, presence.workspace_id, type_, presence.heartbeat_interval_s
                    )
                    seen = presence.last_seen or presence.changed_at
                    self._states[presence.device_id] = _State(
                        presence.workspace_id, ONLINE, seen, seen, timeout
                    )
            self._loaded = True

    async def _timeout(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        device_type: str,
        device_interval: int | None,
    ) -> timedelta:
        interval = float(self.settings.heartbeat_interval_s)
        tolerance = self.settings.offline_tolerance
        per_type = await session.scalar(
            select(DeviceTypeSettings).where(
                DeviceTypeSettings.workspace_id == workspace_id,
                DeviceTypeSettings.type == device_type,
            )
        )
        if per_type is not None:
            interval, tolerance = per_type.heartbeat_interval_s, per_type.offline_tolerance
        if device_interval:
            interval = device_interval
        return timedelta(seconds=interval * tolerance)

    # --- what devices do -----------------------------------------------------------

    async def seen(
        self, workspace_id: uuid.UUID, device_ids: Iterable[uuid.UUID], reason: str = "message"
    ) -> None:
        """Devices sent something now."""
        await self._load()
        now = self.clock()
        newly: list[uuid.UUID] = []
        for device_id in device_ids:
            state = self._states.get(device_id)
            if state is None or state.connectivity != ONLINE:
                newly.append(device_id)
            else:
                state.last_seen = max(state.last_seen, now)
        if newly:
            await self._transition(workspace_id, newly, ONLINE, now, reason)

    async def gone(self, workspace_id: uuid.UUID, device_id: uuid.UUID, reason: str) -> None:
        """A device's connection ended for sure (a last will, a closed session)."""
        await self._load()
        state = self._states.get(device_id)
        if state is not None and state.connectivity == ONLINE:
            await self._transition(workspace_id, [device_id], OFFLINE, self.clock(), reason)

    def connectivity(self, device_id: uuid.UUID) -> str:
        state = self._states.get(device_id)
        return state.connectivity if state is not None else OFFLINE

    def last_seen(self, device_id: uuid.UUID) -> datetime | None:
        state = self._states.get(device_id)
        return state.last_seen if state is not None else None

    def online_ids(self, workspace_id: uuid.UUID) -> set[uuid.UUID]:
        return {
            d for d, s in self._states.items()
            if s.workspace_id == workspace_id and s.connectivity == ONLINE
        }  # fmt: skip

    def forget(self, device_id: uuid.UUID) -> None:
        self._states.pop(device_id, None)

    async def reload_timeouts(self, workspace_id: uuid.UUID) -> None:
        """Heartbeat settings changed: recompute the offline timeouts of the workspace."""
        ids = [d for d, s in self._states.items() if s.workspace_id == workspace_id]
        if not ids:
            return
        async with self.sessionmaker() as session:
            rows = await session.execute(
                select(Device.id, Device.type, DevicePresence.heartbeat_interval_s)
                .join(DevicePresence, DevicePresence.device_id == Device.id, isouter=True)
                .where(Device.id.in_(ids))
            )
            for device_id, type_, interval in rows.tuples():
                state = self._states.get(device_id)
                if state is not None:
                    state.timeout = await self._timeout(session, workspace_id, type_, interval)

    # --- transitions ---------------------------------------------------------------

    async def sweep(self, now: datetime | None = None) -> list[uuid.UUID]:
        """Mark devices offline that have been silent too long. Returns them."""
        now = now or self.clock()
        by_ws: dict[uuid.UUID, list[uuid.UUID]] = {}
        for device_id, state in list(self._states.items()):
            if state.connectivity == ONLINE and now - state.last_seen > state.timeout:
                by_ws.setdefault(state.workspace_id, []).append(device_id)
        gone: list[uuid.UUID] = []
        for workspace_id, ids in by_ws.items():
            await self._transition(workspace_id, ids, OFFLINE, now, "silent")
            gone.extend(ids)
        return gone

    async def _transition(
        self,
        workspace_id: uuid.UUID,
        device_ids: list[uuid.UUID],
        connectivity: str,
        now: datetime,
        reason: str,
    ) -> None:
        async with self._transitions:
            # Re-check under the lock: a concurrent request may have done it already.
            device_ids = [d for d in device_ids if self.connectivity(d) != connectivity]
            if device_ids:
                await self._apply(workspace_id, device_ids, connectivity, now, reason)

    async def _apply(
        self,
        workspace_id: uuid.UUID,
        device_ids: list[uuid.UUID],
        connectivity: str,
        now: datetime,
        reason: str,
    ) -> None:
        events: list[Event] = []
        async with self.sessionmaker() as session:
            devices = {
                d.id: d
                for d in (
                    await session.scalars(
                        select(Device).where(
                            Device.workspace_id == workspace_id, Device.id.in_(device_ids)
                        )
                    )
                ).all()
            }
            for device_id in device_ids:
                device = devices.get(device_id)
                if device is None:
                    continue
                presence = await session.get(DevicePresence, device_id)
                if presence is None:
                    presence = DevicePresence(device_id=device_id, workspace_id=workspace_id)
                    session.add(presence)
                state = self._states.get(device_id)
                last_seen = now if connectivity == ONLINE else (
                    state.last_seen if state else presence.last_seen)  # fmt: skip
                presence.connectivity = connectivity
                presence.changed_at = now
                presence.last_seen = last_seen
                session.add(
                    ConnectivityEvent(
                        workspace_id=workspace_id, device_id=device_id,
                        connectivity=connectivity, reason=reason, at=now,
                    )
                )  # fmt: skip
                if last_seen is not None:
                    await session.execute(
                        update(Device)
                        .where(Device.id == device_id)
                        .values(last_seen=last_seen)
                        .execution_options(synchronize_session=False)
                    )
                timeout = await self._timeout(
                    session, workspace_id, device.type, presence.heartbeat_interval_s
                )
                self._states[device_id] = _State(
                    workspace_id, connectivity, last_seen or now, last_seen or now, timeout
                )
                events.append(
                    Event(
                        type=PRESENCE_CHANGED,
                        workspace_id=workspace_id,
                        subject_id=device_id,
                        payload={
                            "device_id": str(device_id),
                            "connectivity": connectivity,
                            "reason": reason,
                            "last_seen": last_seen.isoformat() if last_seen else None,
                        },
                        occurred_at=now,
                    )
                )
            await session.commit()
        for event in events:
            await self.bus.publish(event)

    async def flush(self) -> None:
        """Write last_seen of online devices whose stored value is more than FLUSH_S old."""
        stale = [
            (d, s) for d, s in self._states.items()
            if (s.last_seen - s.written).total_seconds() >= FLUSH_S
        ]  # fmt: skip
        if not stale:
            return
        async with self.sessionmaker() as session:
            for device_id, state in stale:
                await session.execute(
                    update(DevicePresence)
                    .where(DevicePresence.device_id == device_id)
                    .values(last_seen=state.last_seen)
                )
                await session.execute(
                    update(Device)
                    .where(Device.id == device_id)
                    .values(last_seen=state.last_seen)
                    .execution_options(synchronize_session=False)
                )
                state.written = state.last_seen
            await session.commit()
