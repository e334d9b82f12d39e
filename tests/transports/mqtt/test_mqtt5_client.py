"""What only the mqtt5 client of MqttLink does: it refuses MQTT 3.1.1 (the options, the
settings, the embedded broker), and it reads what the broker sends defensively (packets
split anywhere, a topic that is not UTF-8, bytes that are no packet, a DISCONNECT)."""

from __future__ import annotations

import asyncio
import logging

import pytest
import uvloop
from amqtt.broker import Broker
from mqtt5 import DisconnectPacket, DisconnectReasonCode
from pydantic import ValidationError

from fieldwatch.app import device_edge
from fieldwatch.core.settings import Settings
from fieldwatch.runtime import Runtime
from fieldwatch.transports.mqtt.gateway import MqttGateway
from fieldwatch.transports.mqtt.link import IncomingMessage, MqttConnectError, MqttLinkOptions
from mqtt_helpers import Mosquitto, free_port
from mqtt_link_helpers import Collector, ScriptedBroker, broker, eventually, new_link

__all__ = ["broker"]  # the fixtures used here


def publish_packet(topic: bytes, mid: int, payload: bytes) -> bytes:
    """An MQTT 5 QoS 1 PUBLISH, written by hand (the codec refuses to write a bad one)."""
    body = len(topic).to_bytes(2, "big") + topic + mid.to_bytes(2, "big") + b"\x00" + payload
    return bytes([0x32, len(body)]) + body


def test_the_options_refuse_mqtt311() -> None:
    with pytest.raises(ValueError, match="MQTT 5 only"):
        MqttLinkOptions("127.0.0.1", client_id="fw", client="mqtt5")
    with pytest.raises(ValueError, match="client is one of paho, mqtt5"):
        MqttLinkOptions("127.0.0.1", client_id="fw", client="other")  # type: ignore[arg-type]


def test_the_settings_refuse_mqtt5_where_the_gateway_speaks_mqtt311() -> None:
    with pytest.raises(ValidationError, match=r"the embedded broker speaks MQTT 3\.1\.1"):
        Settings(mqtt_client="mqtt5", mqtt_url=None, mqtt_embedded=True)
    with pytest.raises(ValidationError, match=r"RECEIVE_MAXIMUM=0 asks for MQTT 3\.1\.1"):
        Settings(mqtt_client="mqtt5", mqtt_url="mqtt://broker:1883", mqtt_receive_maximum=0)
    assert Settings(mqtt_client="mqtt5", mqtt_url="mqtt://broker:1883").mqtt_client == "mqtt5"
    assert Settings(mqtt_client="mqtt5", mqtt_url=None, mqtt_embedded=False).mqtt_client


def test_auto_picks_mqtt5_where_the_gateway_speaks_mqtt5_else_paho() -> None:
    external = Settings(mqtt_url="mqtt://broker:1883")
    assert (external.mqtt_client, external.resolved_mqtt_client) == ("auto", "mqtt5")
    assert Settings(mqtt_url="mqtt://b:1883", mqtt_receive_maximum=0).resolved_mqtt_client == "paho"
    assert Settings(mqtt_url=None).resolved_mqtt_client == "paho"  # the embedded broker
    chosen = Settings(mqtt_url="mqtt://broker:1883", mqtt_client="paho")
    assert chosen.resolved_mqtt_client == "paho"


async def test_the_gateway_refuses_mqtt5_with_the_embedded_broker(runtime: Runtime) -> None:
    runtime.settings.mqtt_port = 0
    runtime.settings.mqtt_client = "mqtt5"
    gateway = MqttGateway(device_edge(runtime))
    try:
        with pytest.raises(ValueError, match="MQTT 5 only"):
            await gateway.start()
    finally:
        await gateway.stop()


async def test_an_mqtt311_broker_gets_a_clear_error() -> None:
    """amqtt (the embedded broker) never answers an MQTT 5 CONNECT."""
    port = free_port()
    plugins = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
    amqtt = Broker(
        {"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}}, "plugins": plugins}
    )
    await amqtt.start()
    try:
        link = new_link(port, client="mqtt5", connect_timeout=1.0)
        with pytest.raises(MqttConnectError, match="speaks MQTT 5 only"):
            await link.start()
    finally:
        await amqtt.shutdown()


async def test_packets_split_anywhere_are_read() -> None:
    packets = publish_packet(b"fw/a", 1, b"one") + publish_packet(b"fw/b", 2, b"two")
    async with ScriptedBroker({}, pushes=[packets], trickle=True) as fake:
        collector = Collector()
        link = new_link(fake.port, client="mqtt5", handler=collector)
        collector.link = link
        await link.start()
        try:
            await eventually(lambda: len(collector.messages) == 2, "both messages")
            assert [(m.topic, m.payload, m.mid) for m in collector.messages] == [
                ("fw/a", b"one", 1),
                ("fw/b", b"two", 2),
            ]
            await eventually(lambda: fake.pubacks == [1, 2], "their PUBACKs")
        finally:
            await link.stop()


# the codec panics on such a topic, and reports the error it had as unraisable first
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_topic_that_is_not_utf8_is_dropped_and_acknowledged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad, good = publish_packet(b"fw/\xff\xfe", 7, b"x"), publish_packet(b"fw/ok", 8, b"ok")
    async with ScriptedBroker({}, pushes=[bad + good]) as fake:
        collector = Collector()
        link = new_link(fake.port, client="mqtt5", handler=collector)
        collector.link = link
        with caplog.at_level(logging.WARNING, logger="fieldwatch.transports.mqtt.link"):
            await link.start()
            try:
                await eventually(lambda: len(collector.messages) == 1, "the good message")
                await eventually(lambda: sorted(fake.pubacks) == [7, 8], "both PUBACKs")
                assert collector.messages[0].topic == "fw/ok"
                assert link.connected and link.connections_lost == 0
            finally:
                await link.stop()
        assert "dropped a message the codec could not read" in caplog.text


async def test_bytes_that_are_no_packet_end_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with ScriptedBroker({}, pushes=[b"\x00\x00"]) as fake:  # packet type 0: reserved
        link = new_link(fake.port, client="mqtt5")
        with caplog.at_level(logging.ERROR, logger="fieldwatch.transports.mqtt.link"):
            await link.start()
            try:
                await eventually(lambda: link.connections_lost >= 1, "the connection to end")
                await eventually(lambda: fake.connections >= 2, "a new connection")
            finally:
                await link.stop()
        assert "malformed MQTT 5 packet (type 0)" in caplog.text


async def test_a_disconnect_from_the_broker_says_why(caplog: pytest.LogCaptureFixture) -> None:
    """A broker's DISCONNECT names its reason in the log (Mosquitto 2.0.11 closes a
    taken-over connection without one; MQTT 5 brokers may send it)."""
    taken = DisconnectPacket(reason_code=DisconnectReasonCode.SESSION_TAKEN_OVER).write()
    async with ScriptedBroker({}, pushes=[taken]) as fake:
        link = new_link(fake.port, client="mqtt5", max_reconnect_delay=5)
        with caplog.at_level(logging.WARNING, logger="fieldwatch.transports.mqtt.link"):
            await link.start()
            try:
                await eventually(lambda: link.connections_lost >= 1, "the disconnect")
            finally:
                await link.stop()
    assert "SESSION_TAKEN_OVER; another client connected with this client id" in caplog.text


async def test_qos2_is_refused() -> None:
    link = new_link(1883, client="mqtt5")
    with pytest.raises(ValueError, match="QoS 0 and 1"):
        await link.subscribe("fw/#", 2)
    assert link.subscriptions == {}


async def test_a_handler_sees_the_arrival_time(broker: Mosquitto) -> None:
    seen: list[IncomingMessage] = []

    async def handler(batch: list[IncomingMessage]) -> None:
        seen.extend(batch)

    link = new_link(broker.port, client="mqtt5", handler=handler)
    await link.start()
    await link.subscribe("fw/t/#", 0)
    try:
        before = asyncio.get_running_loop().time()
        await link.publish("fw/t/a", b"x", qos=0)
        await eventually(lambda: len(seen) == 1, "the message")
        assert seen[0].received >= before and seen[0].qos == 0 and seen[0].mid == 0
    finally:
        await link.stop()


async def test_it_runs_on_uvloop(broker: Mosquitto) -> None:
    """``fieldwatch serve`` runs on uvloop, whose transports are its own: a round trip
    with back-pressure on a uvloop loop (in a thread of its own)."""

    async def scenario() -> list[int]:
        got: list[int] = []

        async def handler(batch: list[IncomingMessage]) -> None:
            await asyncio.sleep(0.005)
            got.extend(int(m.payload) for m in batch)
            sub.ack(batch)

        sub = new_link(broker.port, client="mqtt5", handler=handler, batch_size=20, max_pending=40)
        pub = new_link(broker.port, client="mqtt5")
        await sub.start()
        await sub.subscribe("fw/uv/#", 1)
        await pub.start()
        try:
            await asyncio.gather(*(pub.publish("fw/uv/a", str(i).encode()) for i in range(1000)))
            await eventually(lambda: len(got) == 1000, "1,000 messages")
        finally:
            await pub.stop()
            await sub.stop()
        return got

    assert await asyncio.to_thread(uvloop.run, scenario()) == list(range(1000))
