"""``FIELDWATCH_MQTT_DEVICE_LOGINS=on_request``: only tokens created for MQTT log in to the
broker. On an external Mosquitto 2 with dynamic security (a real ``mosquitto`` process
this module starts) a token without MQTT becomes no login there at all, and the start
removes logins that should not be there; the embedded broker refuses such tokens too.
Real MqttGateways, real paho-mqtt clients, tokens issued through the API."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from conftest import Actor, Factory, create_device, require_dynsec_mosquitto
from fieldwatch.app import device_edge
from fieldwatch.runtime import Runtime
from fieldwatch.transports.mqtt import topics
from fieldwatch.transports.mqtt.dynsec import DynsecManager
from fieldwatch.transports.mqtt.gateway import MqttGateway
from mqtt_helpers import Mosquitto
from mqtt_peers import Peer, dumps, eventually, has_metrics, latest

REFUSED = "Not authorized"
WAIT_S = 10.0


@dataclass
class Broker:
    """A gateway (stopped and started again at will) on one broker."""

    runtime: Runtime
    mosquitto: Mosquitto | None
    gateway: MqttGateway | None = None
    made: list[Peer] = field(default_factory=list)

    async def start(self, logins: str) -> None:
        self.runtime.settings.mqtt_device_logins = logins  # type: ignore[assignment]
        self.gateway = MqttGateway(device_edge(self.runtime))
        await self.gateway.start()

    async def stop(self) -> None:
        for peer in self.made:
            await peer.close()
        self.made.clear()
        if self.gateway is not None:
            await self.gateway.stop()
            self.gateway = None

    def peer(self, username: str, password: str, client_id: str | None = None) -> Peer:
        assert self.gateway is not None
        port = self.mosquitto.port if self.mosquitto else self.gateway.broker.port
        peer = Peer(port, username, password, client_id=client_id or username)
        self.made.append(peer)
        return peer

    async def connect(self, device_id: str, token: str) -> str:
        return str(await self.peer(device_id, token).connect())

    async def logins(self) -> dict[str, str]:
        """Mosquitto's device logins: device id → the token id it holds."""
        assert self.mosquitto is not None
        manager = DynsecManager.from_url(self.mosquitto.admin_url)
        await manager.start()
        try:
            return await manager.device_logins()
        finally:
            await manager.stop()


async def _broker(kind: str, runtime: Runtime) -> AsyncIterator[Broker]:
    mosquitto = None
    if kind == "mosquitto":
        require_dynsec_mosquitto()
        mosquitto = Mosquitto(dynsec=True).start()
        runtime.settings.mqtt_url = mosquitto.admin_url
    else:
        runtime.settings.mqtt_port = 0  # a free port
    broker = Broker(runtime, mosquitto)
    try:
        yield broker
    finally:
        await broker.stop()
        if mosquitto is not None:
            mosquitto.stop()


@pytest.fixture(params=["embedded", "mosquitto"])
async def broker(request: pytest.FixtureRequest, runtime: Runtime) -> AsyncIterator[Broker]:
    async for made in _broker(request.param, runtime):
        yield made


@pytest.fixture
async def mosquitto_broker(runtime: Runtime) -> AsyncIterator[Broker]:
    async for made in _broker("mosquitto", runtime):
        yield made


async def issue(client, actor: Actor, device_id: str, **body: Any) -> dict[str, Any]:
    r = await client.post(f"/api/v1/devices/{device_id}/tokens", json=body, headers=actor.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def stored(client, actor: Actor, broker: Broker, device_id: str, token: str) -> None:
    """The device connects with ``token`` and its reading reaches storage."""
    peer = broker.peer(device_id, token)
    assert (await peer.connect()) == "Success"
    await peer.publish(topics.data(device_id, "temperature"), dumps({"value": 20.5}))
    metrics = await eventually(
        lambda: has_metrics(latest(client, actor, device_id), {"temperature"})
    )
    assert metrics["temperature"]["value"] == 20.5


async def test_only_tokens_made_for_mqtt_log_in(broker: Broker, client, operator: Actor):
    await broker.start("on_request")
    web = (await create_device(client, operator, name="web"))["id"]
    web_token = await issue(client, operator, web)
    mqtt = (await create_device(client, operator, name="mqtt"))["id"]
    mqtt_token = await issue(client, operator, mqtt, mqtt=True)
    assert (web_token["mqtt"], mqtt_token["mqtt"]) == (False, True)
    # a later token without MQTT leaves the device's MQTT login as it was
    second = await issue(client, operator, mqtt, name="for the web page")
    if broker.mosquitto is not None:
        assert await broker.logins() == {mqtt: mqtt_token["id"]}  # no login for "web"
    assert await broker.connect(web, web_token["token"]) == REFUSED
    assert await broker.connect(mqtt, second["token"]) == REFUSED
    await stored(client, operator, broker, mqtt, mqtt_token["token"])
    # the token without MQTT still works over HTTP
    me = await client.get(
        "/api/v1/device/me", headers={"Authorization": f"Bearer {web_token['token']}"}
    )
    assert me.status_code == 200


async def revoked_login(broker: Broker, client: Any, operator: Actor) -> str:
    """A device whose MQTT token logged in, then was revoked: its login refused now.
    The device's id."""
    device = (await create_device(client, operator))["id"]
    token = await issue(client, operator, device, mqtt=True)
    assert await broker.connect(device, token["token"]) == "Success"
    r = await client.delete(
        f"/api/v1/devices/{device}/tokens/{token['id']}", headers=operator.headers
    )
    assert r.status_code == 200

    async def refused() -> bool:
        return await broker.connect(device, token["token"]) == REFUSED

    assert await eventually(refused)
    return str(device)


async def test_revoking_a_token_made_for_mqtt_ends_its_login(
    broker: Broker, client, operator: Actor
):
    await broker.start("on_request")
    await revoked_login(broker, client, operator)


async def test_the_start_removes_the_logins_that_should_not_be_there(
    mosquitto_broker: Broker, client, operator: Actor
):
    broker = mosquitto_broker
    await broker.start("all")  # every token is a login, as before
    made = {}
    for name, mqtt in (("web", False), ("mqtt", True), ("revoked", True)):
        device = (await create_device(client, operator, name=name))["id"]
        made[name] = (device, await issue(client, operator, device, mqtt=mqtt))
    assert set(await broker.logins()) == {device for device, _ in made.values()}
    assert await broker.connect(made["web"][0], made["web"][1]["token"]) == "Success"
    await broker.stop()
    # revoked while no gateway listened: the broker never heard of it
    device, token = made["revoked"]
    r = await client.delete(
        f"/api/v1/devices/{device}/tokens/{token['id']}", headers=operator.headers
    )
    assert r.status_code == 200

    await broker.start("on_request")
    mqtt_device, mqtt_token = made["mqtt"]
    assert await broker.logins() == {mqtt_device: mqtt_token["id"]}
    for name in ("web", "revoked"):
        device, token = made[name]
        assert await broker.connect(device, token["token"]) == REFUSED
    await stored(client, operator, broker, mqtt_device, mqtt_token["token"])
    await broker.stop()
    await broker.start("on_request")  # nothing more to remove
    assert await broker.logins() == {mqtt_device: mqtt_token["id"]}


async def test_a_device_registered_over_mqtt_gets_a_token_for_mqtt(
    broker: Broker, client, factory: Factory
):
    await broker.start("on_request")
    admin = await factory.user("admin", "acme")
    r = await client.post("/api/v1/provisioning-keys", json={"name": "line"}, headers=admin.headers)
    key = r.json()["key"]
    request_id = uuid.uuid4().hex
    prov = broker.peer(key[:12], key, client_id=request_id)
    assert (await prov.connect()) == "Success"
    assert await prov.subscribe(topics.provisioning_filter(request_id)) == 1
    body = {"name": "Probe", "type": "probe", "serial_number": "SN-M1", "provisioning_key": key}
    await prov.publish(topics.register(request_id), dumps(body))
    answer = topics.register_response(request_id)
    assert await prov.wait(lambda: any(t == answer for t, _ in prov.messages), WAIT_S)
    registered = json.loads(next(p for t, p in prov.messages if t == answer))
    await stored(client, admin, broker, registered["device_id"], registered["auth_token"])
    url = f"/api/v1/devices/{registered['device_id']}/tokens"
    tokens = (await client.get(url, headers=admin.headers)).json()["items"]
    assert [t["mqtt"] for t in tokens] == [True]


@pytest.mark.parametrize("logins", ["all", "on_request"])
async def test_a_new_token_after_a_revoked_one_logs_in(
    mosquitto_broker: Broker, client, operator: Actor, logins: str
):
    broker = mosquitto_broker
    await broker.start(logins)
    device = await revoked_login(broker, client, operator)
    new = await issue(client, operator, device, mqtt=True)
    await stored(client, operator, broker, device, new["token"])
