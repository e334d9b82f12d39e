"""The Socket.IO server: authenticates dashboards and pushes their workspace's events.

Each connection joins its workspace's room (``ws:<workspace_id>``). A client narrows with
``subscribe`` and ``{"devices": null | [ids], "events": null | [names]}`` (both optional,
a missing one is null: everything):

- ``devices``: it leaves the workspace room and joins ``device:<id>`` rooms, only for
  devices of its own workspace;
- ``events``: only those event names (``alert``, ``telemetry``, …) are sent to it. It
  then sits in rooms per event name instead: ``ws:<id>:alert`` or ``device:<id>:alert``,
  so that a page showing alerts never receives the workspace's telemetry, and the emit
  stays one fan-out to rooms.

``subscribe`` with ``{}`` (or ``unsubscribe``) goes back to everything. Each subscription
replaces the previous one. Events go to the workspace's and the device's rooms and their
per-event rooms together; a client is in one kind of room only, and an emit reaches a
client once whatever its rooms, so it never gets a message twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import socketio

from fieldwatch.core.events import CREDENTIALS_CHANGED, Event
from fieldwatch.core.settings import Settings
from fieldwatch.realtime.auth import (
    Credential,
    RealtimeHost,
    authenticate,
    credential_from,
    refusal,
    still_valid,
)
from fieldwatch.realtime.coalesce import TelemetryCoalescer
from fieldwatch.realtime.messages import (
    NAMES,
    ROUTES,
    TELEMETRY,
    device_of,
    device_room,
    event_room,
    to_message,
    workspace_room,
)
from fieldwatch.realtime.repository import RealtimeRepository

log = logging.getLogger(__name__)
#: python-socketio's and python-engineio's own records (python-engineio logs every
#: packet with its data, login frames and their tokens among them, at INFO): warnings
#: only, unless this logger is set lower. Passing a logger also keeps them from adding
#: a handler of their own, which would bypass the masking of ``configure_logging``.
packet_log = logging.getLogger(__name__ + ".packets")
packet_log.setLevel(logging.WARNING)

SOCKETIO_PATH = "ws/monitoring"
MAX_DEVICES = 1000
#: How long closing one connection may wait for its goodbye to be written: a client
#: whose transport is already gone never drains it (seen at shutdown).
DROP_TIMEOUT_S = 2.0


def _device_id(raw: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        return None


BAD_SUBSCRIPTION = (
    'send {"devices": null | [device ids], "events": null | [event names]}; '
    f"at most {MAX_DEVICES} devices; events among {', '.join(NAMES)}"
)


@dataclass(frozen=True, slots=True)
class _Wanted:
    """A ``subscribe`` request, checked: ``None`` stands for everything."""

    devices: list[Any] | None
    events: frozenset[str] | None


def _wanted(data: Any) -> _Wanted | None:
    """The request's devices and events, or ``None`` when it is malformed."""
    if data is None:
        return _Wanted(None, None)
    if not isinstance(data, dict):
        return None
    devices, events = data.get("devices"), data.get("events")
    if devices is not None and (not isinstance(devices, list) or len(devices) > MAX_DEVICES):
        return None
    if events is not None:
        if not isinstance(events, list) or not all(e in NAMES for e in events):
            return None
        events = frozenset(events)
    return _Wanted(devices, events)


@dataclass(slots=True)
class _Client:
    workspace_id: uuid.UUID
    credential: Credential  # re-checked when credentials change
    who: str
    devices: frozenset[uuid.UUID] | None = None  # None: the whole workspace
    events: frozenset[str] | None = None  # None: every event
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def rooms(self) -> set[str]:
        if self.devices is None:
            rooms = {workspace_room(self.workspace_id)}
        else:
            rooms = {device_room(d) for d in self.devices}
        if self.events is None:
            return rooms
        return {event_room(room, name) for room in rooms for name in self.events}

    def subscription(self, unknown: list[str] | None = None) -> dict[str, Any]:
        ack: dict[str, Any] = {
            "workspace_id": str(self.workspace_id),
            "devices": None if self.devices is None else sorted(str(d) for d in self.devices),
            "events": None if self.events is None else sorted(self.events),
        }
        if unknown is not None:
            ack["unknown"] = unknown
        return ack


class RealtimeServer:
    """Owns the ``socketio.AsyncServer``; ``start(runtime)`` and ``stop()`` follow the
    application's lifespan."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        origins = settings.realtime_cors_origins
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            cors_allowed_origins=("*" if "*" in origins else origins) if origins else None,
            logger=packet_log,
            engineio_logger=packet_log,
        )
        self.runtime: RealtimeHost | None = None
        self.coalescer = TelemetryCoalescer(self._emit, settings.realtime_coalesce_ms / 1000)
        self._clients: dict[str, _Client] = {}
        self._unsubscribe: list[Callable[[], None]] = []
        self._recheck: asyncio.Task[None] | None = None
        self._recheck_again = False
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("subscribe", self._on_subscribe)
        self.sio.on("unsubscribe", self._on_unsubscribe)

    def asgi_app(self, other_asgi_app: Any) -> socketio.ASGIApp:
        """Socket.IO at ``/ws/monitoring``; everything else goes to ``other_asgi_app``."""
        return socketio.ASGIApp(
            self.sio, other_asgi_app=other_asgi_app, socketio_path=SOCKETIO_PATH
        )

    @property
    def connected(self) -> int:
        return len(self._clients)

    # --- lifecycle --------------------------------------------------------------------

    async def start(self, runtime: RealtimeHost) -> None:
        if self.runtime is not None:
            return
        self.runtime = runtime
        for pattern, name in ROUTES:
            self._unsubscribe.append(runtime.bus.subscribe(pattern, self._handler(name)))
        self._unsubscribe.append(
            runtime.bus.subscribe(CREDENTIALS_CHANGED, self._on_credentials_changed)
        )
        await self.coalescer.start()

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        await self.coalescer.stop()
        if self._recheck is not None:
            self._recheck.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recheck
            self._recheck = None
        await self.disconnect_all()
        self._clients.clear()
        await self.sio.shutdown()
        self.runtime = None

    async def disconnect_all(self) -> None:
        for sid in list(self._clients):
            await self.drop(sid)

    async def drop(self, sid: str) -> None:
        """End a connection from the server side. The Socket.IO disconnect packet tells
        the client at once (a browser's client ignores an Engine.IO close over a
        WebSocket and would believe itself connected until the ping timeout); closing
        the Engine.IO session then also answers a pending long-poll at once, so the
        client does not send another one that would linger until the ping timeout."""
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, "/")
        try:
            async with asyncio.timeout(DROP_TIMEOUT_S):
                await self.sio.disconnect(sid)
                if eio_sid is not None:
                    await self.sio.eio.disconnect(eio_sid)
        except TimeoutError:
            log.info("a realtime connection did not close in time", extra={"sid": sid})
        except Exception:
            log.exception("closing a realtime connection failed", extra={"sid": sid})
        self._clients.pop(sid, None)

    # --- delivery ---------------------------------------------------------------------

    def _handler(self, name: str) -> Callable[[Event], Any]:
        async def handle(event: Event) -> None:
            if not self._clients:  # nobody is watching from this process
                return
            device_id = device_of(event)
            message = to_message(event, device_id)
            if name == TELEMETRY and device_id is not None:
                self.coalescer.add(event.workspace_id, device_id, message)
            else:
                await self._emit(name, message, event.workspace_id, device_id)

        return handle

    async def _emit(
        self,
        name: str,
        message: dict[str, Any],
        workspace_id: uuid.UUID,
        device_id: uuid.UUID | None,
    ) -> None:
        rooms = [workspace_room(workspace_id)]
        if device_id is not None:
            rooms.append(device_room(device_id))
        rooms += [event_room(room, name) for room in rooms]
        await self.sio.emit(name, message, to=rooms)

    # --- connections ------------------------------------------------------------------

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        credential = credential_from(environ, auth)
        if self.runtime is None:
            raise refusal("The server is starting; retry.", "service-unavailable", 503)
        try:
            principal = await authenticate(self.runtime, credential)
        except socketio.exceptions.ConnectionRefusedError:
            raise
        except Exception as exc:
            log.exception("realtime authentication failed")
            raise refusal(
                "Authentication is unavailable right now; retry.", "service-unavailable", 503
            ) from exc
        # Pin the workspace: a re-check must fail, not move the client elsewhere.
        pinned = Credential(credential.token, str(principal.workspace_id))
        client = _Client(principal.workspace_id, pinned, principal.actor)
        self._clients[sid] = client
        await self.sio.enter_room(sid, workspace_room(principal.workspace_id))
        log.info(
            "realtime client connected",
            extra={"sid": sid, "who": principal.actor, "workspace_id": str(principal.workspace_id)},
        )

    async def _on_disconnect(self, sid: str, reason: Any = None) -> None:
        client = self._clients.pop(sid, None)
        if client is not None:
            log.info("realtime client disconnected", extra={"sid": sid, "who": client.who})

    async def _on_subscribe(self, sid: str, data: Any = None) -> dict[str, Any]:
        client = self._clients.get(sid)
        if client is None or self.runtime is None:
            return {"error": "not connected"}
        wanted = _wanted(data)
        if wanted is None:
            return {"error": BAD_SUBSCRIPTION, **client.subscription()}
        async with client.lock:
            if wanted.devices is None:
                await self._move(sid, client, None, wanted.events)
                return client.subscription()
            parsed = {str(item): _device_id(item) for item in wanted.devices}
            ids = {d for d in parsed.values() if d is not None}
            async with self.runtime.uow() as uow:
                owned = await RealtimeRepository(uow.session).owned_devices(
                    client.workspace_id, ids
                )
            unknown = [text for text, d in parsed.items() if d is None or d not in owned]
            if sid not in self._clients:  # disconnected meanwhile
                return {"error": "not connected"}
            await self._move(sid, client, frozenset(owned), wanted.events)
            return client.subscription(unknown)

    async def _on_unsubscribe(self, sid: str, data: Any = None) -> dict[str, Any]:
        return await self._on_subscribe(sid, None)

    async def _move(
        self,
        sid: str,
        client: _Client,
        devices: frozenset[uuid.UUID] | None,
        events: frozenset[str] | None,
    ) -> None:
        """Change rooms: join the new ones first, then leave the old ones, so that no event
        is missed in between (one emit reaches a client once, whatever its rooms)."""
        old = client.rooms()
        client.devices, client.events = devices, events
        new = client.rooms()
        for room in new - old:
            await self.sio.enter_room(sid, room)
        for room in old - new:
            await self.sio.leave_room(sid, room)

    # --- credentials changed: drop connections that no longer authenticate --------------

    async def _on_credentials_changed(self, event: Event) -> None:
        if event.payload.get("reason") == "device_token_revoked" or not self._clients:
            return
        if self._recheck is not None and not self._recheck.done():
            self._recheck_again = True
            return
        self._recheck = asyncio.create_task(self._recheck_all(), name="realtime-recheck")

    async def _recheck_all(self) -> None:
        while True:
            self._recheck_again = False
            runtime = self.runtime
            if runtime is None:
                return
            sids = list(self._clients)
            creds = [self._clients[sid].credential for sid in sids]
            try:
                valid = await still_valid(runtime, creds)
            except Exception:
                log.exception("re-checking realtime connections failed")
                valid = [True] * len(sids)
            for sid, ok in zip(sids, valid, strict=True):
                if not ok and sid in self._clients:
                    log.info(
                        "realtime client dropped: credential no longer valid",
                        extra={"sid": sid, "who": self._clients[sid].who},
                    )
                    await self.drop(sid)
            if not self._recheck_again:
                return
