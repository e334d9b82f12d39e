"""The embedded MQTT broker (amqtt) with real paho-mqtt clients."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Callable

import paho.mqtt.client as mqtt
import pytest

from fieldwatch.transports.mqtt import topics
from fieldwatch.transports.mqtt.acl import Action, Principal, is_allowed
from fieldwatch.transports.mqtt.embedded import EmbeddedBroker
from mqtt_peers import Peer, peers_on

DEVICE_A = str(uuid.uuid4())
DEVICE_B = str(uuid.uuid4())
PROVISIONING_KEY = "prov-" + secrets.token_urlsafe(8)
REFUSED = 0x80


class DictAuthority:
    """username -> (password, principal); a provisioning client is named by its client id."""

    def __init__(self) -> None:
        self.users: dict[str, tuple[str, Principal]] = {}
        self.calls: list[tuple[str | None, str | None]] = []

    def add(self, username: str, password: str, principal: Principal) -> None:
        self.users[username] = (password, principal)

    async def authenticate(
        self, client_id: str | None, username: str | None, password: str | None
    ) -> Principal | None:
        self.calls.append((client_id, username))
        entry = self.users.get(username or "")
        if entry is None or not secrets.compare_digest(entry[0], password or ""):
            return None
        if entry[1].kind == "provision":
            return Principal("provision", client_id) if client_id else None
        return entry[1]


@pytest.fixture
def authority() -> DictAuthority:
    auth = DictAuthority()
    auth.add(DEVICE_A, "token-a", Principal("device", DEVICE_A))
    auth.add(DEVICE_B, "token-b", Principal("device", DEVICE_B))
    auth.add("gateway", "gw-secret", Principal("service", "gateway"))
    auth.add("ops", "ops-secret", Principal("control", "ops"))
    auth.add("provision", PROVISIONING_KEY, Principal("provision", "-"))
    return auth


@pytest.fixture
async def broker(authority: DictAuthority) -> AsyncIterator[EmbeddedBroker]:
    mqtt_broker = EmbeddedBroker("127.0.0.1", 0, authority)
    await mqtt_broker.start()
    try:
        yield mqtt_broker
    finally:
        await mqtt_broker.stop()


@pytest.fixture
async def peers(broker: EmbeddedBroker) -> AsyncIterator[Callable[..., Peer]]:
    async with peers_on(broker.port) as make:
        yield make


async def gateway(peers: Callable[..., Peer], topic_filter: str = "iot/#") -> Peer:
    gw = peers("gateway", "gw-secret", client_id="gateway")
    assert (await gw.connect()) == "Success"
    assert await gw.subscribe(topic_filter) == 1
    return gw


async def test_port_zero_picks_a_free_port(broker: EmbeddedBroker) -> None:
    assert broker.running and broker.port > 0


async def test_bad_password_and_unknown_user_are_refused(
    peers: Callable[..., Peer], authority: DictAuthority
) -> None:
    assert (await peers(DEVICE_A, "wrong", client_id=DEVICE_A).connect()) == "Not authorized"
    assert (await peers("nobody", "token-a").connect()) == "Not authorized"
    assert (await peers(DEVICE_A, None).connect()) == "Not authorized"
    assert (await peers(DEVICE_A, "token-a", client_id=DEVICE_A).connect()) == "Success"


async def test_anonymous_is_refused_without_asking_the_authority(
    peers: Callable[..., Peer], authority: DictAuthority
) -> None:
    assert (await peers(client_id="anon").connect()) == "Not authorized"
    assert (await peers("", "").connect()) == "Not authorized"
    assert authority.calls == []


async def test_only_mqtt_311_is_spoken(peers: Callable[..., Peer]) -> None:
    v5 = peers(DEVICE_A, "token-a", protocol=mqtt.MQTTv5)
    assert (await v5.connect()) == "Unsupported protocol version"
    v31 = peers(DEVICE_A, "token-a", client_id="a", protocol=mqtt.MQTTv31)
    assert (await v31.connect()) == "Unsupported protocol version"


async def test_device_publishes_its_own_data_but_not_for_another_device(
    peers: Callable[..., Peer],
) -> None:
    gw = await gateway(peers)
    dev = peers(DEVICE_A, "token-a", client_id=DEVICE_A)
    assert (await dev.connect()) == "Success"
    forbidden = [
        topics.data(DEVICE_B, "temp"),
        topics.heartbeat(DEVICE_B),
        topics.command_result(DEVICE_B, "c1"),
        topics.command(DEVICE_A, "c1"),  # server -> device direction
        topics.control_command(DEVICE_A),
        "elsewhere/topic",
    ]
    for topic in forbidden:
        await dev.publish(topic, b"nope")
    own = topics.data(DEVICE_A, "temp")
    await dev.publish(own, b"21.5")
    assert await gw.received(own)
    await dev.publish(topics.heartbeat(DEVICE_A), b"{}", qos=0)
    assert await gw.received(topics.heartbeat(DEVICE_A))
    assert [t for t, _ in gw.messages] == [own, topics.heartbeat(DEVICE_A)]
    assert dev.client.is_connected()  # refused publishes are dropped, not fatal


async def test_device_subscriptions_outside_its_tree_are_refused(
    peers: Callable[..., Peer],
) -> None:
    gw = await gateway(peers, "iot/devices/+/commands/+")
    dev = peers(DEVICE_A, "token-a", client_id=DEVICE_A)
    assert (await dev.connect()) == "Success"
    for topic_filter in [
        "#",
        "iot/#",
        "iot/devices/+/commands/#",
        f"iot/devices/{DEVICE_B}/commands/+",
        f"iot/devices/{DEVICE_B}/#",
        f"$share/g/iot/devices/{DEVICE_A}/#",
        "$SYS/#",
    ]:
        assert await dev.subscribe(topic_filter) == REFUSED, topic_filter
    assert await dev.subscribe(f"iot/devices/{DEVICE_A}/commands/+") == 1
    other, mine = topics.command(DEVICE_B, "c1"), topics.command(DEVICE_A, "c2")
    await gw.publish(other, b"for b")
    await gw.publish(mine, b"for a")
    assert await dev.received(mine)
    assert await gw.received(mine)
    assert dev.messages == [(mine, b"for a")]


async def test_last_will_is_published_when_the_socket_drops(peers: Callable[..., Peer]) -> None:
    gw = await gateway(peers, "iot/devices/status/+")
    status = topics.status(DEVICE_A)
    dev = peers(DEVICE_A, "token-a", client_id=DEVICE_A, will=(status, b"offline"))
    assert (await dev.connect()) == "Success"
    await dev.drop()
    assert await gw.received(status)
    assert gw.messages == [(status, b"offline")]


async def test_last_will_is_published_when_the_keepalive_expires(
    peers: Callable[..., Peer],
) -> None:
    gw = await gateway(peers, "iot/devices/status/+")
    status = topics.status(DEVICE_A)
    dev = peers(DEVICE_A, "token-a", client_id=DEVICE_A, will=(status, b"lost"), keepalive=1)
    assert (await dev.connect()) == "Success"
    await asyncio.to_thread(dev.client.loop_stop)  # socket open, nothing sent any more
    assert await gw.received(status, within=5)


async def test_no_will_on_a_clean_disconnect(peers: Callable[..., Peer]) -> None:
    gw = await gateway(peers, "iot/devices/status/+")
    status = topics.status(DEVICE_A)
    dev = peers(DEVICE_A, "token-a", client_id=DEVICE_A, will=(status, b"offline"))
    assert (await dev.connect()) == "Success"
    await dev.close()
    marker = peers(DEVICE_B, "token-b", client_id=DEVICE_B)
    assert (await marker.connect()) == "Success"
    await marker.publish(topics.status(DEVICE_B), b"online")
    assert await gw.received(topics.status(DEVICE_B))
    assert not gw.got(status)


async def test_last_will_on_a_foreign_topic_is_refused(peers: Callable[..., Peer]) -> None:
    dev = peers(DEVICE_A, "token-a", will=(topics.status(DEVICE_B), b"offline"))
    assert (await dev.connect()) == "Not authorized"


async def test_disconnect_kicks_a_live_client(
    broker: EmbeddedBroker, peers: Callable[..., Peer]
) -> None:
    gw = await gateway(peers, "iot/devices/status/+")
    status = topics.status(DEVICE_A)
    dev = peers(DEVICE_A, "token-a", will=(status, b"offline"))  # no client id of its own
    assert (await dev.connect()) == "Success"
    assert await broker.disconnect(DEVICE_A) == 1  # by username
    assert await dev.wait(lambda: dev.disconnects > 0)
    await dev.close()  # paho would reconnect
    assert await gw.received(status)  # its will, as for any abnormal end
    assert await broker.disconnect(DEVICE_A) == 0
    assert await broker.disconnect("gateway") == 1
    assert await gw.wait(lambda: gw.disconnects > 0)


async def test_client_id_of_a_device_cannot_be_taken_by_someone_else(
    peers: Callable[..., Peer],
) -> None:
    gw = await gateway(peers)
    dev = peers(DEVICE_A, "token-a", client_id=DEVICE_A)
    assert (await dev.connect()) == "Success"
    assert await dev.subscribe(topics.device_filter(DEVICE_A)) == 1
    # neither a stranger nor another device may use its client id
    assert (await peers("x", "y", client_id=DEVICE_A).connect()) == "Not authorized"
    assert (await peers(DEVICE_B, "token-b", client_id=DEVICE_A).connect()) == "Not authorized"
    command = topics.command(DEVICE_A, "c1")
    await gw.publish(command, b"still there?")
    assert await dev.received(command)
    assert dev.disconnects == 0
    # the device itself may take its session over
    again = peers(DEVICE_A, "token-a", client_id=DEVICE_A)
    assert (await again.connect()) == "Success"
    assert await dev.wait(lambda: dev.disconnects > 0)
    await dev.close()  # or paho would take it back


async def test_a_device_takes_its_client_id_back_from_a_squatter(
    peers: Callable[..., Peer],
) -> None:
    # a device may use no other client id than its own, even one nobody holds
    assert (await peers(DEVICE_B, "token-b", client_id="free-id").connect()) == "Not authorized"
    # a provisioning client that named itself after a device while it was away
    squatter = peers("provision", PROVISIONING_KEY, client_id=DEVICE_A)
    assert (await squatter.connect()) == "Success"
    dev = peers(DEVICE_A, "token-a", client_id=DEVICE_A)
    assert (await dev.connect()) == "Success"
    assert await squatter.wait(lambda: squatter.disconnects > 0)
    await squatter.close()  # paho would try again: and be refused
    again = peers("provision", PROVISIONING_KEY, client_id=DEVICE_A)
    assert (await again.connect()) == "Not authorized"
    assert dev.disconnects == 0


async def test_retained_messages_are_not_kept(peers: Callable[..., Peer]) -> None:
    gw = await gateway(peers)
    command = topics.command(DEVICE_A, "c1")
    await gw.publish(command, b"retained", retain=True)
    snoop = peers(DEVICE_B, "token-b", client_id=DEVICE_B)
    assert (await snoop.connect()) == "Success"
    dev = peers(DEVICE_A, "token-a", client_id=DEVICE_A)
    assert (await dev.connect()) == "Success"
    assert await dev.subscribe(f"iot/devices/{DEVICE_A}/commands/+") == 1
    await gw.publish(topics.command(DEVICE_A, "c2"), b"live")
    assert await dev.received(topics.command(DEVICE_A, "c2"))
    assert dev.messages == [(topics.command(DEVICE_A, "c2"), b"live")]
    assert snoop.messages == []


async def test_persistent_session_keeps_qos1_messages(peers: Callable[..., Peer]) -> None:
    gw = await gateway(peers)
    first = peers(DEVICE_A, "token-a", client_id=DEVICE_A, clean_session=False)
    assert (await first.connect()) == "Success"
    assert await first.subscribe(f"iot/devices/{DEVICE_A}/commands/+") == 1
    await first.close()
    command = topics.command(DEVICE_A, "while-away")
    await gw.publish(command, b"queued")
    back = peers(DEVICE_A, "token-a", client_id=DEVICE_A, clean_session=False)
    assert (await back.connect()) == "Success"
    assert back.session_present
    assert await back.received(command)


async def test_provisioning_client_is_tied_to_its_serial(peers: Callable[..., Peer]) -> None:
    gw = await gateway(peers)
    serial = "SN-1001"
    prov = peers("provision", PROVISIONING_KEY, client_id=serial)
    assert (await prov.connect()) == "Success"
    assert await prov.subscribe(topics.provisioning_filter(serial)) == 1
    assert await prov.subscribe(topics.provisioning_filter("SN-1002")) == REFUSED
    assert await prov.subscribe("iot/devices/+/register/+") == REFUSED
    await prov.publish(topics.register("SN-1002"), b"{}")
    await prov.publish(topics.register(serial), b"{}")
    assert await gw.received(topics.register(serial))
    assert not gw.got(topics.register("SN-1002"))
    await gw.publish(topics.register_response(serial), b"token")
    assert await prov.received(topics.register_response(serial))
    assert (await peers("provision", "wrong-key", client_id="SN-1003").connect()) == (
        "Not authorized"
    )
    assert (await peers("provision", PROVISIONING_KEY).connect()) == "Not authorized"  # no id


async def test_control_service_publishes_control_topics_only(peers: Callable[..., Peer]) -> None:
    gw = await gateway(peers)
    ops = peers("ops", "ops-secret", client_id="ops")
    assert (await ops.connect()) == "Success"
    assert await ops.subscribe("iot/devices/control/+/command") == REFUSED
    await ops.publish(topics.command(DEVICE_A, "c1"), b"direct")
    await ops.publish(topics.control_command(DEVICE_A), b"{}")
    assert await gw.received(topics.control_command(DEVICE_A))
    assert not gw.got(topics.command(DEVICE_A, "c1"))


async def test_authority_may_authorize(authority: DictAuthority) -> None:
    asked: list[tuple[str, str]] = []

    class Strict(DictAuthority):
        async def authorize(self, principal: Principal, action: Action, topic: str) -> bool:
            asked.append((action, topic))
            return is_allowed(principal, action, topic) and not topic.endswith("/secret")

    strict = Strict()
    strict.users = authority.users
    mqtt_broker = EmbeddedBroker("127.0.0.1", 0, strict)
    await mqtt_broker.start()
    try:
        gw = Peer(mqtt_broker.port, "gateway", "gw-secret", client_id="gw")
        assert (await gw.connect()) == "Success"
        assert await gw.subscribe("iot/devices/data/+/+") == 1
        dev = Peer(mqtt_broker.port, DEVICE_A, "token-a", client_id=DEVICE_A)
        assert (await dev.connect()) == "Success"
        await dev.publish(topics.data(DEVICE_A, "secret"), b"x")
        await dev.publish(topics.data(DEVICE_A, "open"), b"y")
        assert await gw.received(topics.data(DEVICE_A, "open"))
        assert not gw.got(topics.data(DEVICE_A, "secret"))
        assert ("subscribe", "iot/devices/data/+/+") in asked
        for peer in (gw, dev):
            await peer.close()
    finally:
        await mqtt_broker.stop()


async def test_stop_closes_client_connections(
    broker: EmbeddedBroker, peers: Callable[..., Peer]
) -> None:
    dev = peers(DEVICE_A, "token-a", client_id=DEVICE_A)
    assert (await dev.connect()) == "Success"
    await broker.stop()
    assert not broker.running
    assert await dev.wait(lambda: dev.disconnects > 0)


async def test_oversized_packets_and_connection_limit(authority: DictAuthority) -> None:
    mqtt_broker = EmbeddedBroker("127.0.0.1", 0, authority, max_packet_size=1024, max_connections=2)
    await mqtt_broker.start()
    try:
        gw = Peer(mqtt_broker.port, "gateway", "gw-secret", client_id="gw")
        assert (await gw.connect()) == "Success"
        assert await gw.subscribe("iot/#") == 1
        dev = Peer(mqtt_broker.port, DEVICE_A, "token-a", client_id=DEVICE_A)
        assert (await dev.connect()) == "Success"
        # a third connection is closed before CONNACK
        reader, writer = await asyncio.open_connection("127.0.0.1", mqtt_broker.port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await writer.wait_closed()
        big = topics.data(DEVICE_A, "blob")
        dev.client.publish(big, b"x" * 4096, qos=0)
        assert await dev.wait(lambda: dev.disconnects > 0)
        await dev.close()
        small = Peer(mqtt_broker.port, DEVICE_B, "token-b", client_id=DEVICE_B)
        assert (await small.connect()) == "Success"
        await small.publish(topics.data(DEVICE_B, "t"), b"1")
        assert await gw.received(topics.data(DEVICE_B, "t"))
        assert not gw.got(big)
        for peer in (gw, small):
            await peer.close()
    finally:
        await mqtt_broker.stop()
