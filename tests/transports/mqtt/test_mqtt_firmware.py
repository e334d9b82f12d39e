"""Firmware updates over MQTT: the topics of the contract, who may use them."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid

import pytest

from artifact_helpers import uploaded
from conftest import Actor, Factory, load_test_module
from fieldwatch.transports.mqtt import topics
from fieldwatch.transports.mqtt.acl import Principal, dynsec_role_acls, may_publish, may_subscribe
from fieldwatch.transports.mqtt.firmware import UpdateRequest, update_request
from fieldwatch.transports.mqtt.topics import Kind, Topic
from mqtt_peers import WAIT_S, Peer, dumps, eventually, gateway, peers
from telemetry_helpers import device_with_token

__all__ = ["gateway", "peers"]  # the fixtures used here

_ACL = load_test_module("transports/mqtt/test_mqtt_acl.py")
allowed_by_acls = _ACL._allowed_by_acls

IMAGE = os.urandom(50_000)
ME = "7b1c1f52-3f0e-4c2a-9d61-2a3f5e0b9c11"  # fixed: parametrize ids must be stable
OTHER = "c4e8a9d0-5b7f-4e13-8a22-6f1d0c3b7e42"
UPDATE = "0e5d2c7a-91b4-4f38-b6a0-3c8e7f1d2a95"
DEVICE = Principal("device", ME)
CONTROL = Principal("control", "ops-bot")


# -- topics ------------------------------------------------------------------------------


def test_firmware_topics_are_those_of_the_contract() -> None:
    assert topics.firmware_update(ME, UPDATE) == f"iot/devices/{ME}/firmware/update/{UPDATE}"
    assert topics.firmware_state(ME, UPDATE) == f"iot/devices/{ME}/firmware/update/{UPDATE}/state"
    assert topics.control_firmware(ME) == f"iot/devices/firmware/{ME}/update"


def test_firmware_topics_round_trip() -> None:
    cases = [
        (topics.firmware_update(ME, UPDATE), Topic(Kind.FIRMWARE_UPDATE, ME, update_id=UPDATE)),
        (topics.firmware_state(ME, UPDATE), Topic(Kind.FIRMWARE_STATE, ME, update_id=UPDATE)),
        (topics.control_firmware(ME), Topic(Kind.CONTROL_FIRMWARE, ME)),
    ]
    for text, parsed in cases:
        assert topics.parse(text) == parsed
        assert topics.build(parsed) == text == str(parsed)
    assert Kind.FIRMWARE_STATE in topics.DEVICE_TO_SERVER
    assert Kind.FIRMWARE_UPDATE in topics.SERVER_TO_DEVICE
    assert Kind.CONTROL_FIRMWARE in topics.CONTROL


@pytest.mark.parametrize(
    "bad",
    [
        f"iot/devices/{ME}/firmware/update",  # no update id
        f"iot/devices/{ME}/firmware/update/{UPDATE}/ack",  # not "state"
        f"iot/devices/{ME}/firmware/update/{UPDATE}/state/x",  # one level too many
        f"iot/devices/{ME}/firmware/install/{UPDATE}",  # not "update"
        f"iot/devices/{ME}/firmware/update/+/state",  # a wildcard is not an id
        f"iot/devices/{ME}/firmware/update/a b/state",  # not an id
        f"iot/devices/{ME}/firmware/update/{'x' * 101}",  # too long
        f"iot/devices/firmware/{ME}/update/now",
        f"iot/devices/firmware/{ME}/upgrade",
        "iot/devices/firmware/+/update",
        "iot/devices/firmware/update",
        "iot/devices/firmware/firmware/update",  # a reserved word is never an id
    ],
)
def test_malformed_firmware_topics_are_refused(bad: str) -> None:
    assert topics.parse(bad) is None


def test_builders_refuse_bad_ids() -> None:
    for update_id in ("", "a/b", "+", "#", "x" * 101):
        with pytest.raises(ValueError):
            topics.firmware_update(ME, update_id)
        with pytest.raises(ValueError):
            topics.firmware_state(ME, update_id)
    with pytest.raises(ValueError):
        topics.control_firmware("firmware")  # would make the topic ambiguous


def test_the_server_subscribes_to_state_reports_and_control_requests() -> None:
    def heard(topic: str) -> bool:
        return any(topics.matches(f, topic) for f in topics.SERVER_FILTERS)

    assert heard(topics.firmware_state(ME, UPDATE))
    assert heard(topics.control_firmware(ME))
    assert not heard(topics.firmware_update(ME, UPDATE))  # its own sends


# -- who may do what -----------------------------------------------------------------


def test_a_device_reports_only_its_own_updates() -> None:
    assert may_publish(DEVICE, topics.firmware_state(ME, UPDATE))
    assert not may_publish(DEVICE, topics.firmware_state(OTHER, UPDATE))
    assert not may_publish(DEVICE, topics.firmware_update(ME, UPDATE))  # the server's topic
    assert not may_publish(DEVICE, topics.control_firmware(ME))
    assert may_subscribe(DEVICE, f"iot/devices/{ME}/firmware/update/+")
    assert not may_subscribe(DEVICE, f"iot/devices/{OTHER}/firmware/update/+")
    assert not may_subscribe(DEVICE, "iot/devices/+/firmware/update/+")


def test_a_control_client_asks_for_updates_and_reports_nothing() -> None:
    assert may_publish(CONTROL, topics.control_firmware(ME))
    assert may_publish(CONTROL, topics.control_firmware(OTHER))
    assert not may_publish(CONTROL, topics.firmware_state(ME, UPDATE))
    assert not may_publish(CONTROL, topics.firmware_update(ME, UPDATE))
    assert not may_subscribe(CONTROL, "iot/devices/firmware/+/update")


def test_dynsec_roles_follow_the_same_rules() -> None:
    device = dynsec_role_acls("device", ME)
    assert allowed_by_acls(device, "publishClientSend", topics.firmware_state(ME, UPDATE))
    assert not allowed_by_acls(device, "publishClientSend", topics.firmware_state(OTHER, UPDATE))
    assert not allowed_by_acls(device, "publishClientSend", topics.firmware_update(ME, UPDATE))
    assert allowed_by_acls(device, "subscribe", f"iot/devices/{ME}/firmware/update/+")
    assert allowed_by_acls(device, "publishClientReceive", topics.firmware_update(ME, UPDATE))
    assert not allowed_by_acls(device, "publishClientReceive", topics.firmware_update(OTHER, "u"))
    control = dynsec_role_acls("control")
    assert allowed_by_acls(control, "publishClientSend", topics.control_firmware(ME))
    assert not allowed_by_acls(control, "publishClientSend", topics.firmware_state(ME, UPDATE))


# -- payloads ----------------------------------------------------------------------------


def test_control_requests_are_read() -> None:
    sha = "AB" * 32
    assert update_request({"version": "1.5.0"}) == UpdateRequest("1.5.0")
    with_url = {"version": " 1.5.0 ", "checksum": f"sha256:{sha}", "url": "http://elsewhere/x"}
    assert update_request(with_url) == UpdateRequest("1.5.0", sha.lower())
    assert update_request({"version": "2", "checksum": sha}).checksum == sha.lower()


@pytest.mark.parametrize(
    "payload",
    [{}, {"version": ""}, {"version": 15}, {"version": "x" * 51},
     {"version": "1", "checksum": "abc"}, {"version": "1", "checksum": "md5:" + "a" * 32},
     {"version": "1", "checksum": 5}],
)  # fmt: skip
def test_malformed_control_requests_are_refused(payload: dict) -> None:
    with pytest.raises(ValueError):
        update_request(payload)


# -- through the gateway (embedded broker, real paho clients) ------------------------------


async def _artifact(client, actor: Actor, version: str = "1.5.0") -> dict:
    return await uploaded(client, actor, IMAGE, version=version, device_types="esp32")


async def _update(client, actor: Actor, update_id: str) -> dict:
    r = await client.get(f"/api/v1/firmware/updates/{update_id}", headers=actor.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _device_on_mqtt(client, op: Actor, peers) -> tuple[str, Peer]:
    """A device on 1.0.0 connected as itself, with firmware 1.5.0 in its workspace."""
    await _artifact(client, op)
    device, headers = await device_with_token(client, op, type="esp32", firmware_version="1.0.0")
    me = device["id"]
    peer = peers(me, headers["Authorization"].split()[1], client_id=me)
    assert (await peer.connect()) == "Success"
    return me, peer


async def _start(client, op: Actor, device_id: str) -> str:
    r = await client.post(f"/api/v1/devices/{device_id}/firmware-update",
                          json={"version": "1.5.0"}, headers=op.headers)  # fmt: skip
    assert r.status_code == 201, r.text
    return str(r.json()["update_id"])


async def test_an_update_over_mqtt_topics(client, peers, factory: Factory) -> None:
    op = await factory.user("operator", "acme")
    me, peer = await _device_on_mqtt(client, op, peers)
    assert await peer.subscribe(f"iot/devices/{me}/firmware/update/+") == 1
    await peer.publish(topics.status(me), dumps({"status": "online", "firmware_version": "1.0.0"}))
    update_id = await _start(client, op, me)
    assert await peer.received(topics.firmware_update(me, update_id), WAIT_S)
    message = json.loads(next(p for t, p in peer.messages if t.endswith(update_id)))
    assert message["update_id"] == message["command_id"] == update_id
    assert message["sha256"] == hashlib.sha256(IMAGE).hexdigest()
    assert message["size"] == len(IMAGE) and message["version"] == "1.5.0"
    assert message["download_path"].startswith("/api/v1/device/firmware/artifacts/")

    state = topics.firmware_state(me, update_id)

    async def reached(wanted: str) -> dict:
        async def check() -> dict | None:
            update = await _update(client, op, update_id)
            return update if update["state"] == wanted else None

        return dict(await eventually(check))

    await peer.publish(state, dumps({"state": "acknowledged"}))
    await peer.publish(state, dumps({"state": "downloading", "bytes": 4096}))
    assert (await reached("downloading"))["downloaded_bytes"] == 4096
    for bad in ({"state": "completed"}, {"state": "failed"}, {"state": "downloading", "bytes": -1},
                {"state": "verified", "reason": "timeout"}):  # fmt: skip
        await peer.publish(state, dumps(bad))  # each refused, none changes the update
    await peer.publish(topics.firmware_state(me, str(uuid.uuid4())), dumps({"state": "verified"}))
    await peer.publish(state, dumps({"state": "downloading", "bytes": 8192}))

    async def progressed() -> dict | None:  # (after the refused ones: they came first)
        update = await _update(client, op, update_id)
        return update if update["downloaded_bytes"] == 8192 else None

    update = await eventually(progressed)
    assert update["state"] == "downloading" and update["reason"] is None
    for step in ("downloaded", "verified", "installing", "rebooting"):
        await peer.publish(state, dumps({"state": step}))
    await reached("rebooting")
    # Back after the reboot: the version in the status message completes the update.
    await peer.publish(topics.status(me), dumps({"status": "online", "firmware_version": "1.5.0"}))
    done = await reached("completed")
    assert [t["to_status"] for t in done["transitions"]][-6:] == [
        "downloading", "downloaded", "verified", "installing", "rebooting", "completed"
    ]  # fmt: skip


async def test_coming_back_on_the_old_version_is_a_rollback(client, peers, factory: Factory):
    op = await factory.user("operator", "acme")
    me, peer = await _device_on_mqtt(client, op, peers)
    await peer.publish(topics.heartbeat(me), dumps({"battery_level": 80}))
    update_id = await _start(client, op, me)
    await peer.publish(topics.firmware_state(me, update_id), dumps({"state": "rebooting"}))

    async def finished() -> dict | None:
        update = await _update(client, op, update_id)
        return update if update["state"] in ("rebooting", "failed", "completed") else None

    assert (await eventually(finished))["state"] == "rebooting"
    await peer.publish(topics.heartbeat(me), dumps({"firmware_version": "1.0.0"}))

    async def failed() -> dict | None:
        update = await _update(client, op, update_id)
        return update if update["state"] == "failed" else None

    assert (await eventually(failed))["reason"] == "rolled_back"


async def test_a_control_service_starts_an_update_by_version(client, peers, factory: Factory):
    admin = await factory.user("admin", "acme")
    artifact = await _artifact(client, admin)
    device, _ = await device_with_token(client, admin, type="esp32", firmware_version="1.0.0")
    r = await client.post("/api/v1/api-keys", json={"name": "ops", "role": "operator"},
                          headers=admin.headers)  # fmt: skip
    control = peers("control", r.json()["key"], client_id="ops-service")
    assert (await control.connect()) == "Success"
    where = topics.control_firmware(device["id"])

    async def updates() -> list[dict]:
        r = await client.get("/api/v1/firmware/updates", params={"device_id": device["id"]},
                             headers=admin.headers)  # fmt: skip
        return list(r.json()["items"])

    await control.publish(where, dumps({"version": "1.5.0", "checksum": "sha256:" + "0" * 64}))
    await control.publish(where, dumps({"version": "9.9.9"}))  # no such firmware
    await control.publish(where, dumps({"checksum": artifact["sha256"]}))  # no version
    await asyncio.sleep(0.5)
    assert await updates() == []
    sha = str(artifact["sha256"]).upper()
    await control.publish(where, dumps({"version": "1.5.0", "checksum": f"sha256:{sha}",
                                        "url": "http://elsewhere.example/fw.bin"}))  # fmt: skip
    (update,) = await eventually(updates)
    assert update["target_version"] == "1.5.0" and update["artifact_id"] == artifact["id"]
