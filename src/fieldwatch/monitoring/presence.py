"""Presence: which devices are online.

Any message from a device marks it seen. A device is offline once it has been silent
for longer than its heartbeat interval × tolerance (per device, else per device type,
else the workspace default of 60 s × 3). Transitions are kept in the connection history
and published as ``device.presence_changed`` events.

State lives in this process (a dict), or in Redis when ``FIELDWATCH_REDIS_URL`` is set so
that several processes share it (see ``presence_redis``), with the database as the
record: transitions are written at once, by the one process that won them; plain "still
here" updates of ``last_seen`` are written at most every ``FLUSH_S`` seconds per device,
so a chatty device does not cost a write per message.

With Redis the reads need I/O: use ``connectivity_of``, ``last_seen_of`` and
``online_in``; the synchronous ``connectivity``, ``last_seen`` and ``online_ids`` only
work on the in-process state.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fieldwatch.core.clock import utcnow
from fieldwatch.core.events import Event, EventBus
from fieldwatch.core.settings import Settings
from fieldwatch.core.tasks import cancel, every
from fieldwatch.devices.models import Device
from fieldwatch.monitoring.models import ConnectivityEvent, DevicePresence, DeviceTypeSettings
from fieldwatch.monitoring.presence_redis import RedisPresence
from fieldwatch.monitoring.presence_state import (
    OFFLINE,
    ONLINE,
    MemoryPresence,
    PresenceState,
    Seed,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["FLUSH_S", "OFFLINE", "ONLINE", "PRESENCE_CHANGED", "PresenceTracker"]

log = logging.getLogger(__name__)

PRESENCE_CHANGED = "device.presence_changed"
FLUSH_S = 15.0


class PresenceTracker:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        bus: EventBus,
        clock: Callable[[], datetime] = utcnow,
        redis: Redis | None = None,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.bus = bus
        self.clock = clock
        self._memory: MemoryPresence | None = None
        self.state: PresenceState
        if redis is None:
            self.state = self._memory = MemoryPresence()
        else:
            self.state = RedisPresence(redis, settings.redis_prefix, FLUSH_S)
        self._loaded = False
        self._lock = asyncio.Lock()
        self._transitions = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        await self._load()
        if self._task is None:
            self._task = every(
                self.settings.presence_sweep_s, self._sweep_once, name="presence-sweeper"
            )

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self.flush()

    async def _sweep_once(self) -> None:
        if self._memory is None:
            self._loaded = False  # check that Redis was not emptied meanwhile
        await self.sweep()
        await self.flush()

    async def _load(self) -> None:
        """Pick up the devices the database says are online (after a restart; with Redis,
        when Redis holds nothing for this installation yet)."""
        if self._loaded:
            return
        async with self._lock:
            if self._loaded:
                return
            if await self.state.needs_load():
                seeds: list[Seed] = []
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
                        seeds.append(Seed(presence.device_id, presence.workspace_id, seen, timeout))
                await self.state.load(seeds)
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
        newly = await self.state.touch(workspace_id, device_ids, now)
        if newly:
            await self._transition(workspace_id, newly, ONLINE, now, reason)

    async def gone(self, workspace_id: uuid.UUID, device_id: uuid.UUID, reason: str) -> None:
        """A device's connection ended for sure (a last will, a closed session)."""
        await self._load()
        if (await self.state.connectivity_of([device_id]))[device_id] == ONLINE:
            await self._transition(workspace_id, [device_id], OFFLINE, self.clock(), reason)

    # Reads. The async ones work with either state; the synchronous ones (kept for
    # callers on the in-process state) refuse to guess when the state is in Redis.

    async def connectivity_of(self, device_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        await self._load()
        return await self.state.connectivity_of(device_ids)

    async def last_seen_of(
        self, device_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, datetime | None]:
        await self._load()
        return await self.state.last_seen_of(device_ids)

    async def online_in(self, workspace_id: uuid.UUID) -> set[uuid.UUID]:
        await self._load()
        return await self.state.online_in(workspace_id)

    def _local(self) -> MemoryPresence:
        if self._memory is None:
            raise RuntimeError(
                "presence is in Redis: use connectivity_of, last_seen_of or online_in"
            )
        return self._memory

    def connectivity(self, device_id: uuid.UUID) -> str:
        return self._local().connectivity(device_id)

    def last_seen(self, device_id: uuid.UUID) -> datetime | None:
        return self._local().last_seen(device_id)

    def online_ids(self, workspace_id: uuid.UUID) -> set[uuid.UUID]:
        return self._local().online_ids(workspace_id)

    def forget(self, device_id: uuid.UUID) -> None:
        """The device is gone (deleted). With Redis the keys are removed in the background
        (``stop`` waits for it); ``forget_now`` does it in place."""
        if self._memory is not None:
            self._memory.states.pop(device_id, None)
            return
        task = asyncio.get_running_loop().create_task(self._forget(device_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _forget(self, device_id: uuid.UUID) -> None:
        try:
            await self.state.forget(device_id)
        except Exception:
            log.exception("forgetting the presence of a device failed")

    async def forget_now(self, device_id: uuid.UUID) -> None:
        await self.state.forget(device_id)

    async def reload_timeouts(self, workspace_id: uuid.UUID) -> None:
        """Heartbeat settings changed: recompute the offline timeouts of the workspace."""
        await self._load()
        ids = await self.state.tracked_in(workspace_id)
        if not ids:
            return
        timeouts: dict[uuid.UUID, timedelta] = {}
        async with self.sessionmaker() as session:
            rows = await session.execute(
                select(Device.id, Device.type, DevicePresence.heartbeat_interval_s)
                .join(DevicePresence, DevicePresence.device_id == Device.id, isouter=True)
                .where(Device.id.in_(ids))
            )
            for device_id, type_, interval in rows.tuples():
                timeouts[device_id] = await self._timeout(session, workspace_id, type_, interval)
        await self.state.set_timeouts(timeouts)

    # --- transitions ---------------------------------------------------------------

    async def sweep(self, now: datetime | None = None) -> list[uuid.UUID]:
        """Mark devices offline that have been silent too long. Returns them."""
        await self._load()
        now = now or self.clock()
        gone: list[uuid.UUID] = []
        for workspace_id, ids in (await self.state.overdue(now)).items():
            gone += await self._transition(
                workspace_id, ids, OFFLINE, now, "silent", overdue_only=True
            )
        return gone

    async def _transition(
        self,
        workspace_id: uuid.UUID,
        device_ids: list[uuid.UUID],
        connectivity: str,
        now: datetime,
        reason: str,
        overdue_only: bool = False,
    ) -> list[uuid.UUID]:
        async with self._transitions:
            return await self._apply(
                workspace_id, device_ids, connectivity, now, reason, overdue_only
            )

    async def _apply(
        self,
        workspace_id: uuid.UUID,
        device_ids: list[uuid.UUID],
        connectivity: str,
        now: datetime,
        reason: str,
        overdue_only: bool,
    ) -> list[uuid.UUID]:
        """Record the transitions this process wins. The claim (atomic in the state, so
        that of several processes exactly one wins each transition) comes before the
        writes; a device the claim skips (a concurrent request, another process, or a
        device heard from again before the sweep got to it) is left alone."""
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
            found: list[tuple[uuid.UUID, DevicePresence | None]] = []
            timeouts: dict[uuid.UUID, timedelta] = {}
            for device_id in device_ids:
                device = devices.get(device_id)
                if device is None:
                    continue
                presence = await session.get(DevicePresence, device_id)
                found.append((device_id, presence))
                timeouts[device_id] = await self._timeout(
                    session, workspace_id, device.type,
                    presence.heartbeat_interval_s if presence is not None else None,
                )  # fmt: skip
            won = await self.state.claim(workspace_id, timeouts, connectivity, now, overdue_only)
            for device_id, presence in found:
                if device_id not in won:
                    continue
                if presence is None:
                    presence = DevicePresence(device_id=device_id, workspace_id=workspace_id)
                    session.add(presence)
                last_seen = now if connectivity == ONLINE else (
                    won[device_id] or presence.last_seen)  # fmt: skip
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
        return [d for d, _ in found if d in won]

    async def flush(self) -> None:
        """Write last_seen of online devices whose stored value is more than FLUSH_S old."""
        stale = await self.state.take_unwritten(timedelta(seconds=FLUSH_S))
        if not stale:
            return
        async with self.sessionmaker() as session:
            for device_id, last_seen in stale:
                await session.execute(
                    update(DevicePresence)
                    .where(DevicePresence.device_id == device_id)
                    .values(last_seen=last_seen)
                )
                await session.execute(
                    update(Device)
                    .where(Device.id == device_id)
                    .values(last_seen=last_seen)
                    .execution_options(synchronize_session=False)
                )
            await session.commit()
