"""MQTT devices for the tests: a paho-mqtt ``Peer`` with its own network thread, the
gateway over the embedded broker as fixtures (``gateway``, ``peers``), a Mosquitto with
dynamic security (``mosquitto_dynsec``), and the small waits and reads the MQTT tests
share. A test module imports the fixtures it uses from here."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.reasoncodes import ReasonCode

from conftest import Actor, require_dynsec_mosquitto
from fieldwatch.app import device_edge
from fieldwatch.runtime import Runtime
from fieldwatch.transports.mqtt import topics
from fieldwatch.transports.mqtt.gateway import MqttGateway
from mqtt_helpers import Mosquitto
from telemetry_helpers import device_with_token


class Peer:
    """A paho-mqtt 2 client running its own network thread."""

    def __init__(
        self,
        port: int,
        username: str | None = None,
        password: str | None = None,
        *,
        client_id: str = "",
        clean_session: bool = True,
        will: tuple[str, bytes] | None = None,
        keepalive: int = 30,
        protocol: int = mqtt.MQTTv311,
    ) -> None:
        extra: dict[str, Any] = {} if protocol == mqtt.MQTTv5 else {"clean_session": clean_session}
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, **extra
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if will is not None:
            self.client.will_set(will[0], will[1], qos=1)
        self.port = port
        self.keepalive = keepalive
        self.connack: ReasonCode | None = None
        self.session_present = False
        self.messages: list[tuple[str, bytes]] = []
        self.subacks: dict[int, list[int]] = {}
        self.disconnects = 0
        self._cond = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            client.disconnect()  # no reconnect attempts
        with self._cond:
            self.connack, self.session_present = rc, bool(flags.session_present)
            self._cond.notify_all()

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((message.topic, bytes(message.payload)))
            self._cond.notify_all()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        with self._cond:
            self.subacks[mid] = [int(code.value) for code in codes]
            self._cond.notify_all()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        with self._cond:
            self.disconnects += 1
            self._cond.notify_all()

    def _wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    async def wait(self, predicate: Callable[[], bool], within: float = 5.0) -> bool:
        return await asyncio.to_thread(self._wait, predicate, within)

    async def connect(self) -> ReasonCode:
        await asyncio.to_thread(self.client.connect, "127.0.0.1", self.port, self.keepalive)
        self.client.loop_start()
        assert await self.wait(lambda: self.connack is not None), "no CONNACK"
        assert self.connack is not None
        if self.connack.is_failure:
            await asyncio.to_thread(self.client.loop_stop)
        return self.connack

    async def subscribe(self, topic_filter: str, qos: int = 1) -> int:
        _, mid = self.client.subscribe(topic_filter, qos)
        assert await self.wait(lambda: mid in self.subacks), f"no SUBACK for {topic_filter}"
        return self.subacks[mid][0]

    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos, retain)
        if qos:
            await asyncio.to_thread(info.wait_for_publish, 5)

    async def received(self, topic: str, within: float = 5.0) -> bool:
        return await self.wait(lambda: any(t == topic for t, _ in self.messages), within)

    def got(self, topic: str) -> bool:
        with self._cond:
            return any(t == topic for t, _ in self.messages)

    async def drop(self) -> None:
        """Close the socket without DISCONNECT, as a crashed device would."""
        await asyncio.to_thread(self.client.loop_stop)
        sock = self.client.socket()
        assert sock is not None
        sock.close()

    async def close(self) -> None:
        self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)


WAIT_S = 10.0


@pytest.fixture
async def gateway(runtime: Runtime) -> AsyncIterator[MqttGateway]:
    runtime.settings.mqtt_port = 0  # a free port
    gw = MqttGateway(device_edge(runtime))
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


@contextlib.asynccontextmanager
async def peers_on(port: int) -> AsyncIterator[Callable[..., Peer]]:
    """Make ``Peer``s for the broker on ``port``; all are disconnected afterwards."""
    made: list[Peer] = []

    def make(*args: Any, **kwargs: Any) -> Peer:
        peer = Peer(port, *args, **kwargs)
        made.append(peer)
        return peer

    try:
        yield make
    finally:
        for peer in made:
            peer.client.disconnect()
            await asyncio.to_thread(peer.client.loop_stop)


@pytest.fixture
async def peers(gateway: MqttGateway) -> AsyncIterator[Callable[..., Peer]]:
    async with peers_on(gateway.broker.port) as make:
        yield make


async def eventually(check: Callable[[], Any], within: float = WAIT_S) -> Any:
    async with asyncio.timeout(within):
        while True:
            found = await check()
            if found:
                return found
            await asyncio.sleep(0.05)


async def device_peer(client, actor: Actor, peers, **kw: Any) -> tuple[dict, Peer]:
    device, headers = await device_with_token(client, actor)
    token = headers["Authorization"].split()[1]
    will = (topics.status(device["id"]), json.dumps({"status": "offline"}).encode())
    peer = peers(device["id"], token, client_id=device["id"], will=will, **kw)
    assert (await peer.connect()) == "Success"
    return device, peer


def dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


async def latest(client, actor: Actor, device_id: str) -> dict[str, Any]:
    r = await client.get(f"/api/v1/devices/{device_id}/data/latest", headers=actor.headers)
    return dict(r.json()["metrics"]) if r.status_code == 200 else {}


async def connectivity(client, actor: Actor, device_id: str) -> str:
    r = await client.get(f"/api/v1/devices/{device_id}/status", headers=actor.headers)
    return str(r.json()["connectivity"])


async def has_metrics(metrics_coro, names: set[str]) -> dict | None:
    metrics = await metrics_coro
    return metrics if names <= set(metrics) else None


async def is_value(coro, value: Any) -> bool:
    return bool(await coro == value)


@pytest.fixture
def mosquitto_dynsec():
    require_dynsec_mosquitto()
    with Mosquitto(dynsec=True) as broker:
        yield broker
