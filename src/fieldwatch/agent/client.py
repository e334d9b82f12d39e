"""An asyncio device client speaking the device protocol (docs/device-protocol.md).

Over WebSocket it keeps one connection open, reconnecting with jittered exponential
backoff (the ``websockets`` library's own reconnect loop), sends a heartbeat every
``heartbeat_interval`` seconds the server asked for, and matches each frame to its
``ack``. Over HTTP it posts the same readings to the REST API. Either way ``send`` returns
only once the server has committed the readings. Over MQTT (``agent/mqtt.py``) it returns
once the broker acknowledged them: Fieldwatch's embedded broker does so after the commit,
but a PUBACK from another broker says nothing about what Fieldwatch stored.

    agent = DeviceAgent("http://127.0.0.1:8000", token)

    @agent.command("ping")
    async def ping(params):               # the ack and the result are sent for you
        return {"pong": True}

    async with agent:                      # connects (WebSocket) in the background
        ack = await agent.send({"temperature": 21.5, "humidity": 40})

Commands arrive over WebSocket: each is acknowledged at once, run by its handler, and
answered with a ``command_result`` (``completed`` with the handler's return value, or
``failed`` with the error it raised). A resent command (same ``command_id``) is not run
twice: the agent remembers the last ``remembered_commands`` ids and their results.
Configuration pushes go to the ``on_config`` handler and are reported applied. Firmware
updates are taken once ``enable_firmware_updates`` was called (``agent/updates.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, TypeVar

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from fieldwatch.agent.firmware import call_handler as _call
from fieldwatch.agent.mqtt import MqttDeviceLink, default_url
from fieldwatch.agent.platform import connect_failure
from fieldwatch.agent.updates import UpdatesMixin

log = logging.getLogger(__name__)

Transport = Literal["ws", "http", "mqtt"]

#: A command handler gets the command's params and returns its result (a JSON object, or
#: anything JSON-serialisable); it may be a coroutine function. Raising fails the command.
CommandHandler = Callable[[dict[str, Any]], Any]
#: A config handler gets the whole desired configuration and its version.
ConfigHandler = Callable[[dict[str, Any], int], Any]
H = TypeVar("H", bound=Callable[..., Any])


class AgentError(Exception):
    """The server refused a frame or request (the message says why)."""


class DeviceAgent(UpdatesMixin):
    def __init__(
        self,
        server: str,
        token: str,
        *,
        transport: Transport = "ws",
        timeout_s: float = 10.0,
        heartbeat: bool = True,
        remembered_commands: int = 64,
        mqtt_url: str | None = None,
        firmware_version: str | None = None,
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
        self._handlers: dict[str, CommandHandler] = {}
        self._config_handler: ConfigHandler | None = None
        self.config: dict[str, Any] = {}
        self.config_version = 0
        #: command_id → its result frame (None while it runs): drops resent commands.
        self._seen: OrderedDict[str, dict[str, Any] | None] = OrderedDict()
        self._remember = remembered_commands
        #: command_id → its result frame, until the server acknowledges it (after commit).
        self._unconfirmed: dict[str, dict[str, Any]] = {}
        self._running: set[asyncio.Task[None]] = set()
        self.mqtt_url = mqtt_url
        self._mqtt: MqttDeviceLink | None = None
        #: The version running: sent after every (re)connect and in heartbeats.
        self.firmware_version = firmware_version

    # --- handlers ---------------------------------------------------------------------

    def command(self, name: str) -> Callable[[H], H]:
        """Decorator: handle the command ``name``."""

        def register(handler: H) -> H:
            self._handlers[name] = handler
            return handler

        return register

    def add_command_handler(self, name: str, handler: CommandHandler) -> None:
        self._handlers[name] = handler

    def on_config(self, handler: ConfigHandler) -> ConfigHandler:
        """Decorator (or call): handle configuration pushes."""
        self._config_handler = handler
        return handler

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        if self.transport in ("http", "mqtt"):
            await self._start_http()
            if self.transport == "mqtt":  # the HTTP client only told us who we are
                await self._start_mqtt()
            self.connected.set()
            self._connected()
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

    async def _start_http(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        http = httpx.AsyncClient(base_url=self.server, headers=headers, timeout=self.timeout_s)
        try:
            r = await http.get("/api/v1/device/me")
        except httpx.TransportError as exc:
            await http.aclose()
            raise AgentError(f"cannot reach {self.server}: {connect_failure(exc)}") from None
        if r.status_code != 200:
            await http.aclose()
            raise AgentError(f"the server refused the token: {r.status_code} {r.text}")
        self.device_id = r.json()["device_id"]
        if self.transport == "mqtt":
            await http.aclose()
        else:
            self._http = http

    async def _start_mqtt(self) -> None:
        assert self.device_id is not None
        url = self.mqtt_url or default_url(self.server)
        link = MqttDeviceLink(url, self.device_id, self.token, self._on_mqtt,
                              lambda: self.firmware_version)  # fmt: skip
        try:
            await link.start(self.timeout_s)
        except ConnectionRefusedError as exc:  # (a subclass of the next ones)
            raise AgentError(f"cannot reach {link.address}: {connect_failure(exc)}") from None
        except ConnectionError as exc:  # no CONNACK, or a refused login
            raise AgentError(f"the MQTT broker refused the connection: {exc}") from exc
        except OSError as exc:
            raise AgentError(f"cannot reach {link.address}: {connect_failure(exc)}") from None
        self._mqtt = link

    async def _on_mqtt(self, message: dict[str, Any]) -> None:
        assert self._mqtt is not None
        if message["type"] == "firmware_update":
            self._take_update(message)
            return
        task = asyncio.create_task(self._dispatch(self._mqtt, message))  # type: ignore[arg-type]
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    @property
    def online(self) -> bool:
        """Connected (WebSocket, MQTT), or over HTTP: the last request was answered."""
        if self._mqtt is not None:
            return self._mqtt.connected.is_set()
        return self.connected.is_set()

    async def stop(self) -> None:
        self.connected.clear()
        if self.firmware is not None:
            await self.firmware.stop()
        for task in [*self._tasks, *self._running]:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._ws is not None:
            await self._ws.close()
        if self._mqtt is not None:
            await self._mqtt.stop()
            self._mqtt = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> DeviceAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- sending ----------------------------------------------------------------------

    async def send(
        self, metrics: dict[str, Any], timestamp: datetime | None = None
    ) -> dict[str, Any]:
        """Send readings; returns the server's ack ``{accepted, duplicates, rejected}``
        (over MQTT: ``accepted`` counts the broker's acknowledgements)."""
        body: dict[str, Any] = {"metrics": metrics}
        if timestamp is not None:
            body["timestamp"] = timestamp.isoformat()
        if self._http is not None:
            body["device_id"] = self.device_id
            return await self._post("/api/v1/monitoring/data", body)
        if self._mqtt is not None:
            sent = await self._mqtt.send_readings(metrics, timestamp)
            return {"accepted": sent, "duplicates": 0, "rejected": []}  # the broker's PUBACKs
        return await self._frame({"type": "telemetry", **body})

    async def heartbeat(self, **fields: Any) -> dict[str, Any]:
        if self.firmware_version is not None:
            fields = {"firmware_version": self.firmware_version, **fields}
        if self._http is not None:
            return await self._post(f"/api/v1/devices/{self.device_id}/heartbeat", fields)
        if self._mqtt is not None:
            await self._mqtt.send(json.dumps({"type": "heartbeat", **fields}))
            return {"accepted": len(fields), "duplicates": 0, "rejected": []}
        return await self._frame({"type": "heartbeat", **fields})

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self._http is not None
        try:
            r = await self._http.post(path, json=body)
        except httpx.TransportError as exc:
            self.connected.clear()  # offline until a request is answered again
            raise AgentError(f"cannot reach {self.server}: {connect_failure(exc)}") from None
        self.connected.set()
        if r.status_code >= 400 and r.status_code != 422:
            raise AgentError(f"{r.status_code}: {r.text}")
        return dict(r.json())

    async def _frame(self, frame: dict[str, Any]) -> dict[str, Any]:
        async with asyncio.timeout(self.timeout_s):  # while it reconnects
            await self.connected.wait()
        assert self._ws is not None
        ref = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ref] = future
        try:
            await self._ws.send(json.dumps({**frame, "id": ref}))
            async with asyncio.timeout(self.timeout_s):
                reply = await future
        except ConnectionClosed:
            raise AgentError("connection lost before the ack") from None
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
        self._connected()
        for frame in list(self._unconfirmed.values()):  # the last connection lost their ack
            await ws.send(json.dumps(frame))
        beat = None
        if self.heartbeat_enabled:
            beat = asyncio.create_task(self._heartbeats(), name="agent-heartbeat")
        try:
            async for raw in ws:
                message = json.loads(raw)
                ref = message.get("ref")
                future = self._waiting.get(ref) if isinstance(ref, int) else None
                kind = message.get("type")
                if future is not None and not future.done():
                    future.set_result(message)
                elif kind == "ack" and isinstance(ref, str) and ref.startswith("r:"):
                    self._unconfirmed.pop(ref[2:], None)
                elif kind == "firmware_update":
                    self._take_update(message)
                elif kind in ("command", "config"):
                    task = asyncio.create_task(self._dispatch(ws, message))
                    self._running.add(task)
                    task.add_done_callback(self._running.discard)
                elif kind == "error":
                    log.warning("server error frame: %s", message)
        finally:
            if beat is not None:
                beat.cancel()

    async def _dispatch(self, ws: ClientConnection, message: dict[str, Any]) -> None:
        try:
            if message["type"] == "command":
                await self._run_command(ws, message)
            else:
                await self._apply_config(ws, message)
        except (ConnectionClosed, ConnectionError):
            pass  # the server resends unacknowledged commands; results go again on reconnect
        except Exception:
            log.exception("handling a %s frame failed", message.get("type"))

    async def _run_command(self, ws: ClientConnection, message: dict[str, Any]) -> None:
        command_id = str(message.get("command_id"))
        await ws.send(json.dumps({"type": "command_ack", "command_id": command_id}))
        if command_id in self._seen:  # a resend: acknowledge again, do not run it twice
            done = self._seen[command_id]
            if done is not None:
                await ws.send(json.dumps(done))
            return
        self._seen[command_id] = None
        while len(self._seen) > self._remember:
            self._seen.popitem(last=False)
        name = str(message.get("command"))
        handler = self._handlers.get(name)
        status, result = "completed", None
        if handler is None:
            status, result = "failed", {"error": f"unknown command {name!r}"}
        else:
            try:
                result = await _call(handler, message.get("params") or {})
            except Exception as exc:
                status, result = "failed", {"error": str(exc) or type(exc).__name__}
        if result is not None and not isinstance(result, dict):
            result = {"value": result}
        frame = {"type": "command_result", "command_id": command_id, "status": status,
                 "result": result or {}, "id": f"r:{command_id}"}  # fmt: skip
        self._seen[command_id] = self._unconfirmed[command_id] = frame
        await ws.send(json.dumps(frame))

    async def _apply_config(self, ws: ClientConnection, message: dict[str, Any]) -> None:
        version = int(message.get("version") or 0)
        config = message.get("config") or {}
        if version < self.config_version:
            return  # older than what is applied
        if version > self.config_version:  # (the same one again: report it again)
            if self._config_handler is not None:
                await _call(self._config_handler, config, version)
            self.config, self.config_version = config, version
        applied = {"type": "config_applied", "version": version}
        if message.get("config_id"):
            applied["config_id"] = message["config_id"]
        await ws.send(json.dumps(applied))

    async def _heartbeats(self) -> None:
        interval = float(self.server_config.get("heartbeat_interval", 60))
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(AgentError, TimeoutError):
                await self.heartbeat()
