"""``DeviceAgent``'s side of firmware updates: the transport-neutral ``FirmwareUpdater``
wired to the agent's connection.

- WebSocket: ``firmware_update`` frames in; ``firmware_state`` frames out, each waiting
  for its ``ack`` (the server's commit); the version in a ``status`` frame after every
  (re)connect and in every heartbeat.
- MQTT: update messages on ``iot/devices/{id}/firmware/update/{update_id}``; reports to
  ``…/{update_id}/state`` (QoS 1); the version in the ``online`` status message and in
  heartbeats.
- HTTP: ``poll()`` asks ``GET /api/v1/device/firmware/next`` once; with
  ``poll_updates=True`` the agent polls by itself after every (re)connect, each time
  after the ``poll_after_s`` the server answered (``keep_polling``). Reports go to
  ``POST /api/v1/device/firmware/updates/{update_id}/state``; the version in heartbeats.

The default "reboot" takes the new version and reconnects: the device comes back and
reports the version it runs, which is what completes the update on the server. Give
``reboot`` to do more (the simulator restarts its device).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fieldwatch.agent.firmware import FirmwareHooks, FirmwareUpdater
from fieldwatch.transports.mqtt import topics

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

    from fieldwatch.agent.client import DeviceAgent
    from fieldwatch.agent.mqtt import MqttDeviceLink

log = logging.getLogger(__name__)

#: How long ``keep_polling`` waits after a poll that failed (no answer, or not a 200).
POLL_RETRY_S = 30.0
#: How often ``keep_polling`` looks whether the update being worked on is done with.
WORKING_CHECK_S = 1.0


async def announce(agent: DeviceAgent) -> None:
    """Tell the server the version running (nothing when it is not known)."""
    version = agent.firmware_version
    if version is None:
        return
    if agent._mqtt is not None:
        await agent._mqtt.announce(version)
    elif agent._http is not None:
        await agent.heartbeat()  # carries the version
    else:
        await agent._frame({"type": "status", "firmware_version": version})


class AgentFirmware:
    def __init__(
        self,
        agent: DeviceAgent,
        directory: str | Path,
        *,
        public_keys: Iterable[bytes | str | Ed25519PublicKey] = (),
        require_signature: bool = False,
        install: Callable[[Path, dict[str, Any]], Any] | None = None,
        reboot: Callable[[dict[str, Any]], Any] | None = None,
        use_token: bool = True,
        poll_updates: bool = False,
    ) -> None:
        self.agent = agent
        #: Over HTTP: poll for updates by itself while connected (``keep_polling``).
        self.poll_updates = poll_updates
        self._poller: asyncio.Task[None] | None = None
        hooks = FirmwareHooks(
            report=self.report, version=lambda: agent.firmware_version,
            announce=self.announce, reboot=reboot or self.reboot, install=install,
        )  # fmt: skip
        self.updater = FirmwareUpdater(
            directory, hooks, server=agent.server, token=agent.token if use_token else None,
            public_keys=public_keys, require_signature=require_signature,
            timeout_s=max(30.0, agent.timeout_s),
        )  # fmt: skip
        self._tasks: set[asyncio.Task[None]] = set()

    # --- in -----------------------------------------------------------------------------

    def take(self, message: dict[str, Any]) -> None:
        """An update message arrived: worked on in the background (a resend of the one
        being worked on does nothing)."""
        self._spawn(self.updater.handle(message))

    def connected(self) -> None:
        """After every (re)connect: report the version, continue an interrupted update,
        and over HTTP with ``poll_updates`` poll for updates (one poller at a time)."""
        self._spawn(self._after_connect())
        polling = self._poller is not None and not self._poller.done()
        if self.poll_updates and self.agent._http is not None and not polling:
            self._poller = self._spawn(self.keep_polling())

    async def _after_connect(self) -> None:
        with contextlib.suppress(Exception):
            await self.announce()
        await self.updater.resume()

    def _spawn(self, work: Any) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def stop(self) -> None:
        """Stop working (as a power cut would: the partial download stays)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def poll(self) -> float:
        """Over HTTP: ask whether an update waits (saying the version running, which is
        a version report) and take it in the background; returns the seconds the server
        asks to wait before the next poll."""
        agent = self.agent
        if agent._http is None:
            raise RuntimeError("polling for updates is for the HTTP transport")
        params = {"version": agent.firmware_version} if agent.firmware_version else {}
        r = await agent._http.get("/api/v1/device/firmware/next", params=params)
        if r.status_code != 200:
            raise RuntimeError(f"{r.status_code}: {r.text}")
        body = r.json()
        if body.get("action") == "update" and isinstance(body.get("update"), dict):
            self.take(body["update"])
        return float(body.get("poll_after_s") or 60)

    async def keep_polling(self) -> None:
        """Over HTTP: ``poll()`` until cancelled (``stop``), each time after the seconds
        the server asked for; after a failed poll, after ``POLL_RETRY_S``. An update
        handed out is taken by the updater. No poll while the updater works on an
        update: the device has what it needs, and a poll names the version running,
        which the server would take for the device back from its reboot."""
        wait = 0.0
        while True:
            await asyncio.sleep(max(0.0, wait))
            if self.updater.working:  # asked again once the update is done with
                wait = max(wait, WORKING_CHECK_S)
                continue
            try:
                wait = await self.poll()
            except (httpx.HTTPError, RuntimeError, ValueError) as exc:
                log.info("polling for firmware updates failed: %s", exc)
                wait = POLL_RETRY_S

    # --- out ----------------------------------------------------------------------------

    async def report(self, update_id: str, state: str, fields: dict[str, Any]) -> None:
        agent = self.agent
        body = {"state": state, **fields}
        if agent._mqtt is not None:
            assert agent.device_id is not None
            await agent._mqtt.publish(topics.firmware_state(agent.device_id, update_id), body)
        elif agent._http is not None:
            await agent._post(f"/api/v1/device/firmware/updates/{update_id}/state", body)
        else:
            await agent._frame({"type": "firmware_state", "update_id": update_id, **body})

    async def announce(self) -> None:
        await announce(self.agent)

    async def reboot(self, message: dict[str, Any]) -> None:
        """Run the new version: take it, and reconnect."""
        agent = self.agent
        agent.firmware_version = str(message["version"])
        log.info("firmware %s installed; reconnecting", agent.firmware_version)
        await agent.reconnect()


class UpdatesMixin:
    """``DeviceAgent``'s firmware methods."""

    firmware: AgentFirmware | None = None
    firmware_version: str | None
    _mqtt: MqttDeviceLink | None
    _ws: ClientConnection | None
    _http: httpx.AsyncClient | None
    _running: set[asyncio.Task[None]]

    async def _start_mqtt(self) -> None: ...

    def enable_firmware_updates(self, directory: str | Path, **options: Any) -> AgentFirmware:
        """Take firmware updates, downloading to ``directory``; ``options``: those of
        ``AgentFirmware`` (``public_keys``, ``require_signature``, ``install``, ``reboot``,
        ``poll_updates``: over HTTP, poll for updates by itself)."""
        self.firmware = AgentFirmware(self, directory, **options)  # type: ignore[arg-type]
        return self.firmware

    def _connected(self) -> None:
        if self.firmware is not None:
            self.firmware.connected()  # reports the version, continues an update
        elif self.firmware_version is not None:
            task = asyncio.create_task(announce(self))  # type: ignore[arg-type]
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _take_update(self, message: dict[str, Any]) -> None:
        if self.firmware is None:
            log.info("a firmware update came, but updates are not enabled; ignored")
        else:
            self.firmware.take(message)

    async def reconnect(self) -> None:
        """Drop the connection and connect again (as after a restart)."""
        if self._mqtt is not None:
            await self._mqtt.stop()
            self._mqtt = None
            await self._start_mqtt()
            self._connected()
        elif self._ws is not None:
            await self._ws.close()  # the connection loop comes back by itself
        else:
            self._connected()
