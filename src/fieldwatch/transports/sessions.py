"""Live device sessions of this process: one per device, closed when replaced or when
the device's credentials stop being valid; plus the bad-frame window."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from fieldwatch.core.errors import Unauthorized
from fieldwatch.core.events import CREDENTIALS_CHANGED, Event, EventBus
from fieldwatch.db.uow import UnitOfWork
from fieldwatch.devices.events import DEVICE_STATUS_CHANGED
from fieldwatch.devices.lifecycle import DeviceStatus
from fieldwatch.devices.service import DeviceService

log = logging.getLogger(__name__)

#: Close codes (RFC 6455 1008 "policy violation", and two private-use codes).
CLOSE_POLICY = 1008
CLOSE_REPLACED = 4000
CLOSE_REVOKED = 4001
CLOSE_INTERNAL = 1011
CLOSE_SERVER_RESTART = 1012  # what uvicorn sends every connection when the server stops
CLOSE_TRY_AGAIN = 1013  # the database is unavailable: reconnect after a while


class ErrorWindow:
    """Counts bad frames over the last ``window_s`` seconds. (Its deque is made on the
    first bad frame: every idle connection has one of these.)"""

    __slots__ = ("clock", "times", "window_s")

    def __init__(self, window_s: float = 60.0, clock: Any = time.monotonic) -> None:
        self.window_s = window_s
        self.clock = clock
        self.times: deque[float] | None = None

    def add(self) -> int:
        now = self.clock()
        if self.times is None:
            self.times = deque()
        self.times.append(now)
        while self.times and self.times[0] <= now - self.window_s:
            self.times.popleft()
        return len(self.times)


class DeviceSocket(Protocol):
    """What a device session needs of its WebSocket, in ASGI terms: Starlette's
    ``WebSocket`` on the main port, ``ws_listener.ListenerSocket`` on the device listener.
    ``receive`` answers ``websocket.receive`` messages (``text`` or ``bytes``) and, once
    the connection is gone, ``websocket.disconnect`` (with its ``code``)."""

    async def receive(self) -> Mapping[str, Any]: ...

    async def send_json(self, data: Any) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


@dataclass(eq=False, slots=True)
class DeviceSession:
    websocket: DeviceSocket
    device_id: uuid.UUID
    workspace_id: uuid.UUID
    token: str = field(repr=False)  # kept to re-check on revocations; never logged
    closed: bool = False
    close_code: int | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    async def send(self, message: dict[str, Any]) -> bool:
        """Send one JSON frame; False when the connection is gone."""
        async with self._lock:
            if self.closed:
                return False
            try:
                await self.websocket.send_json(message)
            except Exception:  # the peer went away meanwhile
                self.closed = True
                return False
            return True

    # The command ledger's channel to this device (commands.delivery.DeviceChannel).
    transport = "websocket"

    async def send_command(self, message: dict[str, Any], frame: str = "command") -> bool:
        return await self.send({"type": frame, **message})

    async def send_config(self, message: dict[str, Any]) -> bool:
        return await self.send({"type": "config", **message})

    async def close(self, code: int, reason: str) -> None:
        async with self._lock:
            if self.closed:
                return
            self.closed = True
            self.close_code = code
            with contextlib.suppress(Exception):
                await self.websocket.close(code=code, reason=reason)


class SessionRegistry:
    """device_id → its live session in this process."""

    def __init__(self, uow: Callable[[], UnitOfWork], bus: EventBus) -> None:
        self.uow = uow
        self.sessions: dict[uuid.UUID, DeviceSession] = {}
        self._unsubscribe = [
            bus.subscribe(CREDENTIALS_CHANGED, self._on_credentials_changed),
            bus.subscribe(DEVICE_STATUS_CHANGED, self._on_status_changed),
        ]

    async def register(self, session: DeviceSession) -> None:
        old = self.sessions.get(session.device_id)
        self.sessions[session.device_id] = session
        if old is not None and old is not session:
            log.info("device %s reconnected: closing its older session", session.device_id)
            await old.close(CLOSE_REPLACED, "replaced by a new connection")

    def unregister(self, session: DeviceSession) -> bool:
        """Forget the session; True when it was the device's current one."""
        if self.sessions.get(session.device_id) is session:
            del self.sessions[session.device_id]
            return True
        return False

    def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()

    async def still_valid(self, session: DeviceSession) -> bool:
        async with self.uow() as uow:
            try:
                await DeviceService(uow).authenticate_device(session.token)
            except Unauthorized:
                return False
        return True

    async def _revoke(self, session: DeviceSession) -> None:
        log.info("device %s: credentials revoked, closing its session", session.device_id)
        await session.close(CLOSE_REVOKED, "credentials revoked")

    async def _on_credentials_changed(self, event: Event) -> None:
        for session in [s for s in self.sessions.values() if s.workspace_id == event.workspace_id]:
            if not session.closed and not await self.still_valid(session):
                await self._revoke(session)

    async def _on_status_changed(self, event: Event) -> None:
        if event.subject_id is None or event.payload.get("status") != DeviceStatus.retired.value:
            return
        session = self.sessions.get(event.subject_id)
        if session is not None and session.workspace_id == event.workspace_id:
            await self._revoke(session)
