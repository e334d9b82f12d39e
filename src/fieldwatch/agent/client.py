"""An asyncio device client speaking the device protocol (docs/device-protocol.md).

Over WebSocket it keeps one connection open, reconnecting with jittered exponential
backoff (the ``websockets`` library's own reconnect loop), sends a heartbeat every
``heartbeat_interval`` seconds the server asked for, and matches each frame to its
``ack``. Over HTTP it posts the same readings to the REST API. Either way ``send`` returns
only once the server has committed the readings.

    agent = DeviceAgent("http://127.0.0.1:8000", token)
    async with agent:                      # connects (WebSocket) in the background
        ack = await agent.send({"temperature": 21.5, "humidity": 40})
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from datetime import datetime
from types import TracebackType
from typing import Any, Literal

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

log = logging.getLogger(__name__)

Transport = Literal["ws", "http"]


class AgentError(Exception):
    """The server refused a frame or request (the message says why)."""


class DeviceAgent:
    def __init__(
        self,
        server: str,
        token: str,
        *,
        transport: Transport = "ws",
        timeout_s: float = 10.0,
        heartbeat: bool = True,
    ) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.transport = transport
        self.timeout_s = timeout_s
        self.heartbeat_enabled = heartbeat
        self.device_id: str | None = None
        self.server_config: dict[str, Any] = {}
        self.connected = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._http: httpx.AsyncClient | None = None
        self._refused: BaseException | None = None

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        if self.transport == "http":
            self._http = httpx.AsyncClient(
                base_url=self.server, headers=headers, timeout=self.timeout_s
            )
            r = await self._http.get("/api/v1/device/me")
            if r.status_code != 200:
                raise AgentError(f"the server refused the token: {r.status_code} {r.text}")
            self.device_id = r.json()["device_id"]
            self.connected.set()
            return
        runner = asyncio.create_task(self._run(), name="agent-connection")
        self._tasks.append(runner)
        ready = asyncio.create_task(self.connected.wait())
        done, _ = await asyncio.wait({runner, ready}, timeout=self.timeout_s,
                                     return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        if ready not in done:
            ready.cancel()
            self._tasks.remove(runner)
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner
            if self._refused is not None:
                raise AgentError(f"the server refused the connection: {self._refused}")
            raise AgentError("could not connect to the server")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.aclose()

    async def __aenter__(self) -> DeviceAgent:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- sending ----------------------------------------------------------------------

    async def send(
        self, metrics: dict[str, Any], timestamp: datetime | None = None
    ) -> dict[str, Any]:
        """Send readings; returns the server's ack ``{accepted, duplicates, rejected}``."""
        body: dict[str, Any] = {"metrics": metrics}
        if timestamp is not None:
            body["timestamp"] = timestamp.isoformat()
        if self._http is not None:
            r = await self._http.post(
                "/api/v1/monitoring/data", json={**body, "device_id": self.device_id}
            )
            return self._http_answer(r)
        return await self._frame({"type": "telemetry", **body})

    async def heartbeat(self, **fields: Any) -> dict[str, Any]:
        if self._http is not None:
            r = await self._http.post(f"/api/v1/devices/{self.device_id}/heartbeat", json=fields)
            return self._http_answer(r)
        return await self._frame({"type": "heartbeat", **fields})

    def _http_answer(self, r: httpx.Response) -> dict[str, Any]:
        if r.status_code >= 400 and r.status_code != 422:
            raise AgentError(f"{r.status_code}: {r.text}")
        return dict(r.json())

    async def _frame(self, frame: dict[str, Any]) -> dict[str, Any]:
        await self.connected.wait()
        assert self._ws is not None
        ref = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ref] = future
        try:
            await self._ws.send(json.dumps({**frame, "id": ref}))
            async with asyncio.timeout(self.timeout_s):
                reply = await future
        finally:
            self._waiting.pop(ref, None)
        if reply.get("type") == "error":
            raise AgentError(f"{reply.get('code')}: {reply.get('message')}")
        return reply

    # --- the connection ----------------------------------------------------------------

    async def _run(self) -> None:
        url = self.server.replace("http://", "ws://").replace("https://", "wss://") + "/ws/device"
        headers = {"Authorization": f"Bearer {self.token}"}

        def refused(exc: Exception) -> Exception | None:
            # 403: the token is not valid; retrying will not help. Other errors: retry.
            if isinstance(exc, InvalidStatus) and exc.response.status_code == 403:
                self._refused = exc
                return exc
            return None

        async for ws in connect(url, additional_headers=headers, process_exception=refused):
            self._ws = ws
            try:
                await self._session(ws)
            except ConnectionClosed as exc:
                log.info("connection closed (%s); reconnecting", exc.rcvd.code if exc.rcvd else "-")
            finally:
                self.connected.clear()
                for future in self._waiting.values():
                    if not future.done():
                        future.set_exception(AgentError("connection lost before the ack"))

    async def _session(self, ws: ClientConnection) -> None:
        welcome = json.loads(await ws.recv())
        self.device_id = welcome.get("device_id")
        self.server_config = welcome.get("server_config", {})
        self.connected.set()
        beat = None
        if self.heartbeat_enabled:
            beat = asyncio.create_task(self._heartbeats(), name="agent-heartbeat")
        try:
            async for raw in ws:
                message = json.loads(raw)
                ref = message.get("ref")
                future = self._waiting.get(ref) if isinstance(ref, int) else None
                if future is not None and not future.done():
                    future.set_result(message)
                elif message.get("type") == "error":
                    log.warning("server error frame: %s", message)
        finally:
            if beat is not None:
                beat.cancel()

    async def _heartbeats(self) -> None:
        interval = float(self.server_config.get("heartbeat_interval", 60))
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(AgentError, TimeoutError):
                await self.heartbeat()
