"""DynsecManager against a real Mosquitto 2 with the dynamic-security plugin, checked
with real paho-mqtt clients. A gateway client with the ``fieldwatch-service`` role is the
privileged subscriber and the server side publisher (the dynsec admin may read ``#``
but publish only on ``$CONTROL``)."""

from __future__ import annotations

import os
import secrets
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from fieldwatch.transports.mqtt import topics
from fieldwatch.transports.mqtt.dynsec import (
    DEVICE_ROLE_PREFIX,
    PROVISION_USERNAME,
    DynsecError,
    DynsecManager,
)
from mqtt_helpers import Mosquitto, dynsec_plugin, mosquitto_binary
from test_mqtt_embedded import Peer

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
REFUSED = 0x80
REFUSED_V5 = 0x87  # MQTT 5 "not authorized"


@pytest.fixture(scope="module")
def mosquitto() -> Iterator[Mosquitto]:
    if mosquitto_binary() is None or dynsec_plugin() is None or not shutil.which("mosquitto_ctrl"):
        message = "Mosquitto 2 with the dynamic-security plugin is not installed"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    with Mosquitto(dynsec=True) as broker:
        yield broker


@pytest.fixture
async def manager(mosquitto: Mosquitto) -> AsyncIterator[DynsecManager]:
    mgr = DynsecManager.from_url(
        mosquitto.url, username=mosquitto.admin_username, password=mosquitto.admin_password
    )
    await mgr.start()
    try:
        await mgr.ensure_roles()
        yield mgr
    finally:
        await mgr.stop()


@pytest.fixture
async def peers(mosquitto: Mosquitto) -> AsyncIterator[Callable[..., Peer]]:
    made: list[Peer] = []

    def make(*args: Any, **kwargs: Any) -> Peer:
        peer = Peer(mosquitto.port, *args, **kwargs)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        await peer.close()


@pytest.fixture
async def gateway(manager: DynsecManager, peers: Callable[..., Peer]) -> Peer:
    await manager.upsert_service_client("gateway", "gateway-secret", "service")
    gw = peers("gateway", "gateway-secret", client_id=f"gateway-{secrets.token_hex(3)}")
    assert (await gw.connect()) == "Success"
    assert await gw.subscribe("iot/#") == 1
    return gw


def new_device() -> str:
    return str(uuid.uuid4())


async def connect_device(
    peers: Callable[..., Peer], device_id: str, token: str, **kwargs: Any
) -> Peer:
    peer = peers(device_id, token, client_id=kwargs.pop("client_id", device_id), **kwargs)
    assert (await peer.connect()) == "Success"
    return peer


async def test_device_connects_with_its_token_and_publishes_only_its_own_topics(
    manager: DynsecManager, peers: Callable[..., Peer], gateway: Peer
) -> None:
    me, other = new_device(), new_device()
    await manager.upsert_device(me, "token-1", "tok-id-1")
    await manager.upsert_device(other, "token-2", "tok-id-2")
    assert await manager.device_token_id(me) == "tok-id-1"
    dev = await connect_device(peers, me, "token-1")
    for forbidden in (
        topics.data(other, "temp"),
        topics.heartbeat(other),
        topics.command(me, "c1"),
        topics.control_command(me),
        "elsewhere",
    ):
        await dev.publish(forbidden, b"nope")
    await dev.publish(topics.data(me, "temp"), b"21.5")
    assert await gateway.received(topics.data(me, "temp"))
    await dev.publish(topics.command_ack(me, "c1"), b"{}")
    assert await gateway.received(topics.command_ack(me, "c1"))
    assert [t for t, _ in gateway.messages] == [
        topics.data(me, "temp"),
        topics.command_ack(me, "c1"),
    ]


async def test_wrong_password_and_unknown_client_are_refused(
    manager: DynsecManager, peers: Callable[..., Peer]
) -> None:
    me = new_device()
    await manager.upsert_device(me, "right", "tok")
    assert (await peers(me, "wrong", client_id=me).connect()) == "Not authorized"
    assert (await peers(new_device(), "right").connect()) == "Not authorized"
    assert (await peers(client_id="anonymous").connect()) == "Not authorized"


async def test_subscriptions_outside_the_device_tree_are_refused(
    manager: DynsecManager, peers: Callable[..., Peer], gateway: Peer
) -> None:
    me, other = new_device(), new_device()
    await manager.upsert_device(me, "token", "tok")
    dev = await connect_device(peers, me, "token")
    for topic_filter in (
        "#",
        "iot/#",
        "iot/devices/+/commands/#",
        f"iot/devices/{other}/commands/+",
        f"iot/devices/{other}/#",
        f"$share/g/iot/devices/{me}/#",
        "$SYS/#",
    ):
        assert await dev.subscribe(topic_filter) == REFUSED, topic_filter
    assert await dev.subscribe(f"iot/devices/{me}/commands/+") == 1
    await gateway.publish(topics.command(other, "c1"), b"for the other one")
    await gateway.publish(topics.command(me, "c2"), b"for me")
    assert await dev.received(topics.command(me, "c2"))
    assert dev.messages == [(topics.command(me, "c2"), b"for me")]
    # MQTT 5 says "not authorized" in the SUBACK
    v5 = peers(me, "token", client_id=me + "-v5", protocol=mqtt.MQTTv5)
    assert (await v5.connect()) == "Success"
    assert await v5.subscribe("#") == REFUSED_V5


async def test_last_will_of_a_device(
    manager: DynsecManager, peers: Callable[..., Peer], gateway: Peer
) -> None:
    me, other = new_device(), new_device()
    await manager.upsert_device(me, "token", "tok")
    # Mosquitto 2.0 accepts any will topic at CONNECT and checks it when publishing it
    foreign = await connect_device(
        peers, me, "token", client_id=me + "-2", will=(topics.status(other), b"x")
    )
    await foreign.drop()
    dev = await connect_device(peers, me, "token", will=(topics.status(me), b"offline"))
    await dev.drop()
    assert await gateway.received(topics.status(me))
    assert gateway.messages == [(topics.status(me), b"offline")]


async def test_a_new_token_replaces_the_old_one(
    manager: DynsecManager, peers: Callable[..., Peer]
) -> None:
    me = new_device()
    await manager.upsert_device(me, "old-token", "tok-1")
    old = await connect_device(peers, me, "old-token")
    await manager.upsert_device(me, "new-token", "tok-2")
    assert await old.wait(lambda: old.disconnects > 0)  # dropped with the old password
    await old.close()
    assert await manager.device_token_id(me) == "tok-2"
    assert (await peers(me, "old-token", client_id=me).connect()) == "Not authorized"
    new = await connect_device(peers, me, "new-token")
    # the same token again (e.g. on restart) changes nothing and drops nobody
    await manager.upsert_device(me, "new-token", "tok-2")
    await new.publish(topics.heartbeat(me), b"{}")
    assert new.disconnects == 0 and new.client.is_connected()


async def test_disable_device_drops_the_live_session_and_refuses_reconnects(
    manager: DynsecManager, peers: Callable[..., Peer]
) -> None:
    me = new_device()
    await manager.upsert_device(me, "token", "tok")
    dev = await connect_device(peers, me, "token")
    await manager.disable_device(me)
    assert await dev.wait(lambda: dev.disconnects > 0)
    await dev.close()
    assert (await peers(me, "token", client_id=me).connect()) == "Not authorized"
    # an upsert with the same token does not re-enable it; enable_device does
    await manager.upsert_device(me, "token", "tok")
    assert (await peers(me, "token", client_id=me).connect()) == "Not authorized"
    await manager.enable_device(me)
    await connect_device(peers, me, "token")
    await manager.disable_device(new_device())  # unknown: nothing to do


async def test_delete_device(manager: DynsecManager, peers: Callable[..., Peer]) -> None:
    me = new_device()
    await manager.upsert_device(me, "token", "tok")
    dev = await connect_device(peers, me, "token")
    await manager.delete_device(me)
    assert await dev.wait(lambda: dev.disconnects > 0)
    await dev.close()
    assert await manager.device_token_id(me) is None
    assert (await peers(me, "token", client_id=me).connect()) == "Not authorized"
    await manager.delete_device(me)  # idempotent
    role = await manager.execute(
        [{"command": "getRole", "rolename": DEVICE_ROLE_PREFIX + me}], tolerate=["not found"]
    )
    assert "not found" in role[0]["error"].lower()


async def test_kick(manager: DynsecManager, peers: Callable[..., Peer]) -> None:
    me = new_device()
    await manager.upsert_device(me, "token", "tok")
    dev = await connect_device(peers, me, "token")
    assert await manager.kick(me)
    assert await dev.wait(lambda: dev.disconnects > 0)
    # only kicked: paho reconnects on its own
    assert await dev.wait(lambda: dev.client.is_connected(), within=10)
    assert not await manager.kick(new_device())
    with pytest.raises(ValueError):
        await manager.kick(manager.username)


async def test_provisioning_client_rules(
    manager: DynsecManager, peers: Callable[..., Peer], gateway: Peer
) -> None:
    key = "pk-" + secrets.token_urlsafe(12)
    await manager.set_provisioning_key(key)
    serial = "SN-" + secrets.token_hex(4)
    prov = peers(PROVISION_USERNAME, key, client_id=serial)
    assert (await prov.connect()) == "Success"
    await prov.publish(topics.data(serial, "temp"), b"no")
    await prov.publish(topics.register(serial), b"{}")
    assert await gateway.received(topics.register(serial))
    assert [t for t, _ in gateway.messages] == [topics.register(serial)]
    assert await prov.subscribe(topics.provisioning_filter(serial)) == 1
    for sniffing in ("iot/devices/+/register/+", "iot/devices/+/register/#", "#"):
        assert await prov.subscribe(sniffing) == REFUSED, sniffing
    assert await prov.subscribe(f"iot/devices/{serial}/commands/+") == REFUSED
    # Mosquitto 2.0 cannot tie topics to the client id (no %c), so a key holder may name
    # another serial explicitly (as it could by using that serial as its client id)
    assert await prov.subscribe(topics.provisioning_filter("SN-other")) == 1
    await gateway.publish(topics.register_response(serial), b"welcome")
    assert await prov.received(topics.register_response(serial))
    assert (await peers(PROVISION_USERNAME, "wrong", client_id="SN-1").connect()) == (
        "Not authorized"
    )
    # a new key replaces the old one; setting the same key again drops nobody
    await prov.close()
    new_key = key + "-2"
    await manager.set_provisioning_key(new_key)
    assert (await peers(PROVISION_USERNAME, key, client_id="SN-2").connect()) == "Not authorized"
    again = peers(PROVISION_USERNAME, new_key, client_id="SN-3")
    assert (await again.connect()) == "Success"
    await manager.set_provisioning_key(new_key)
    await again.publish(topics.register("SN-3"), b"{}")
    assert again.disconnects == 0


async def test_control_service_client(
    manager: DynsecManager, peers: Callable[..., Peer], gateway: Peer
) -> None:
    me = new_device()
    await manager.upsert_service_client("ops-bot", "ops-secret", "control")
    ops = peers("ops-bot", "ops-secret", client_id="ops-bot")
    assert (await ops.connect()) == "Success"
    assert await ops.subscribe("iot/devices/control/+/command") == REFUSED
    await ops.publish(topics.command(me, "c1"), b"direct")
    await ops.publish(topics.control_command(me), b"{}")
    assert await gateway.received(topics.control_command(me))
    assert not gateway.got(topics.command(me, "c1"))


async def test_ensure_roles_is_idempotent_and_denies_by_default(
    manager: DynsecManager,
) -> None:
    await manager.ensure_roles()
    (access,) = await manager.execute([{"command": "getDefaultACLAccess"}])
    assert {a["acltype"]: a["allow"] for a in access["data"]["acls"]} == {
        "publishClientSend": False,
        "publishClientReceive": False,
        "subscribe": False,
        "unsubscribe": True,
    }
    (role,) = await manager.execute([{"command": "getRole", "rolename": "fieldwatch-control"}])
    assert {a["topic"] for a in role["data"]["role"]["acls"]} == {
        "iot/devices/control/+/command",
        "iot/devices/control/+/config",
    }


async def test_errors_carry_the_broker_text(manager: DynsecManager, mosquitto: Mosquitto) -> None:
    with pytest.raises(DynsecError, match="Unknown command"):
        await manager.execute([{"command": "noSuchCommand"}])
    with pytest.raises(DynsecError, match="not found"):
        await manager.execute([{"command": "getRole", "rolename": "no-such-role"}])
    with pytest.raises(ValueError):
        await manager.upsert_device("not/a/device", "t", "i")
    wrong = DynsecManager("127.0.0.1", mosquitto.port, mosquitto.admin_username, "wrong")
    with pytest.raises(DynsecError, match="connect"):
        await wrong.start()


def test_from_url() -> None:
    mgr = DynsecManager.from_url("mqtt://adm%40in:p%3Ass@broker.example:1884")
    assert (mgr.host, mgr.port, mgr.username) == ("broker.example", 1884, "adm@in")
    assert DynsecManager.from_url("mqtts://a:b@h").port == 8883
    with pytest.raises(ValueError):
        DynsecManager.from_url("http://a:b@h")
    with pytest.raises(ValueError):
        DynsecManager.from_url("mqtt://h:1883")
