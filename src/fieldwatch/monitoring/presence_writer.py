"""Presence in the database: transitions and ``last_seen``.

Transitions are written in group commits, in the order they were asked for, each by
the one process that won it in the presence state (``claim``), and published as
``device.presence_changed`` events after the commit. ``last_seen`` of devices that stay
online is written lazily (``write_last_seen``, from the tracker's periodic flush).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fieldwatch.core.batching import Batcher
from fieldwatch.core.events import Event, EventBus
from fieldwatch.core.settings import Settings
from fieldwatch.monitoring.models import ConnectivityEvent, DevicePresence
from fieldwatch.monitoring.presence_state import ONLINE, PresenceState
from fieldwatch.monitoring.repository import PresenceRepository

PRESENCE_CHANGED = "device.presence_changed"
#: Devices whose ``last_seen`` one executemany writes.
LAST_SEEN_CHUNK = 1000


@dataclass(slots=True)
class Change:
    """Transitions asked for by one caller, waiting for the presence writer."""

    workspace_id: uuid.UUID
    device_ids: list[uuid.UUID]
    connectivity: str
    now: datetime
    reason: str
    overdue_only: bool

    def joins(self, other: Change) -> bool:
        """Written together with ``other`` (at the later time of the two). Sweeps are
        batches already and compare deadlines with their own time: never merged."""
        return (
            not self.overdue_only
            and not other.overdue_only
            and (self.workspace_id, self.connectivity, self.reason)
            == (other.workspace_id, other.connectivity, other.reason)
        )


def _runs(changes: list[Change]) -> list[list[Change]]:
    """Consecutive changes that can be written together; the order is kept (a device's
    online-then-offline stays in that order)."""
    runs: list[list[Change]] = []
    for change in changes:
        if runs and runs[-1][-1].joins(change):
            runs[-1].append(change)
        else:
            runs.append([change])
    return runs


async def offline_timeouts(
    repo: PresenceRepository,
    settings: Settings,
    workspace_id: uuid.UUID,
    devices: dict[uuid.UUID, tuple[str, int | None]],
) -> dict[uuid.UUID, timedelta]:
    """Each device's offline timeout, from (its type, its own heartbeat interval): the
    device's interval, else its type's, else the workspace default; × tolerance (the
    type's, else the default). One query for all of them."""
    per_type = await repo.type_heartbeats(workspace_id, {t for t, _i in devices.values()})
    default = (float(settings.heartbeat_interval_s), settings.offline_tolerance)
    out = {}
    for device_id, (type_, own_interval) in devices.items():
        interval, tolerance = per_type.get(type_, default)
        out[device_id] = timedelta(seconds=(own_interval or interval) * tolerance)
    return out


class PresenceWriter:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        bus: EventBus,
        state: PresenceState,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.bus = bus
        self.state = state
        self._changes = Batcher(self._write_changes, name="presence-writer")

    async def submit(self, change: Change) -> list[uuid.UUID]:
        """Record these transitions; returns the devices whose transition this process
        won. A burst of devices connecting (a fleet coming back after an outage) costs a
        few transactions, not one each."""
        return await self._changes.submit(change)

    async def drain(self) -> None:
        """Wait for the transitions asked for so far."""
        await self._changes.drain()

    async def write_last_seen(self, stale: Sequence[tuple[uuid.UUID, datetime]]) -> None:
        async with self.sessionmaker() as session:
            repo = PresenceRepository(session)
            for start in range(0, len(stale), LAST_SEEN_CHUNK):
                await repo.write_last_seen(stale[start : start + LAST_SEEN_CHUNK])
            await session.commit()

    async def _write_changes(self, batch: list[Change]) -> list[list[uuid.UUID]]:
        events: list[Event] = []
        won_by_run: list[set[uuid.UUID]] = []
        runs = _runs(batch)
        async with self.sessionmaker() as session:
            repo = PresenceRepository(session)
            for run in runs:
                first = run[0]
                ids = list(dict.fromkeys(d for c in run for d in c.device_ids))
                now = max(c.now for c in run)
                won = await self._apply(
                    repo, first.workspace_id, ids, first.connectivity, now,
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
        repo: PresenceRepository,
        workspace_id: uuid.UUID,
        device_ids: list[uuid.UUID],
        connectivity: str,
        now: datetime,
        reason: str,
        overdue_only: bool,
        events: list[Event],
    ) -> set[uuid.UUID]:
        """Record the transitions this process wins (in ``repo``'s session; the caller
        commits). The claim (atomic in the state, so that of several processes exactly
        one wins each transition) comes before the writes; a device the claim skips (a
        concurrent request, another process, or a device heard from again before the
        sweep got to it) is left alone."""
        types = await repo.device_types(workspace_id, device_ids)
        presences = await repo.presences(list(types))
        timeouts = await offline_timeouts(repo, self.settings, workspace_id, {
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
                repo.add(presence)
            last_seen = now if connectivity == ONLINE else (
                won[device_id] or presence.last_seen)  # fmt: skip
            presence.connectivity = connectivity
            presence.changed_at = now
            presence.last_seen = last_seen
            repo.add(
                ConnectivityEvent(
                    workspace_id=workspace_id, device_id=device_id,
                    connectivity=connectivity, reason=reason, at=now,
                )
            )  # fmt: skip
            if last_seen is not None:
                seen_at.append({"device": device_id, "seen": last_seen})
            events.append(_presence_changed(workspace_id, device_id, connectivity, reason,
                                            now, last_seen))  # fmt: skip
        await repo.set_devices_last_seen(seen_at)
        return set(won)


def _presence_changed(
    workspace_id: uuid.UUID,
    device_id: uuid.UUID,
    connectivity: str,
    reason: str,
    now: datetime,
    last_seen: datetime | None,
) -> Event:
    return Event(
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
