"""The same attacks on both MQTT modes: the embedded broker, and an external Mosquitto 2
with the dynamic-security plugin (a real ``mosquitto`` process this module starts), each
behind a real MqttGateway, with real paho-mqtt clients and real workspaces:

a. a device logging in with its own credentials but another device's client id (of its
   workspace or another), or the gateway's;
b. a provisioning client reading another device's registration answer;
c. provisioning keys of two workspaces used side by side, rotated and revoked.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from conftest import Actor, Factory, require_dynsec_mosquitto
from fieldwatch.app import device_edge
from fieldwatch.runtime import Runtime
from fieldwatch.transports.mqtt import topics
from fieldwatch.transports.mqtt.gateway import MqttGateway, gateway_client_id
from mqtt_helpers import Mosquitto
from mqtt_peers import Peer, dumps, eventually, has_metrics, latest
from telemetry_helpers import device_with_token

WAIT_S = 10.0
REFUSED = 0x80


@dataclass
class Mqtt:
    """One MQTT mode: its gateway, the port devices connect to, and their clients."""

    kind: str
    gateway: MqttGateway
    port: int
    made: list[Peer] = field(default_factory=list)

    def peer(self, *args: Any, **kwargs: Any) -> Peer:
        peer = Peer(self.port, *args, **kwargs)
        self.made.append(peer)
        return peer


@pytest.fixture(params=["embedded", "mosquitto", "mosquitto-mqtt5"])
async def mqtt(request: pytest.FixtureRequest, runtime: Runtime) -> AsyncIterator[Mqtt]:
    """The gateway on the embedded broker, or on Mosquitto with either MQTT client."""
    broker: Mosquitto | None = None
    if request.param.startswith("mosquitto"):
        require_dynsec_mosquitto()
        broker = Mosquitto(dynsec=True).start()
        runtime.settings.mqtt_url = broker.admin_url
        runtime.settings.mqtt_client = "mqtt5" if request.param.endswith("mqtt5") else "paho"
    else:
        runtime.settings.mqtt_port = 0  # a free port
    gateway = MqttGateway(device_edge(runtime))
    try:
        await gateway.start()
        kind = "embedded" if broker is None else "mosquitto"
        mode = Mqtt(kind, gateway, broker.port if broker else gateway.broker.port)
        yield mode
        for peer in mode.made:
            peer.client.disconnect()
            await asyncio.to_thread(peer.client.loop_stop)
    finally:
        await gateway.stop()
        if broker is not None:
            broker.stop()


async def connected_device(mqtt: Mqtt, client, actor: Actor) -> tuple[str, str, Peer]:
    device, headers = await device_with_token(client, actor)
    token = headers["Authorization"].split()[1]
    peer = mqtt.peer(device["id"], token, client_id=device["id"])
    assert (await peer.connect()) == "Success"
    return device["id"], token, peer


async def stored(client, actor: Actor, device_id: str, peer: Peer, value: float) -> None:
    """The device's reading reaches storage: its connection works end to end."""
    await peer.publish(topics.data(device_id, "temperature"), dumps({"value": value}))
    metrics = await eventually(
        lambda: has_metrics(latest(client, actor, device_id), {"temperature"})
    )
    assert metrics["temperature"]["value"] == value


# --- a. client ids --------------------------------------------------------------------


async def test_a_device_cannot_use_another_devices_client_id(
    mqtt: Mqtt, client, factory: Factory
) -> None:
    acme, globex = await factory.user("operator", "acme"), await factory.user("operator", "globex")
    victim_device, headers = await device_with_token(client, acme)  # not connected yet
    victim, victim_token = victim_device["id"], headers["Authorization"].split()[1]
    neighbour, neighbour_token, _ = await connected_device(mqtt, client, acme)
    stranger, stranger_token, _ = await connected_device(mqtt, client, globex)
    # before the victim ever connected: nobody may squat its client id
    squat = mqtt.peer(neighbour, neighbour_token, client_id=victim)
    assert (await squat.connect()) == "Not authorized"
    dev = mqtt.peer(victim, victim_token, client_id=victim)
    assert (await dev.connect()) == "Success"
    # while it is connected: neither a device of its workspace nor one of another
    # workspace, each with its own valid token, may take its client id over
    for device_id, token in ((neighbour, neighbour_token), (stranger, stranger_token)):
        assert (await mqtt.peer(device_id, token, client_id=victim).connect()) == ("Not authorized")
    await stored(client, acme, victim, dev, 21.5)
    assert dev.disconnects == 0


async def test_the_gateways_client_id_cannot_be_taken(mqtt: Mqtt, client, factory: Factory):
    link = mqtt.gateway.link
    assert link is not None and link.connected
    # 128 bits: random for the embedded broker's gateway; an HMAC under the installation's
    # secret (stable across restarts, for its persistent session) with Mosquitto
    assert re.fullmatch(r"fieldwatch-[0-9a-f]{32}(-\d+)?", link.client_id)
    assert link.client_id != gateway_client_id()
    assert socket.gethostname() not in link.client_id
    op = await factory.user("operator", "acme")
    device_id, token, dev = await connected_device(mqtt, client, op)
    intruder = mqtt.peer(device_id, token, client_id=link.client_id)
    assert (await intruder.connect()) == "Not authorized"
    await stored(client, op, device_id, dev, 19.0)
    assert link.connected and link.connections_lost == 0


# --- b. registration answers ----------------------------------------------------------


async def new_key(client, admin: Actor) -> dict[str, Any]:
    r = await client.post("/api/v1/provisioning-keys", json={"name": "line"}, headers=admin.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def provisioner(mqtt: Mqtt, key: str, request_id: str | None = None) -> Peer:
    """A provisioning client as docs/device-protocol.md says: username = the key's prefix,
    client id = a random one-time request id."""
    return mqtt.peer(key[:12], key, client_id=request_id or uuid.uuid4().hex)


async def register(mqtt: Mqtt, key: str, serial: str) -> dict[str, Any]:
    """Register ``serial`` with ``key``; the answer (``status`` "registered" or "error")."""
    request_id = uuid.uuid4().hex
    prov = provisioner(mqtt, key, request_id)
    assert (await prov.connect()) == "Success"
    assert await prov.subscribe(topics.provisioning_filter(request_id)) == 1
    body = {"name": f"Probe {serial}", "type": "probe", "serial_number": serial,
            "provisioning_key": key}  # fmt: skip
    await prov.publish(topics.register(request_id), dumps(body))
    replies = (topics.register_response(request_id), topics.register_error(request_id))
    assert await prov.wait(lambda: any(t in replies for t, _ in prov.messages), WAIT_S)
    await prov.close()
    return dict(json.loads(next(p for t, p in prov.messages if t in replies)))


async def test_a_provisioning_client_gets_only_its_own_answer(
    mqtt: Mqtt, client, factory: Factory
) -> None:
    admin = await factory.user("admin", "acme")
    key = (await new_key(client, admin))["key"]
    spy = provisioner(mqtt, key)  # holds the same key
    assert (await spy.connect()) == "Success"
    serial = "ESP-VICTIM"
    for sniffing in ("iot/devices/+/register/+", "iot/devices/+/register/response", "#"):
        assert await spy.subscribe(sniffing) == REFUSED, sniffing
    named = await spy.subscribe(topics.provisioning_filter(serial))
    # The embedded broker ties a provisioning client to its own id; Mosquitto 2.0 cannot
    # (no %c in dynamic security), but the answer never goes to the serial's topics.
    assert named == (REFUSED if mqtt.kind == "embedded" else 1)
    answer = await register(mqtt, key, serial)
    assert answer["status"] == "registered" and answer["serial_number"] == serial
    device = mqtt.peer(answer["device_id"], answer["auth_token"], client_id=answer["device_id"])
    assert (await device.connect()) == "Success"
    await asyncio.sleep(0.2)  # anything misrouted to the spy would have come by now
    assert spy.messages == []


async def test_the_seed_register_form_works_only_where_no_one_else_can_read_the_answer(
    mqtt: Mqtt, client, factory: Factory
) -> None:
    """Through an external broker the register must come under a one-time request id
    and name the serial in the payload; the seed form (topic id = serial) gets an error
    and no token (the embedded broker keeps accepting it: its rules keep the answer
    private)."""
    admin = await factory.user("admin", "acme")
    key = (await new_key(client, admin))["key"]
    serial = "ESP-SEED-FORM"
    prov = provisioner(mqtt, key, serial)
    assert (await prov.connect()) == "Success"
    assert await prov.subscribe(topics.provisioning_filter(serial)) == 1
    await prov.publish(topics.register(serial), dumps({"name": "Seed", "type": "probe",
                                                      "provisioning_key": key}))  # fmt: skip
    replies = (topics.register_response(serial), topics.register_error(serial))
    assert await prov.wait(lambda: any(t in replies for t, _ in prov.messages), WAIT_S)
    topic, payload = next((t, p) for t, p in prov.messages if t in replies)
    answer = json.loads(payload)
    r = await client.get(f"/api/v1/devices?q={serial}", headers=admin.headers)
    if mqtt.kind == "embedded":
        assert topic == replies[0] and answer["status"] == "registered"
        assert serial in r.text
    else:
        assert topic == replies[1] and answer["status"] == "error"
        assert "request id" in answer["message"] and "auth_token" not in answer
        assert serial not in r.text  # no device was created


# --- c. keys of several workspaces ----------------------------------------------------


async def test_provisioning_keys_of_each_workspace_work_side_by_side(
    mqtt: Mqtt, client, factory: Factory
) -> None:
    acme, globex = await factory.user("admin", "acme"), await factory.user("admin", "globex")
    key_a = await new_key(client, acme)
    key_b = await new_key(client, globex)  # made after acme's: acme's still works
    for key, actor, other, serial in (
        (key_a, acme, globex, "ESP-A1"),
        (key_b, globex, acme, "ESP-B1"),
        (key_a, acme, globex, "ESP-A2"),
    ):
        answer = await register(mqtt, key["key"], serial)
        assert answer["status"] == "registered", answer
        r = await client.get(f"/api/v1/devices/{answer['device_id']}", headers=actor.headers)
        assert r.status_code == 200 and r.json()["serial_number"] == serial
        r = await client.get(f"/api/v1/devices/{answer['device_id']}", headers=other.headers)
        assert r.status_code == 404
    # rotating acme's key: the old secret stops, the new one works, globex's is untouched
    r = await client.post(f"/api/v1/provisioning-keys/{key_a['id']}/rotate", headers=acme.headers)
    rotated = r.json()["key"]
    assert (await provisioner(mqtt, key_a["key"]).connect()) == "Not authorized"
    assert (await register(mqtt, rotated, "ESP-A3"))["status"] == "registered"
    assert (await register(mqtt, key_b["key"], "ESP-B2"))["status"] == "registered"
    # revoking globex's key: it is refused, acme's goes on
    r = await client.delete(f"/api/v1/provisioning-keys/{key_b['id']}", headers=globex.headers)
    assert r.status_code == 204
    await eventually(lambda: _refused(mqtt, key_b["key"]))
    assert (await register(mqtt, rotated, "ESP-A4"))["status"] == "registered"


async def _refused(mqtt: Mqtt, key: str) -> bool:
    peer = provisioner(mqtt, key)
    if (await peer.connect()) == "Success":
        await peer.close()
        return False
    return True
