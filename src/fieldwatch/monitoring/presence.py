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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fieldwatch.core.batching import Batcher
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


@dataclass(slots=True)
class _Change:
    """Transitions asked for by one caller, waiting for the presence writer."""

    workspace_id: uuid.UUID
    device_ids: list[uuid.UUID]
    connectivity: str
    now: datetime
    reason: str
    overdue_only: bool

    def joins(self, other: _Change) -> bool:
        """Written together with ``other`` (at the later time of the two). Sweeps are
        batches already and compare deadlines with their own time: never merged."""
        return (
            not self.overdue_only
            and not other.overdue_only
            and (self.workspace_id, self.connectivity, self.reason)
            == (other.workspace_id, other.connectivity, other.reason)
        )


def _runs(changes: list[_Change]) -> list[list[_Change]]:
    """Consecutive changes that can be written together; the order is kept (a device's
    online-then-offline stays in that order)."""
    runs: list[list[_Change]] = []
    for change in changes:
        if runs and runs[-1][-1].joins(change):
            runs[-1].append(change)
        else:
            runs.append([change])
    return runs


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
        self._changes = Batcher(self._write_changes, name="presence-writer")
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
        await self._changes.drain()  # the transitions asked for so far
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
                    by_workspace: dict[uuid.UUID, list[tuple[DevicePresence, str]]] = {}
                    for presence, type_ in rows:
                        by_workspace.setdefault(presence.workspace_id, []).append((presence, type_))
                    for workspace_id, found in by_workspace.items():
                        timeouts = await self._timeouts(session, workspace_id, {
                            p.device_id: (t, p.heartbeat_interval_s) for p, t in found
                        })  # fmt: skip
                        for presence, _type in found:
                            seen = presence.last_seen or presence.changed_at
                            seeds.append(Seed(presence.device_id, workspace_id, seen,
                                              timeouts[presence.device_id]))  # fmt: skip
                await self.state.load(seeds)
            self._loaded = True

    async def _timeouts(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        devices: dict[uuid.UUID, tuple[str, int | None]],
    ) -> dict[uuid.UUID, timedelta]:
        """Each device's offline timeout, from (its type, its own heartbeat interval):
        the device's interval, else its type's, else the workspace default; × tolerance
        (the type's, else the default). One query for all of them."""
        types = {t for t, _i in devices.values()}
        per_type: dict[str, tuple[int, float]] = {}
        if types:
            rows = await session.execute(
                select(
                    DeviceTypeSettings.type,
                    DeviceTypeSettings.heartbeat_interval_s,
                    DeviceTypeSettings.offline_tolerance,
                ).where(
                    DeviceTypeSettings.workspace_id == workspace_id,
                    DeviceTypeSettings.type.in_(types),
                )
            )
            per_type = {t: (i, tol) for t, i, tol in rows.tuples()}
        default = (float(self.settings.heartbeat_interval_s), self.settings.offline_tolerance)
        out = {}
        for device_id, (type_, own_interval) in devices.items():
            interval, tolerance = per_type.get(type_, default)
            out[device_id] = timedelta(seconds=(own_interval or interval) * tolerance)
        return out

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
            rows = await session.execute(
                select(Device.id, Device.type, DevicePresence.heartbeat_interval_s)
                .join(DevicePresence, DevicePresence.device_id == Device.id, isouter=True)
                .where(Device.id.in_(ids))
            )
            timeouts = await self._timeouts(
                session, workspace_id, {d: (t, i) for d, t, i in rows.tuples()}
            )
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
        won. Transitions are written in group commits, in the order they were asked for:
        a burst of devices connecting (a fleet coming back after an outage) costs a few
        transactions, not one each."""
        change = _Change(
            workspace_id, list(dict.fromkeys(device_ids)), connectivity, now, reason,
            overdue_only,
        )  # fmt: skip
        return await self._changes.submit(change)

    async def _write_changes(self, batch: list[_Change]) -> list[list[uuid.UUID]]:
        events: list[Event] = []
        won_by_run: list[set[uuid.UUID]] = []
        runs = _runs(batch)
        async with self.sessionmaker() as session:
            for run in runs:
                first = run[0]
                ids = list(dict.fromkeys(d for c in run for d in c.device_ids))
                now = max(c.now for c in run)
                won = await self._apply(
                    session, first.workspace_id, ids, first.connectivity, now,
                    first.reason, first.overdue_only, events,
                )  # fmt: skip
                won_by_run.append(won)
            await session.commit()
        for event in events:
            await self.bus.publish(event)
        return [
            [d for d in change.device_ids if d in won]
            for run, won in zip(runs, won_by_run, strict=True)
            for change in run
        ]

    async def _apply(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        device_ids: list[uuid.UUID],
        connectivity: str,
        now: datetime,
        reason: str,
        overdue_only: bool,
        events: list[Event],
    ) -> set[uuid.UUID]:
        """Record the transitions this process wins (in ``session``; the caller commits).
        The claim (atomic in the state, so that of several processes exactly one wins
        each transition) comes before the writes; a device the claim skips (a concurrent
        request, another process, or a device heard from again before the sweep got to
        it) is left alone."""
        rows = await session.execute(
            select(Device.id, Device.type).where(
                Device.workspace_id == workspace_id, Device.id.in_(device_ids)
            )
        )
        types = {device_id: type_ for device_id, type_ in rows.tuples()}
        presences = {
            p.device_id: p
            for p in await session.scalars(
                select(DevicePresence).where(DevicePresence.device_id.in_(list(types)))
            )
        }
        timeouts = await self._timeouts(session, workspace_id, {
            d: (t, presences[d].heartbeat_interval_s if d in presences else None)
            for d, t in types.items()
        })  # fmt: skip
        won = await self.state.claim(workspace_id, timeouts, connectivity, now, overdue_only)
        seen_at: list[dict[str, object]] = []
        for device_id in device_ids:
            if device_id not in won:
                continue
            presence = presences.get(device_id)
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
                seen_at.append({"device": device_id, "seen": last_seen})
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
        if seen_at:  # one statement, executed for them all
            devices = cast(Table, Device.__table__)
            await session.execute(
                update(devices)
                .where(devices.c.id == bindparam("device"))
                .values(last_seen=bindparam("seen")),
                seen_at,
            )
        return set(won)

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
