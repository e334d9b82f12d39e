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
work on the in-process state. The database writes are in ``presence_writer``, the SQL
in ``repository.PresenceRepository``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fieldwatch.core.clock import utcnow
from fieldwatch.core.events import EventBus
from fieldwatch.core.settings import Settings
from fieldwatch.monitoring.models import DevicePresence
from fieldwatch.monitoring.presence_redis import RedisPresence
from fieldwatch.monitoring.presence_state import (
    OFFLINE,
    ONLINE,
    MemoryPresence,
    PresenceState,
    Seed,
)
from fieldwatch.monitoring.presence_writer import (
    PRESENCE_CHANGED,
    Change,
    PresenceWriter,
    offline_timeouts,
)
from fieldwatch.monitoring.repository import PresenceRepository

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["FLUSH_S", "OFFLINE", "ONLINE", "PRESENCE_CHANGED", "PresenceTracker"]

log = logging.getLogger(__name__)

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
        self.writer = PresenceWriter(settings, sessionmaker, bus, self.state)
        self._background: set[asyncio.Task[None]] = set()

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        await self._load()

    async def stop(self) -> None:
        await self.writer.drain()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self.flush()

    async def sweep_and_flush(self) -> None:
        """The periodic job (every ``presence_sweep_s``): ``sweep``, then ``flush``. In
        Redis it is shared (one process per tick); in memory, each process's own."""
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
                await self.state.load(await self._seeds())
            self._loaded = True

    async def _seeds(self) -> list[Seed]:
        """The devices the database says are online, with their offline timeouts."""
        seeds: list[Seed] = []
        async with self.sessionmaker() as session:
            repo = PresenceRepository(session)
            by_workspace: dict[uuid.UUID, list[tuple[DevicePresence, str]]] = {}
            for presence, type_ in await repo.online():
                by_workspace.setdefault(presence.workspace_id, []).append((presence, type_))
            for workspace_id, found in by_workspace.items():
                timeouts = await offline_timeouts(repo, self.settings, workspace_id, {
                    p.device_id: (t, p.heartbeat_interval_s) for p, t in found
                })  # fmt: skip
                seeds += [
                    Seed(p.device_id, workspace_id, p.last_seen or p.changed_at,
                         timeouts[p.device_id])
                    for p, _type in found
                ]  # fmt: skip
        return seeds

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
        async with self.sessionmaker() as session:
            repo = PresenceRepository(session)
            devices = await repo.types_and_intervals(ids)
            timeouts = await offline_timeouts(repo, self.settings, workspace_id, devices)
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
        """Record these transitions; returns the devices whose transition this process
        won. Transitions are written in group commits (``PresenceWriter``), in the order
        they were asked for."""
        change = Change(
            workspace_id, list(dict.fromkeys(device_ids)), connectivity, now, reason,
            overdue_only,
        )  # fmt: skip
        return await self.writer.submit(change)

    async def flush(self) -> None:
        """Write last_seen of online devices whose stored value is more than FLUSH_S old."""
        stale = await self.state.take_unwritten(timedelta(seconds=FLUSH_S))
        if stale:
            await self.writer.write_last_seen(stale)
