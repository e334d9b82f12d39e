"""The MQTT gateway over the embedded broker, with real paho-mqtt devices: logins with
device tokens, data to storage, presence and last will, commands and configuration,
provisioning, control topics, revocation."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from conftest import Factory, create_device
from fieldwatch.app import device_edge
from fieldwatch.runtime import Runtime
from fieldwatch.transports.mqtt import topics
from fieldwatch.transports.mqtt.gateway import MqttGateway
from mqtt_peers import (
    WAIT_S,
    Peer,
    connectivity,
    device_peer,
    dumps,
    eventually,
    gateway,
    has_metrics,
    is_value,
    latest,
    mosquitto_dynsec,
    peers,
)
from telemetry_helpers import device_with_token

__all__ = ["gateway", "mosquitto_dynsec", "peers"]  # the fixtures used here


async def test_device_data_heartbeat_and_last_will(client, peers, factory: Factory):
    op = await factory.user("operator", "acme")
    device, peer = await device_peer(client, op, peers)
    await peer.publish(
        topics.data(device["id"], "temperature"),
        dumps({"value": 23.5, "unit": "celsius", "quality": "good", "timestamp": 1_900_000_000}),
    )
    await peer.publish(topics.data(device["id"], "humidity"), dumps({"value": 41}))
    await peer.publish(
        topics.heartbeat(device["id"]), dumps({"battery_level": 88, "signal_strength": -61})
    )
    metrics = await eventually(
        lambda: has_metrics(latest(client, op, device["id"]), {"humidity", "battery_level"})
    )
    assert metrics["humidity"]["value"] == 41
    assert metrics["battery_level"]["value"] == 88
    assert "temperature" not in metrics  # 2030: more than 5 minutes in the future
    assert await connectivity(client, op, device["id"]) == "online"

    await peer.drop()  # the broker publishes its last will
    await eventually(lambda: is_value(connectivity(client, op, device["id"]), "offline"))


async def test_logins_and_topic_rules(client, peers, factory: Factory):
    op = await factory.user("operator", "acme")
    device, peer = await device_peer(client, op, peers)
    other, _ = await device_with_token(client, op)
    bad = peers(device["id"], "fwd_wrong", client_id="x1")
    assert (await bad.connect()).is_failure
    # Another device's token under this device's name.
    _, headers = await device_with_token(client, op)
    mixed = peers(device["id"], headers["Authorization"].split()[1], client_id="x2")
    assert (await mixed.connect()).is_failure

    await peer.publish(topics.data(other["id"], "temperature"), dumps({"value": 99}))
    assert await peer.subscribe("#") >= 0x80
    assert await peer.subscribe(f"iot/devices/{other['id']}/commands/+") >= 0x80
    assert await peer.subscribe(f"iot/devices/{device['id']}/commands/+") == 1
    await peer.publish(topics.data(device["id"], "temperature"), dumps({"value": 20}))
    await eventually(lambda: has_metrics(latest(client, op, device["id"]), {"temperature"}))
    assert await latest(client, op, other["id"]) == {}  # the forged reading went nowhere


async def test_commands_and_configuration_over_mqtt(client, peers, factory: Factory):
    op = await factory.user("operator", "acme")
    device, peer = await device_peer(client, op, peers)
    assert await peer.subscribe(f"iot/devices/{device['id']}/#") == 1
    await peer.publish(topics.status(device["id"]), dumps({"status": "online"}))
    await eventually(lambda: is_value(connectivity(client, op, device["id"]), "online"))

    r = await client.post(
        f"/api/v1/devices/{device['id']}/commands",
        json={"command": "set_reporting_interval", "params": {"interval": 30}},
        headers=op.headers,
    )
    command_id = r.json()["command_id"]
    topic = topics.command(device["id"], command_id)
    assert await peer.received(topic, WAIT_S)
    payload = json.loads(next(p for t, p in peer.messages if t == topic))
    assert payload["command"] == "set_reporting_interval"
    assert payload["parameters"] == {"interval": 30} and payload["attempt"] == 1

    await peer.publish(topics.command_ack(device["id"], command_id), b"{}")
    await peer.publish(
        topics.command_result(device["id"], command_id),
        dumps({"status": "completed", "result": {"interval": 30}}),
    )

    async def finished() -> dict | None:
        r = await client.get(f"/api/v1/commands/{command_id}", headers=op.headers)
        return r.json() if r.json()["status"] == "completed" else None

    done = await eventually(finished)
    assert [t["to_status"] for t in done["transitions"]] == [
        "pending", "sent", "acknowledged", "completed",
    ]  # fmt: skip
    assert done["transport"] == "mqtt" and done["result"] == {"interval": 30}

    r = await client.put(
        f"/api/v1/devices/{device['id']}/config", json={"led": "on"}, headers=op.headers
    )
    assert r.status_code == 200

    def config_topic() -> str | None:
        prefix = f"iot/devices/{device['id']}/config/"
        return next((t for t, _ in peer.messages if t.startswith(prefix)), None)

    assert await peer.wait(lambda: config_topic() is not None, WAIT_S)
    found = config_topic()
    assert found is not None
    pushed = json.loads(next(p for t, p in peer.messages if t == found))
    assert (pushed["version"], pushed["config"], pushed["updates"]) == (
        1,
        {"led": "on"},
        {"led": "on"},
    )
    await peer.publish(f"{found}/applied", dumps({"version": 1}))

    async def in_sync() -> bool:
        r = await client.get(f"/api/v1/devices/{device['id']}/config", headers=op.headers)
        return bool(r.json()["in_sync"])

    await eventually(in_sync)


async def test_provisioning_over_mqtt(client, peers, factory: Factory):
    admin = await factory.user("admin", "acme")
    r = await client.post("/api/v1/provisioning-keys", json={"name": "line 2"},
                          headers=admin.headers)  # fmt: skip
    key = r.json()["key"]
    serial = "ESP-7F00"
    prov = peers("provision", key, client_id=serial)
    assert (await prov.connect()) == "Success"
    assert await prov.subscribe(f"iot/devices/{serial}/register/+") == 1
    assert await prov.subscribe("iot/devices/OTHER/register/+") >= 0x80
    await prov.publish(topics.register(serial), dumps({"name": "Temp 7", "type": "temperature"}))
    response = topics.register_response(serial)
    assert await prov.received(response, WAIT_S)
    body = json.loads(next(p for t, p in prov.messages if t == response))
    assert body["status"] == "registered" and body["auth_token"].startswith("fwd_")
    assert body["server_config"]["heartbeat_interval"] == 60

    device = peers(body["device_id"], body["auth_token"], client_id=body["device_id"])
    assert (await device.connect()) == "Success"
    await prov.publish(topics.register(serial), dumps({"type": "temperature"}))  # no name
    error = topics.register_error(serial)
    assert await prov.received(error, WAIT_S)
    assert json.loads(next(p for t, p in prov.messages if t == error))["status"] == "error"
    wrong = peers("provision", "fwp_wrong", client_id="ESP-0001")
    assert (await wrong.connect()).is_failure


async def test_revoking_the_token_disconnects_the_device(client, peers, factory: Factory):
    op = await factory.user("operator", "acme")
    device, peer = await device_peer(client, op, peers)
    await peer.publish(topics.heartbeat(device["id"]), dumps({"battery_level": 50}))
    r = await client.get(f"/api/v1/devices/{device['id']}/tokens", headers=op.headers)
    tokens = r.json()["items"]
    r = await client.delete(
        f"/api/v1/devices/{device['id']}/tokens/{tokens[0]['id']}", headers=op.headers
    )
    assert r.status_code in (200, 204), r.text
    assert await peer.wait(lambda: peer.disconnects > 0, WAIT_S), "still connected"


async def test_control_topic_queues_a_command(client, peers, factory: Factory, runtime):
    admin = await factory.user("admin", "acme")
    device = await create_device(client, admin)
    r = await client.post("/api/v1/api-keys", json={"name": "ops", "role": "operator"},
                          headers=admin.headers)  # fmt: skip
    assert r.status_code == 201, r.text
    control = peers("control", r.json()["key"], client_id="ops-service")
    assert (await control.connect()) == "Success"
    await control.publish(
        topics.control_command(device["id"]),
        dumps({"command": "reboot", "parameters": {"delay": 1}}),
    )

    async def queued() -> list:
        r = await client.get(f"/api/v1/devices/{device['id']}/commands", headers=admin.headers)
        return list(r.json()["items"])

    (command,) = await eventually(queued)
    assert (command["command"], command["params"]) == ("reboot", {"delay": 1})
    # Another workspace's device: refused by the broker.
    other_admin = await factory.user("admin", "globex")
    foreign = await create_device(client, other_admin)
    await control.publish(topics.control_command(foreign["id"]), dumps({"command": "reboot"}))
    await asyncio.sleep(0.5)
    r = await client.get(f"/api/v1/devices/{foreign['id']}/commands", headers=other_admin.headers)
    assert r.json()["total"] == 0
    assert uuid.UUID(command["command_id"])


async def test_control_topic_honours_the_max_attempts_setting(client, peers, factory, runtime):
    runtime.settings.command_max_attempts = 2
    admin = await factory.user("admin", "acme")
    device = await create_device(client, admin)
    r = await client.post("/api/v1/api-keys", json={"name": "ops", "role": "operator"},
                          headers=admin.headers)  # fmt: skip
    control = peers("control", r.json()["key"], client_id="ops-service")
    assert (await control.connect()) == "Success"
    await control.publish(topics.control_command(device["id"]), dumps({"command": "reboot"}))

    async def queued() -> list:
        r = await client.get(f"/api/v1/devices/{device['id']}/commands", headers=admin.headers)
        return list(r.json()["items"])

    (command,) = await eventually(queued)
    assert command["max_attempts"] == 2


async def test_agent_and_simulator_over_mqtt(served, runtime: Runtime, factory: Factory):
    """The SDK's MQTT transport: readings stored, commands answered, config applied."""
    from fieldwatch.agent import DeviceAgent
    from fieldwatch.agent.simulator import simulate

    runtime.settings.mqtt_port = 0
    gw = MqttGateway(device_edge(runtime))
    await gw.start()
    try:
        op = await factory.user("operator", "acme")
        device, headers = await device_with_token(served.http, op)
        token = headers["Authorization"].split()[1]
        url = f"mqtt://127.0.0.1:{gw.broker.port}"
        agent = DeviceAgent(served.base_url, token, transport="mqtt", mqtt_url=url)
        agent.add_command_handler("ping", lambda params: {"pong": True})
        async with agent:
            assert (await agent.send({"temperature": 21.5}))["accepted"] == 1
            await eventually(
                lambda: has_metrics(latest(served.http, op, device["id"]), {"temperature"})
            )
            r = await served.http.post(f"/api/v1/devices/{device['id']}/commands",
                                       json={"command": "ping"}, headers=op.headers)  # fmt: skip
            command_id = r.json()["command_id"]

            async def completed() -> dict | None:
                r = await served.http.get(f"/api/v1/commands/{command_id}", headers=op.headers)
                return r.json() if r.json()["status"] == "completed" else None

            done = await eventually(completed)
            assert done["result"] == {"pong": True} and done["transport"] == "mqtt"
            config = {"data_reporting_interval": 9}
            r = await served.http.put(f"/api/v1/devices/{device['id']}/config",
                                      json=config, headers=op.headers)  # fmt: skip

            async def applied() -> bool:
                r = await served.http.get(f"/api/v1/devices/{device['id']}/config",
                                          headers=op.headers)  # fmt: skip
                return bool(r.json()["in_sync"])

            await eventually(applied)
        await eventually(lambda: is_value(connectivity(served.http, op, device["id"]), "offline"))

        bad = DeviceAgent(served.base_url, token, transport="mqtt", mqtt_url=url, timeout_s=3)
        r = await served.http.get(f"/api/v1/devices/{device['id']}/tokens", headers=op.headers)
        first = r.json()["items"][0]["id"]
        await served.http.delete(f"/api/v1/devices/{device['id']}/tokens/{first}",
                                 headers=op.headers)  # fmt: skip
        with pytest.raises(Exception, match="refused"):
            await bad.start()

        sim, sim_headers = await device_with_token(served.http, op)
        stats = await simulate(
            served.base_url, [sim_headers["Authorization"].split()[1]], transport="mqtt",
            interval=0.1, duration=1.5, report_every=0.5, mqtt_url=url,
        )  # fmt: skip
        assert stats.errors == 0 and stats.accepted >= 3 * 5
        await eventually(lambda: has_metrics(latest(served.http, op, sim["id"]), {"humidity"}))
    finally:
        await gw.stop()


# --- an external Mosquitto with dynamic security ------------------------------------------


@pytest.mark.parametrize("mqtt_client", ["paho", "mqtt5"])
async def test_external_mosquitto_with_dynamic_security(
    client, runtime: Runtime, factory: Factory, mosquitto_dynsec, mqtt_client: str
):
    broker = mosquitto_dynsec
    runtime.settings.mqtt_url = broker.admin_url
    runtime.settings.mqtt_client = mqtt_client  # type: ignore[assignment]
    gw = MqttGateway(device_edge(runtime))
    await gw.start()
    made: list[Peer] = []
    try:
        op = await factory.user("operator", "acme")
        device, headers = await device_with_token(client, op)  # synced to the broker
        token = headers["Authorization"].split()[1]
        peer = Peer(broker.port, device["id"], token, client_id=device["id"])
        made.append(peer)
        assert (await peer.connect()) == "Success"
        assert await peer.subscribe("#") >= 0x80
        other, _ = await device_with_token(client, op)
        await peer.publish(topics.data(other["id"], "temperature"), dumps({"value": 1}))
        await peer.publish(topics.data(device["id"], "temperature"), dumps({"value": 19.5}))
        metrics = await eventually(
            lambda: has_metrics(latest(client, op, device["id"]), {"temperature"})
        )
        assert metrics["temperature"]["value"] == 19.5
        assert await latest(client, op, other["id"]) == {}

        intruder = Peer(broker.port, device["id"], "fwd_wrong", client_id=device["id"])
        made.append(intruder)
        assert (await intruder.connect()).is_failure

        tokens = (
            await client.get(f"/api/v1/devices/{device['id']}/tokens", headers=op.headers)
        ).json()["items"]
        r = await client.delete(
            f"/api/v1/devices/{device['id']}/tokens/{tokens[0]['id']}", headers=op.headers
        )
        assert r.status_code in (200, 204)
        assert await peer.wait(lambda: peer.disconnects > 0, WAIT_S), "still connected"
        again = Peer(broker.port, device["id"], token, client_id=device["id"])
        made.append(again)
        assert (await again.connect()).is_failure

        # Provisioning through the broker: the key's own login, a one-time request id
        admin = await factory.user("admin", "acme")
        r = await client.post("/api/v1/provisioning-keys", json={"name": "line 3"},
                              headers=admin.headers)  # fmt: skip
        key = r.json()
        assert key["key"].startswith(key["prefix"])
        request = uuid.uuid4().hex
        prov = Peer(broker.port, key["prefix"], key["key"], client_id=request)
        made.append(prov)
        assert (await prov.connect()) == "Success"
        assert await prov.subscribe(f"iot/devices/{request}/register/+") == 1
        body = {"name": "Ext 1", "type": "probe", "serial_number": "ESP-EXT1",
                "provisioning_key": key["key"]}  # fmt: skip
        await prov.publish(topics.register(request), dumps(body))
        response = topics.register_response(request)
        assert await prov.received(response, WAIT_S)
        answer = json.loads(next(p for t, p in prov.messages if t == response))
        assert answer["status"] == "registered" and answer["created"] is True
        assert answer["serial_number"] == "ESP-EXT1"
        fresh = Peer(broker.port, answer["device_id"], answer["auth_token"],
                     client_id=answer["device_id"])  # fmt: skip
        made.append(fresh)
        assert (await fresh.connect()) == "Success"  # its token reached the broker at once
        r = await client.delete(f"/api/v1/provisioning-keys/{key['id']}", headers=admin.headers)
        assert r.status_code == 204
        assert await prov.wait(lambda: prov.disconnects > 0, WAIT_S)
        late = Peer(broker.port, key["prefix"], key["key"], client_id=uuid.uuid4().hex)
        made.append(late)
        assert (await late.connect()).is_failure
    finally:
        for p in made:
            p.client.disconnect()
            await asyncio.to_thread(p.client.loop_stop)
        await gw.stop()


async def test_malformed_payloads_are_dropped_and_the_rest_goes_on(client, peers, factory: Factory):
    op = await factory.user("operator", "acme")
    device, peer = await device_peer(client, op, peers)
    data = topics.data(device["id"], "temperature")
    for bad in (b"{not json", b"[1, 2]", b'"text"', dumps({"value": float("nan")})[:0] + b"NaN",
                dumps({"value": {"nested": 1}}), dumps({"unit": "celsius"})):  # fmt: skip
        await peer.publish(data, bad)
    await peer.publish(topics.command_ack(device["id"], "not-a-uuid"), b"{}")
    await peer.publish(topics.command_result(device["id"], str(uuid.uuid4())), b'{"status": "x"}')
    await peer.publish(topics.heartbeat(device["id"]), b"{broken")
    await peer.publish(data, dumps({"value": 21.25}))
    metrics = await eventually(
        lambda: has_metrics(latest(client, op, device["id"]), {"temperature"})
    )
    assert metrics["temperature"]["value"] == 21.25
    r = await client.get(
        f"/api/v1/devices/{device['id']}/data?data_type=temperature", headers=op.headers
    )
    assert [i["value"] for i in r.json()["items"]] == [21.25]  # none of the bad ones
    assert peer.disconnects == 0
