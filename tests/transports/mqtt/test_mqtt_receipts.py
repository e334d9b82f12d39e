"""The embedded broker acknowledges a device's QoS 1 PUBLISH only after Fieldwatch's
gateway client (the ``service`` principal) has acknowledged its copy, which the gateway
does after the commit. Real paho clients against the real broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from test_mqtt_embedded import DEVICE_A, DEVICE_B, authority, broker, peers

from fieldwatch.transports.mqtt import topics
from mqtt_peers import Peer

__all__ = ["authority", "broker", "peers"]  # the fixtures used here


class HeldGateway(Peer):
    """A service client that acknowledges only when told (``manual_ack``)."""

    def __init__(self, port: int) -> None:
        super().__init__(port, "gateway", "gw-secret", client_id="gateway")
        self.client.manual_ack_set(True)
        self.mids: list[int] = []

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.mids.append(message.mid)
        super()._on_message(client, userdata, message)

    def ack_all(self) -> None:
        for mid in self.mids:
            self.client.ack(mid, 1)


async def held_gateway(port: int) -> HeldGateway:
    gw = HeldGateway(port)
    assert (await gw.connect()) == "Success"
    assert await gw.subscribe("iot/#") == 1
    return gw


async def not_within(check: Callable[[], bool], seconds: float) -> bool:
    """True when ``check`` stays false for ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return False
        await asyncio.sleep(0.02)
    return True


async def test_puback_waits_for_the_gateway_acknowledgement(peers, broker) -> None:
    gw = await held_gateway(broker.port)
    dev = peers(DEVICE_A, "token-a", client_id=DEVICE_A)
    assert (await dev.connect()) == "Success"
    topic = topics.data(DEVICE_A, "temp")
    info = dev.client.publish(topic, b"21.5", qos=1)
    assert await gw.received(topic)
    assert await not_within(info.is_published, 0.5)  # the gateway holds its copy
    gw.ack_all()
    await asyncio.to_thread(info.wait_for_publish, 5)
    assert info.is_published()
    assert dev.disconnects == 0
    await gw.close()


async def test_refused_publishes_are_acknowledged_and_dropped(peers, broker) -> None:
    gw = await held_gateway(broker.port)
    dev = peers(DEVICE_A, "token-a", client_id=DEVICE_A)
    assert (await dev.connect()) == "Success"
    info = dev.client.publish(topics.data(DEVICE_B, "temp"), b"1", qos=1)
    await asyncio.to_thread(info.wait_for_publish, 5)
    assert info.is_published() and gw.messages == [] and dev.disconnects == 0
    await gw.close()


async def test_without_the_gateway_the_device_is_not_acknowledged_and_resends(
    peers, broker
) -> None:
    dev = peers(DEVICE_A, "token-a", client_id=DEVICE_A, clean_session=False)
    dev.client.reconnect_delay_set(0.1, 0.3)
    assert (await dev.connect()) == "Success"
    topic = topics.data(DEVICE_A, "temp")
    info = dev.client.publish(topic, b"22.5", qos=1)
    assert await dev.wait(lambda: dev.disconnects >= 1)  # nobody took it: no PUBACK
    assert not info.is_published()
    gw = peers("gateway", "gw-secret", client_id="gateway")
    assert (await gw.connect()) == "Success"
    assert await gw.subscribe("iot/#") == 1
    assert await gw.received(topic)  # sent again after the reconnect
    await asyncio.to_thread(info.wait_for_publish, 5)
    assert info.is_published()


async def test_a_copy_lost_with_the_gateway_connection_is_not_acknowledged(peers, broker) -> None:
    gw = await held_gateway(broker.port)
    dev = peers(DEVICE_A, "token-a", client_id=DEVICE_A, clean_session=False)
    dev.client.reconnect_delay_set(5, 5)  # stays away while we look
    assert (await dev.connect()) == "Success"
    topic = topics.data(DEVICE_A, "temp")
    info = dev.client.publish(topic, b"23.5", qos=1)
    assert await gw.received(topic)
    await gw.drop()  # the gateway dies before committing
    assert await dev.wait(lambda: dev.disconnects >= 1)
    assert not info.is_published()
