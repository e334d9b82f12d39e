"""The embedded broker's in-process path (``embedded/handover.py``): a device's message
on a topic only the gateway receives goes straight into the gateway link's inbox, and
the device's PUBACK waits until the gateway says it is committed. A real broker, a real
``MqttLink`` as the gateway and real paho devices."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import paho.mqtt.client as mqtt
import pytest
from test_mqtt_embedded import DEVICE_A, DEVICE_B, authority, broker, peers
from test_mqtt_receipts import not_within

from fieldwatch.transports.mqtt import topics
from fieldwatch.transports.mqtt.embedded import EmbeddedBroker
from fieldwatch.transports.mqtt.embedded.handover import Handover
from fieldwatch.transports.mqtt.link import (
    HANDED,
    IncomingMessage,
    MessageHandler,
    MqttLink,
    MqttLinkOptions,
)
from mqtt_link_helpers import eventually
from mqtt_peers import Peer

__all__ = ["authority", "broker", "peers"]  # the fixtures used here


class Gateway:
    """The gateway's side: a link subscribed to everything whose handler records each
    batch; ``commit()`` acknowledges what it holds, both ways (as ``MqttGateway``)."""

    def __init__(self, broker: EmbeddedBroker) -> None:
        options = MqttLinkOptions(
            "127.0.0.1", broker.port, client_id="gateway", username="gateway",
            password="gw-secret", connect_timeout=5.0, client="paho",
        )  # fmt: skip
        self.link = MqttLink(options, handler=self.handle)
        self.broker = broker
        self.handover: Handover | None = None
        self.held: list[IncomingMessage] = []
        self.messages: list[IncomingMessage] = []

    async def handle(self, batch: list[IncomingMessage]) -> None:
        self.messages.extend(batch)
        self.held.extend(batch)

    def commit(self) -> None:
        held, self.held = self.held, []
        self.link.ack(held)
        if self.handover is not None:
            self.handover.ack(held)

    def on(self, topic: str) -> list[IncomingMessage]:
        return [m for m in self.messages if m.topic == topic]


@pytest.fixture
async def gateway(broker: EmbeddedBroker) -> AsyncIterator[Gateway]:
    gw = Gateway(broker)
    await gw.link.start()
    await gw.link.subscribe("iot/#", 1)
    gw.handover = broker.hand_over(gw.link)
    try:
        yield gw
    finally:
        broker.hand_over(None)
        await gw.link.stop()


async def device(peers: Callable[..., Peer], name: str = DEVICE_A, **kw: object) -> Peer:
    dev = peers(name, "token-a" if name == DEVICE_A else "token-b", client_id=name, **kw)
    assert (await dev.connect()) == "Success"
    return dev


async def small_gateway(
    broker: EmbeddedBroker, handler: MessageHandler, max_pending: int
) -> tuple[MqttLink, Handover]:
    """A gateway link taking one message at a time with room for ``max_pending``, handed
    the broker's messages (stopped by the test)."""
    options = MqttLinkOptions(
        "127.0.0.1", broker.port, client_id="gateway", username="gateway",
        password="gw-secret", connect_timeout=5.0, client="paho", batch_size=1,
        max_pending=max_pending,
    )  # fmt: skip
    link = MqttLink(options, handler=handler)
    await link.start()
    handover = broker.hand_over(link)
    assert handover is not None
    return link, handover


async def committed(gateway: Gateway, info: mqtt.MQTTMessageInfo) -> None:
    """The gateway commits what it holds: the device's PUBACK comes."""
    gateway.commit()
    await asyncio.to_thread(info.wait_for_publish, 5)
    assert info.is_published()


async def test_data_is_handed_over_once_and_acknowledged_after_the_commit(
    peers, gateway: Gateway
) -> None:
    dev = await device(peers)
    topic = topics.data(DEVICE_A, "temp")
    info = dev.client.publish(topic, b"21.5", qos=1)
    await eventually(lambda: gateway.on(topic), "the handed-over message")
    [message] = gateway.on(topic)
    assert (message.connection, message.payload, message.qos) == (HANDED, b"21.5", 1)
    assert gateway.handover is not None and gateway.handover.waiting == 1
    assert await not_within(info.is_published, 0.5)  # not committed yet: no PUBACK
    gateway.commit()
    await asyncio.to_thread(info.wait_for_publish, 5)
    assert info.is_published() and dev.disconnects == 0
    assert gateway.handover.waiting == 0
    await asyncio.sleep(0.3)
    assert len(gateway.on(topic)) == 1  # not also delivered over the link's connection


async def test_heartbeats_and_qos0_are_handed_over(peers, gateway: Gateway) -> None:
    dev = await device(peers)
    heartbeat, data = topics.heartbeat(DEVICE_A), topics.data(DEVICE_A, "rssi")
    dev.client.publish(data, b"-70", qos=0)
    info = dev.client.publish(heartbeat, b'{"uptime": 5}', qos=1)
    await eventually(lambda: gateway.on(heartbeat) and gateway.on(data), "both messages")
    assert [m.connection for m in gateway.messages] == [HANDED, HANDED]
    assert [m.qos for m in gateway.messages] == [0, 1]
    await committed(gateway, info)


async def test_a_refused_topic_is_acknowledged_dropped_and_counted(
    peers, broker: EmbeddedBroker, gateway: Gateway
) -> None:
    dev = await device(peers)
    topic = topics.data(DEVICE_B, "temp")  # another device's topic
    before = broker.gate.refusals.counts["acl"]
    info = dev.client.publish(topic, b"1", qos=1)
    await asyncio.to_thread(info.wait_for_publish, 5)
    assert info.is_published() and dev.disconnects == 0
    assert broker.gate.refusals.counts["acl"] == before + 1
    await asyncio.sleep(0.2)
    assert gateway.messages == []


async def test_what_a_device_may_subscribe_to_takes_the_broker_s_way(
    peers, gateway: Gateway
) -> None:
    """A command result is on a topic the device itself may subscribe to: it is
    broadcast as before (the device gets its copy, the gateway its own over the link)."""
    dev = await device(peers)
    assert await dev.subscribe(f"iot/devices/{DEVICE_A}/#") == 1
    topic = topics.command_result(DEVICE_A, "c1")
    info = dev.client.publish(topic, b'{"status": "completed"}', qos=1)
    await eventually(lambda: gateway.on(topic), "the gateway's copy")
    [message] = gateway.on(topic)
    assert message.connection != HANDED
    assert await dev.received(topic)
    await committed(gateway, info)


async def test_not_committed_in_time_the_device_is_disconnected_and_resends(
    peers, gateway: Gateway
) -> None:
    assert gateway.handover is not None
    gateway.handover.timeout = 0.5
    dev = await device(peers, clean_session=False)
    dev.client.reconnect_delay_set(0.1, 0.3)
    topic = topics.data(DEVICE_A, "temp")
    info = dev.client.publish(topic, b"22.5", qos=1)
    assert await dev.wait(lambda: dev.disconnects >= 1)  # no PUBACK, connection closed
    assert not info.is_published()
    await eventually(lambda: len(gateway.on(topic)) >= 2, "the message sent again")
    assert gateway.on(topic)[-1].dup  # paho marks the resent PUBLISH
    await committed(gateway, info)


async def test_a_stopped_handover_leaves_messages_unacknowledged(
    peers, broker: EmbeddedBroker, gateway: Gateway
) -> None:
    dev = await device(peers, clean_session=False)
    dev.client.reconnect_delay_set(5, 5)  # stays away while we look
    topic = topics.data(DEVICE_A, "temp")
    info = dev.client.publish(topic, b"23.5", qos=1)
    await eventually(lambda: gateway.on(topic), "the handed-over message")
    broker.hand_over(None)  # the gateway stops before committing
    gateway.commit()  # too late: that handover is closed
    assert await dev.wait(lambda: dev.disconnects >= 1)
    assert not info.is_published()


async def test_the_sender_waits_while_the_inbox_is_full(peers, broker: EmbeddedBroker) -> None:
    """Back-pressure: with the gateway's inbox full, a handed-over message waits (its
    PUBACK too) and goes in once the gateway has taken the ones before it."""
    release = asyncio.Event()
    taken: list[IncomingMessage] = []

    async def slow(batch: list[IncomingMessage]) -> None:
        await release.wait()
        taken.extend(batch)
        handover.ack(batch)

    link, handover = await small_gateway(broker, slow, max_pending=2)
    try:
        dev = await device(peers)
        topic = topics.data(DEVICE_A, "temp")
        infos = [dev.client.publish(topic, str(i).encode(), qos=1) for i in range(5)]
        # one in the handler, two in the inbox, the other two wait for room
        await eventually(lambda: link.pending == 2, "a full inbox")
        await asyncio.sleep(0.3)
        assert link.pending == 2 and taken == []
        release.set()
        for info in infos:
            await asyncio.to_thread(info.wait_for_publish, 5)
        assert [m.payload for m in taken] == [str(i).encode() for i in range(5)]
        assert all(info.is_published() for info in infos)
    finally:
        broker.hand_over(None)
        await link.stop()


async def test_a_last_will_is_handed_over_after_the_device_s_messages(
    peers, gateway: Gateway
) -> None:
    """The will goes the same way as the device's own messages, so it never overtakes
    them (nor what the device sends once back)."""
    status = topics.status(DEVICE_A)
    dev = await device(peers, will=(status, b'{"status": "offline"}'))
    topic = topics.data(DEVICE_A, "temp")
    info = dev.client.publish(topic, b"24.5", qos=1)
    await eventually(lambda: gateway.on(topic), "the reading")
    await committed(gateway, info)  # (paho does not stop with a message in flight)
    await dev.drop()  # a crash: the broker publishes the will
    await eventually(lambda: gateway.on(status), "the last will")
    [will] = gateway.on(status)
    assert (will.connection, will.payload, will.qos) == (HANDED, b'{"status": "offline"}', 0)
    assert [m.topic for m in gateway.messages] == [topic, status]


async def test_a_message_that_waits_too_long_for_room_is_not_acknowledged(
    peers, broker: EmbeddedBroker
) -> None:
    """The receipt's deadline counts from the message's arrival, the wait for room in
    the gateway's inbox included."""
    release = asyncio.Event()

    async def stuck(batch: list[IncomingMessage]) -> None:
        await release.wait()

    link, handover = await small_gateway(broker, stuck, max_pending=1)
    try:
        dev = await device(peers)
        topic = topics.data(DEVICE_A, "temp")
        first, second = (dev.client.publish(topic, str(n).encode(), qos=1) for n in (1, 2))
        await eventually(lambda: link.pending == 1, "one in hand, one queued: full")
        handover.timeout = 0.5  # for what comes now
        third = dev.client.publish(topic, b"3", qos=1)  # waits for room, then gives up
        assert await dev.wait(lambda: dev.disconnects >= 1, within=5)
        assert not (first.is_published() or second.is_published() or third.is_published())
    finally:
        release.set()
        broker.hand_over(None)
        await link.stop()
