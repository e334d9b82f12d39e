"""Where presence state lives: in this process (a dict) or in Redis, shared by processes.

``PresenceTracker`` decides what a transition is and has it written to the database; a
``PresenceState`` only keeps connectivity, last_seen and offline deadlines, and decides
atomically who wins a transition (``claim``), so that with several processes sharing
Redis exactly one of them records and publishes each online/offline change.

The in-process state is here; the Redis one is in ``presence_redis``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

ONLINE, OFFLINE = "online", "offline"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US = timedelta(microseconds=1)


def to_us(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // US


def from_us(value: int | str | bytes) -> datetime:
    return EPOCH + timedelta(microseconds=int(value))


@dataclass(slots=True)
class Seed:
    """A device the database says is online (loaded at start-up)."""

    device_id: uuid.UUID
    workspace_id: uuid.UUID
    last_seen: datetime
    timeout: timedelta


class PresenceState(Protocol):
    async def needs_load(self) -> bool:
        """Whether the online devices of the database still have to be loaded."""

    async def load(self, seeds: Sequence[Seed]) -> None:
        """Add devices the database says are online, unless they are already known."""

    async def touch(
        self, workspace_id: uuid.UUID, device_ids: Iterable[uuid.UUID], now: datetime
    ) -> list[uuid.UUID]:
        """Move last_seen of online devices to ``now``; return the devices not online."""

    async def claim(
        self,
        workspace_id: uuid.UUID,
        timeouts: dict[uuid.UUID, timedelta],
        connectivity: str,
        now: datetime,
        overdue_only: bool = False,
    ) -> dict[uuid.UUID, datetime | None]:
        """Atomically move devices to ``connectivity``; return those that changed, with
        their last_seen before the change. A device already online only has its
        last_seen moved. With ``overdue_only``, an online device goes offline only if it
        is still silent past its deadline at ``now``."""

    async def overdue(self, now: datetime) -> dict[uuid.UUID, list[uuid.UUID]]:
        """Online devices silent past their deadline, by workspace."""

    async def connectivity_of(self, device_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]: ...

    async def last_seen_of(
        self, device_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, datetime | None]: ...

    async def online_in(self, workspace_id: uuid.UUID) -> set[uuid.UUID]: ...

    async def tracked_in(self, workspace_id: uuid.UUID) -> list[uuid.UUID]: ...

    async def set_timeouts(self, timeouts: dict[uuid.UUID, timedelta]) -> None:
        """New offline timeouts; the deadlines of online devices move with them."""

    async def take_unwritten(self, min_age: timedelta) -> list[tuple[uuid.UUID, datetime]]:
        """Devices whose last_seen is at least ``min_age`` ahead of the database's; they
        are marked written (so one process writes each)."""

    async def forget(self, device_id: uuid.UUID) -> None: ...


# --- in this process --------------------------------------------------------------------


@dataclass(slots=True)
class _State:
    workspace_id: uuid.UUID
    connectivity: str
    last_seen: datetime
    written: datetime  # last_seen as last written to the database
    timeout: timedelta


class MemoryPresence:
    """The default: a dict in this process."""

    def __init__(self) -> None:
        self.states: dict[uuid.UUID, _State] = {}
        self._loaded = False

    async def needs_load(self) -> bool:
        return not self._loaded

    async def load(self, seeds: Sequence[Seed]) -> None:
        for s in seeds:
            if s.device_id not in self.states:
                self.states[s.device_id] = _State(
                    s.workspace_id, ONLINE, s.last_seen, s.last_seen, s.timeout
                )
        self._loaded = True

    async def touch(
        self, workspace_id: uuid.UUID, device_ids: Iterable[uuid.UUID], now: datetime
    ) -> list[uuid.UUID]:
        newly: list[uuid.UUID] = []
        for device_id in device_ids:
            state = self.states.get(device_id)
            if state is None or state.connectivity != ONLINE:
                newly.append(device_id)
            else:
                state.last_seen = max(state.last_seen, now)
        return newly

    async def claim(
        self,
        workspace_id: uuid.UUID,
        timeouts: dict[uuid.UUID, timedelta],
        connectivity: str,
        now: datetime,
        overdue_only: bool = False,
    ) -> dict[uuid.UUID, datetime | None]:
        won: dict[uuid.UUID, datetime | None] = {}
        for device_id, timeout in timeouts.items():
            state = self.states.get(device_id)
            before = state.last_seen if state is not None else None
            if connectivity == ONLINE:
                if state is not None and state.connectivity == ONLINE:
                    state.last_seen = max(state.last_seen, now)
                    continue
                self.states[device_id] = _State(workspace_id, ONLINE, now, now, timeout)
            else:
                if state is None or state.connectivity != ONLINE:
                    continue
                if overdue_only and not now - state.last_seen > state.timeout:
                    continue
                self.states[device_id] = _State(
                    workspace_id, OFFLINE, state.last_seen, state.last_seen, timeout
                )
            won[device_id] = before
        return won

    async def overdue(self, now: datetime) -> dict[uuid.UUID, list[uuid.UUID]]:
        by_ws: dict[uuid.UUID, list[uuid.UUID]] = {}
        for device_id, state in list(self.states.items()):
            if state.connectivity == ONLINE and now - state.last_seen > state.timeout:
                by_ws.setdefault(state.workspace_id, []).append(device_id)
        return by_ws

    # Synchronous reads: only this implementation can answer without I/O.

    def connectivity(self, device_id: uuid.UUID) -> str:
        state = self.states.get(device_id)
        return state.connectivity if state is not None else OFFLINE

    def last_seen(self, device_id: uuid.UUID) -> datetime | None:
        state = self.states.get(device_id)
        return state.last_seen if state is not None else None

    def online_ids(self, workspace_id: uuid.UUID) -> set[uuid.UUID]:
        return {
            d for d, s in self.states.items()
            if s.workspace_id == workspace_id and s.connectivity == ONLINE
        }  # fmt: skip

    async def connectivity_of(self, device_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        return {d: self.connectivity(d) for d in device_ids}

    async def last_seen_of(
        self, device_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, datetime | None]:
        return {d: self.last_seen(d) for d in device_ids}

    async def online_in(self, workspace_id: uuid.UUID) -> set[uuid.UUID]:
        return self.online_ids(workspace_id)

    async def tracked_in(self, workspace_id: uuid.UUID) -> list[uuid.UUID]:
        return [d for d, s in self.states.items() if s.workspace_id == workspace_id]

    async def set_timeouts(self, timeouts: dict[uuid.UUID, timedelta]) -> None:
        for device_id, timeout in timeouts.items():
            state = self.states.get(device_id)
            if state is not None:
                state.timeout = timeout

    async def take_unwritten(self, min_age: timedelta) -> list[tuple[uuid.UUID, datetime]]:
        out: list[tuple[uuid.UUID, datetime]] = []
        for device_id, state in self.states.items():
            if state.last_seen - state.written >= min_age:
                state.written = state.last_seen
                out.append((device_id, state.last_seen))
        return out

    async def forget(self, device_id: uuid.UUID) -> None:
        self.states.pop(device_id, None)
