"""The device side of the MQTT protocol for ``DeviceAgent``: a paho-mqtt client (its own
network thread) logged in as the device (username = device id, password = token), with
a last will that marks the device offline, subscribed to its command, config and firmware
update topics; its ``online`` status message names the firmware version it runs.

Readings go to ``iot/devices/data/{id}/{metric}`` with QoS 1; ``send`` returns when the
broker has acknowledged every one of them (the broker's PUBACK, not the database
commit: MQTT has no end-to-end acknowledgement).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from fieldwatch.transports.mqtt import topics

log = logging.getLogger(__name__)

PUBACK_TIMEOUT_S = 10.0

OnMessage = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]
_FRAMES = {topics.Kind.COMMAND: "command", topics.Kind.CONFIG: "config",
           topics.Kind.FIRMWARE_UPDATE: "firmware_update"}  # fmt: skip


class MqttDeviceLink:
    def __init__(
        self,
        url: str,
        device_id: str,
        token: str,
        on_message: OnMessage,
        version: Callable[[], str | None] = lambda: None,
    ) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 1883
        self.device_id = device_id
        self.on_message = on_message
        self.version = version
        self.connected = asyncio.Event()
        self.refused: str | None = None
        self._answered = asyncio.Event()  # the first CONNACK came (accepted or not)
        self._loop = asyncio.get_running_loop()
        self._lock = threading.Lock()
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=device_id, protocol=paho.MQTTv311
        )
        client.username_pw_set(device_id, token)
        client.will_set(topics.status(device_id), json.dumps({"status": "offline"}), qos=1)
        if parts.scheme in ("mqtts", "ssl"):
            client.tls_set()
        client.reconnect_delay_set(1, 60)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client

    async def start(self, timeout_s: float) -> None:
        await asyncio.to_thread(self.client.connect, self.host, self.port, 30)
        self.client.loop_start()
        try:
            async with asyncio.timeout(timeout_s):
                await self._answered.wait()
        except TimeoutError:
            pass
        if not self.connected.is_set():
            await self.stop()
            raise ConnectionError(self.refused or f"no MQTT connection to {self.host}:{self.port}")

    async def stop(self) -> None:
        if self.client.is_connected():
            info = self.client.publish(topics.status(self.device_id), b'{"status":"offline"}', 1)
            await asyncio.to_thread(info.wait_for_publish, 2)
        self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)

    # paho's thread ------------------------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            self.refused = f"the broker refused the login: {rc}"
            client.disconnect()  # a refused token will not become valid by retrying
            self._loop.call_soon_threadsafe(self._answered.set)
            return
        device = self.device_id
        client.subscribe([(f"{topics.PREFIX}/{device}/commands/+", 1),
                          (f"{topics.PREFIX}/{device}/config/+", 1),
                          (f"{topics.PREFIX}/{device}/firmware/update/+", 1)])  # fmt: skip
        client.publish(topics.status(device), json.dumps(self._online(self.version())), qos=1)
        self._loop.call_soon_threadsafe(self.connected.set)
        self._loop.call_soon_threadsafe(self._answered.set)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self._loop.call_soon_threadsafe(self.connected.clear)

    def _on_message(self, client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
        topic = topics.parse(message.topic)
        if topic is None or topic.kind not in _FRAMES:
            return
        try:
            body = json.loads(message.payload)
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        kind = _FRAMES[topic.kind]
        frame = {**body, "type": kind}
        if kind == "command":
            frame.setdefault("command_id", topic.command_id)
            frame.setdefault("params", body.get("parameters") or {})
        elif kind == "firmware_update":
            frame["update_id"] = topic.update_id
        else:
            frame.setdefault("config_id", topic.config_id)
            frame.setdefault("config", body.get("updates") or {})
        asyncio.run_coroutine_threadsafe(self.on_message(frame), self._loop)

    # sending --------------------------------------------------------------------------

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"mqtt://{host}:{self.port}"

    async def publish(self, topic: str, body: dict[str, Any]) -> None:
        info = self.client.publish(topic, json.dumps(body), qos=1)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"not connected ({paho.error_string(info.rc)})")
        await asyncio.to_thread(info.wait_for_publish, PUBACK_TIMEOUT_S)
        if not info.is_published():  # (wait_for_publish returns at its timeout too)
            raise TimeoutError(f"no PUBACK from {self.address} within {PUBACK_TIMEOUT_S:g} s")

    @staticmethod
    def _online(version: str | None) -> dict[str, Any]:
        return {"status": "online", **({"firmware_version": version} if version else {})}

    async def announce(self, version: str) -> None:
        """The version running, on the status topic."""
        await self.publish(topics.status(self.device_id), self._online(version))

    async def send_readings(self, metrics: dict[str, Any], timestamp: datetime | None) -> int:
        """One message: a reading on its sensor's topic, several metrics at once on the
        ``metrics`` topic (as a board with many sensors should)."""
        stamp = {"timestamp": timestamp.isoformat()} if timestamp is not None else {}
        if len(metrics) == 1:
            ((name, value),) = metrics.items()
            await self.publish(topics.data(self.device_id, name), {"value": value, **stamp})
        elif metrics:
            body = {"metrics": metrics, **stamp}
            await self.publish(topics.data(self.device_id, topics.METRICS), body)
        return len(metrics)

    async def send(self, raw: str) -> None:
        """A protocol frame (as the WebSocket agent writes them) to its MQTT topic."""
        frame = json.loads(raw)
        kind = frame.pop("type")
        device = self.device_id
        if kind == "command_ack":
            await self.publish(topics.command_ack(device, frame["command_id"]), frame)
        elif kind == "command_result":
            await self.publish(topics.command_result(device, frame["command_id"]), frame)
        elif kind == "config_applied":
            config_id = frame.pop("config_id", None) or "current"
            await self.publish(topics.config_applied(device, config_id), frame)
        elif kind == "heartbeat":
            await self.publish(topics.heartbeat(device), frame)
        else:
            raise ValueError(f"no MQTT topic for {kind!r} frames")


def default_url(server: str, port: int = 1883) -> str:
    """The embedded broker's address next to ``server``: same host, ``port``."""
    host = unquote(urlsplit(server).hostname or "127.0.0.1")
    return f"mqtt://{f'[{host}]' if ':' in host else host}:{port}"
