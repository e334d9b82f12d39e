"""DynsecManager against a real Mosquitto 2 with the dynamic-security plugin, checked
with real paho-mqtt clients. A gateway client with the ``fieldwatch-service`` role is the
privileged subscriber and the server side publisher (the dynsec admin may read ``#``
but publish only on ``$CONTROL``)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from conftest import require_dynsec_mosquitto
from fieldwatch.transports.mqtt import topics
from fieldwatch.transports.mqtt.acl import dynsec_role_acls
from fieldwatch.transports.mqtt.dynsec import (
    DEVICE_ROLE_PREFIX,
    LEGACY_PROVISION_USERNAME,
    PROVISION_GROUP,
    DynsecError,
    DynsecManager,
)
from mqtt_helpers import Mosquitto
from mqtt_peers import Peer

REFUSED = 0x80
REFUSED_V5 = 0x87  # MQTT 5 "not authorized"


@pytest.fixture(scope="module")
def mosquitto() -> Iterator[Mosquitto]:
    require_dynsec_mosquitto()
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
    await dev.close()
    v5 = peers(me, "token", client_id=me, protocol=mqtt.MQTTv5)
    assert (await v5.connect()) == "Success"
    assert await v5.subscribe("#") == REFUSED_V5


async def test_last_will_of_a_device(
    manager: DynsecManager, peers: Callable[..., Peer], gateway: Peer
) -> None:
    me, other = new_device(), new_device()
    await manager.upsert_device(me, "token", "tok")
    # Mosquitto 2.0 accepts any will topic at CONNECT and checks it when publishing it
    foreign = await connect_device(peers, me, "token", will=(topics.status(other), b"x"))
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


def new_key() -> tuple[str, str, str]:
    """A provisioning key as Fieldwatch makes them: (login, key, key id)."""
    key = "fwp_" + secrets.token_urlsafe(32)
    return key[:12], key, str(uuid.uuid4())


async def test_provisioning_logins_one_per_key(
    manager: DynsecManager, peers: Callable[..., Peer], gateway: Peer
) -> None:
    login, key, key_id = new_key()
    other_login, other_key, other_id = new_key()  # another workspace's key
    await manager.upsert_provisioning_login(login, key, key_id)
    await manager.upsert_provisioning_login(other_login, other_key, other_id)
    assert (await manager.provisioning_logins()).items() >= {
        login: key_id,
        other_login: other_id,
    }.items()
    request = secrets.token_hex(16)
    prov = peers(login, key, client_id=request)
    assert (await prov.connect()) == "Success"
    assert (await peers(other_login, other_key, client_id="x").connect()) == "Success"
    assert (await peers(login, other_key, client_id="y").connect()) == "Not authorized"
    await prov.publish(topics.data(request, "temp"), b"no")
    await prov.publish(topics.register(request), b"{}")
    assert await gateway.received(topics.register(request))
    assert [t for t, _ in gateway.messages] == [topics.register(request)]
    assert await prov.subscribe(topics.provisioning_filter(request)) == 1
    for sniffing in (
        "iot/devices/+/register/+",
        "iot/devices/+/register/#",
        "iot/devices/+/register/response",
        "iot/devices/+/register/error",
        "iot/+/+/register/+",
        "$share/g/iot/devices/+/register/+",
        "iot/devices/register/+",
        "iot/devices/#",
        "#",
    ):
        assert await prov.subscribe(sniffing) == REFUSED, sniffing
    assert await prov.subscribe(f"iot/devices/{request}/commands/+") == REFUSED
    await gateway.publish(topics.register_response(request), b"welcome")
    assert await prov.received(topics.register_response(request))
    # the same key again changes nothing and drops nobody
    await manager.upsert_provisioning_login(login, key, key_id)
    await prov.publish(topics.register(request), b"{}")
    assert prov.disconnects == 0
    # a new secret for the key (same username) drops the old one's sessions
    rotated = login + secrets.token_urlsafe(32)
    await manager.upsert_provisioning_login(login, rotated, key_id)
    assert await prov.wait(lambda: prov.disconnects > 0)
    await prov.close()
    assert (await peers(login, key, client_id="z").connect()) == "Not authorized"
    assert (await peers(login, rotated, client_id="z2").connect()) == "Success"
    # a login is one key's: another key may not take it over
    with pytest.raises(DynsecError, match="another key"):
        await manager.upsert_provisioning_login(login, other_key, other_id)
    await manager.delete_login(login)
    assert login not in await manager.provisioning_logins()
    assert (await peers(login, rotated, client_id="z3").connect()) == "Not authorized"
    await manager.delete_login(login)  # idempotent
    with pytest.raises(ValueError):
        await manager.delete_login(manager.username)


async def test_a_device_may_use_only_its_own_client_id(
    manager: DynsecManager, peers: Callable[..., Peer], gateway: Peer
) -> None:
    me, other = new_device(), new_device()
    await manager.upsert_device(me, "token-me", "t1")
    await manager.upsert_device(other, "token-other", "t2")
    dev = await connect_device(peers, me, "token-me")
    # another device, with its own valid credentials, may not take my client id
    assert (await peers(other, "token-other", client_id=me).connect()) == "Not authorized"
    assert (await peers(me, "token-me", client_id="anything-else").connect()) == "Not authorized"
    assert (await peers(me, "token-me").connect()) == "Not authorized"  # no client id
    await gateway.publish(topics.command(me, "c1"), b"still there?")
    assert await dev.subscribe(topics.device_filter(me)) == 1
    await gateway.publish(topics.command(me, "c2"), b"yes")
    assert await dev.received(topics.command(me, "c2"))
    assert dev.disconnects == 0


async def test_device_clients_made_before_are_tied_to_their_id(
    manager: DynsecManager, peers: Callable[..., Peer]
) -> None:
    me = new_device()
    role = DEVICE_ROLE_PREFIX + me
    await manager.execute(
        [
            {"command": "createRole", "rolename": role, "acls": []},
            {"command": "createClient", "username": me, "password": "tok",
             "textname": "t", "roles": [{"rolename": role}]},
        ]
    )  # fmt: skip
    squatter = peers(me, "tok", client_id="not-my-id")
    assert (await squatter.connect()) == "Success"  # nothing tied it to its id yet
    assert await manager.require_device_client_ids(page=2) >= 1
    assert await squatter.wait(lambda: squatter.disconnects > 0)
    await squatter.close()
    assert (await peers(me, "tok", client_id="not-my-id").connect()) == "Not authorized"
    assert (await peers(me, "tok", client_id=me).connect()) == "Success"
    assert await manager.require_device_client_ids(page=2) == 0  # nothing left to do


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
    manager: DynsecManager, peers: Callable[..., Peer]
) -> None:
    # the single login every key shared in earlier versions is removed
    await manager.upsert_service_client(LEGACY_PROVISION_USERNAME, "old-key", "provision")
    assert (await peers(LEGACY_PROVISION_USERNAME, "old-key", client_id="S").connect()) == (
        "Success"
    )
    await manager.ensure_roles()
    assert (await peers(LEGACY_PROVISION_USERNAME, "old-key", client_id="S").connect()) == (
        "Not authorized"
    )
    (group,) = await manager.execute([{"command": "getGroup", "groupname": PROVISION_GROUP}])
    assert group["data"]["group"]["groupname"] == PROVISION_GROUP
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
        "iot/devices/firmware/+/update",
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


async def test_device_roles_made_before_get_the_firmware_topics(
    manager: DynsecManager, peers: Callable[..., Peer], gateway: Peer
) -> None:
    me = new_device()
    role = DEVICE_ROLE_PREFIX + me
    old_acls = [a for a in dynsec_role_acls("device", me) if "firmware" not in a["topic"]]
    await manager.execute(
        [
            {"command": "createRole", "rolename": role, "acls": old_acls},
            {"command": "createClient", "username": me, "password": "tok", "textname": "t",
             "clientid": me, "roles": [{"rolename": role}]},
        ]
    )  # fmt: skip
    state = topics.firmware_state(me, "u-1")
    dev = await connect_device(peers, me, "tok")
    await dev.publish(state, b'{"state": "acknowledged"}')  # refused by the old role
    assert await manager.refresh_device_roles(page=2) >= 1
    await dev.publish(state, b'{"state": "downloading", "bytes": 1}')
    assert await gateway.received(state)
    assert [p for t, p in gateway.messages if t == state] == [
        b'{"state": "downloading", "bytes": 1}'
    ]
    assert await manager.refresh_device_roles(page=2) == 0  # nothing left to do
