"""The device listener: the same device WebSocket protocol (``/ws/device/{token}`` and
``/ws/device`` with ``Authorization: Bearer``) on a port of its own, served by the
``websockets`` library's server instead of through uvicorn and the ASGI stack.

For large fleets: an idle device costs much less memory here (bench/bench_devices.py
measures both), and the API's port is left to people and dashboards. Switched on with
``FIELDWATCH_DEVICE_WS_PORT``; with ``serve --workers`` every worker listens on it
(``SO_REUSEPORT``: the kernel spreads the connections). The session itself, from the
welcome frame on, is ``websocket.run_session``, shared with the main port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConcurrencyError, ConnectionClosed
from websockets.http11 import Request, Response

from fieldwatch.core.redact import RedactSecrets
from fieldwatch.db.faults import RETRY_AFTER_S, outages
from fieldwatch.transports import websocket as gateway
from fieldwatch.transports.edge import DeviceEdge, Ids
from fieldwatch.transports.sessions import CLOSE_SERVER_RESTART

log = logging.getLogger(__name__)
#: The ``websockets`` server's own records (a line per connection opened and closed; the
#: handshake's headers and every frame at DEBUG): warnings only, unless this logger is
#: set lower; secrets are masked in them.
protocol_log = logging.getLogger(__name__ + ".protocol")
#: At shutdown, how long devices have to answer the close frame.
CLOSE_WAIT_S = 5.0
protocol_log.setLevel(logging.WARNING)
protocol_log.addFilter(RedactSecrets())


class ListenerSocket:
    """A ``websockets`` connection seen the way a device session sees a WebSocket."""

    __slots__ = ("conn", "listener")

    def __init__(self, conn: ServerConnection, listener: DeviceListener) -> None:
        self.conn = conn
        self.listener = listener

    async def receive(self) -> Mapping[str, Any]:
        try:
            data = await self.conn.recv()
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else 1006
            if self.listener.stopping:  # this server closed it on its way down
                code = CLOSE_SERVER_RESTART
            return {"type": "websocket.disconnect", "code": code}
        if isinstance(data, str):
            return {"type": "websocket.receive", "text": data}
        return {"type": "websocket.receive", "bytes": data}

    async def send_json(self, data: Any) -> None:
        await self.conn.send(orjson.dumps(data).decode())

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        # Read (and drop) what the device still sends meanwhile: with reading paused
        # (a flooding device fills the receive queue) its reply to our close frame would
        # wait unread until the close timeout.
        drain = asyncio.create_task(self._discard())
        try:
            await self.conn.close(code, reason or "")
        finally:
            drain.cancel()

    async def _discard(self) -> None:
        with contextlib.suppress(ConnectionClosed, ConcurrencyError):
            while True:
                await self.conn.recv()


class DeviceListener:
    def __init__(self, edge: DeviceEdge, host: str, port: int) -> None:
        self.edge = edge
        self.host = host
        self.port = port
        self.stopping = False
        self._server: Server | None = None
        # Handshakes that passed authentication, until their handler picks them up.
        self._accepted: dict[ServerConnection, tuple[Ids, str]] = {}

    @property
    def bound_port(self) -> int:
        assert self._server is not None
        return int(next(iter(self._server.sockets)).getsockname()[1])

    async def start(self) -> None:
        settings = self.edge.settings
        self._server = await serve(
            self._session,
            self.host,
            self.port,
            process_request=self._check,
            compression=None,  # firmware rarely asks for it, and it costs memory
            max_size=settings.ws_max_frame_bytes,  # above: closed (1009) before it is read
            max_queue=4,
            ping_interval=20,
            ping_timeout=20,
            reuse_port=hasattr(socket, "SO_REUSEPORT"),
            server_header=None,
            logger=protocol_log,
        )
        log.info("device WebSocket listener on %s:%s", self.host, self.bound_port)

    async def stop(self) -> None:
        if self._server is None:
            return
        self.stopping = True
        # Tell each device this server restarts (1012, as uvicorn tells those on the
        # API's port), so it reconnects, to another gateway behind the balancer; then
        # stop (what is still open gets 1001) and wait for the handlers.
        connections = list(self._server.connections)
        if connections:
            await asyncio.wait(
                [asyncio.create_task(c.close(CLOSE_SERVER_RESTART, "server restart"))
                 for c in connections],
                timeout=CLOSE_WAIT_S,
            )  # fmt: skip
        self._server.close()
        await self._server.wait_closed()
        self._server = None

    async def _check(self, conn: ServerConnection, request: Request) -> Response | None:
        """Authenticate before the handshake completes: a bad, revoked or expired token,
        or a retired device, is refused with HTTP 403 (as on the main port)."""
        path = request.path.partition("?")[0]
        token = gateway.device_token(path, request.headers.get("Authorization", ""))
        if token is None:
            return _plain(conn, HTTPStatus.NOT_FOUND, "Not found: devices connect to /ws/device")
        try:
            ids = await self.edge.authenticate(token)
        except Exception as exc:
            if not outages.record(exc, "device WebSocket handshake"):
                raise
            response = _plain(conn, HTTPStatus.SERVICE_UNAVAILABLE, "Unavailable; retry shortly")
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
            return response
        if ids is None:
            return _plain(conn, HTTPStatus.FORBIDDEN, "Forbidden")
        self._accepted[conn] = (ids, token)
        return None

    async def _session(self, conn: ServerConnection) -> None:
        found = self._accepted.pop(conn, None)
        if found is None:  # cannot happen: _check ran first
            await conn.close(1011, "internal error")
            return
        ids, token = found
        await gateway.run_session(self.edge, ListenerSocket(conn, self), ids, token)


def _plain(conn: ServerConnection, status: HTTPStatus, text: str) -> Response:
    return conn.respond(status, text + "\n")


async def start_listener(edge: DeviceEdge) -> DeviceListener | None:
    """Start the device listener when ``FIELDWATCH_DEVICE_WS_PORT`` is set (the edge's
    ``listener``, stopped with it); None when it is off or could not listen (logged: the
    main port still serves devices)."""
    settings = edge.settings
    if settings.device_ws_port is None:
        return None
    listener = DeviceListener(edge, settings.device_ws_host, settings.device_ws_port)
    try:
        await listener.start()
    except OSError as exc:
        log.error(
            "the device WebSocket listener could not listen on %s:%s (%s); devices can "
            "still connect to the API's port",
            settings.device_ws_host, settings.device_ws_port, exc.strerror or exc,
        )  # fmt: skip
        return None
    edge.listener = listener
    return listener
