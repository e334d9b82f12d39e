"""Batched payloads on the MQTT data topic, through the embedded broker and through a
Mosquitto with dynamic security, with real paho devices: an array of readings, several
metrics at once on ``iot/devices/data/{id}/metrics``, readings refused one by one (the
device told on its errors topic, the valid ones kept, the session alive), a message
with too many readings refused whole, duplicates stored once, and QoS 1 acknowledgements
only after the readings are committed (also when a batch is stored in parts)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from conftest import Actor, Factory, require_dynsec_mosquitto
from fieldwatch.app import device_edge
from fieldwatch.runtime import Runtime
from fieldwatch.transports.mqtt import topics
from fieldwatch.transports.mqtt.gateway import MqttGateway
from fieldwatch.transports.mqtt.link import IncomingMessage
from mqtt_helpers import Mosquitto
from mqtt_peers import Peer, device_peer, eventually, peers_on

WAIT_S = 10.0


@dataclass
class Site:
    """The gateway and the broker devices connect to."""

    broker: str  # "embedded" or "mosquitto"
    gateway: MqttGateway
    peers: Callable[..., Peer]


@pytest.fixture(params=["embedded", "mosquitto"])
async def site(request: pytest.FixtureRequest, runtime: Runtime) -> AsyncIterator[Site]:
    with contextlib.ExitStack() as stack:
        if request.param == "mosquitto":
            require_dynsec_mosquitto()
            broker = stack.enter_context(Mosquitto(dynsec=True))
            runtime.settings.mqtt_url = broker.admin_url
        else:
            runtime.settings.mqtt_port = 0  # a free port
        gw = MqttGateway(device_edge(runtime))
        await gw.start()
        try:
            port = broker.port if request.param == "mosquitto" else gw.broker.port
            async with peers_on(port) as make:
                yield Site(request.param, gw, make)
        finally:
            await gw.stop()


def now_s() -> int:
    return int(time.time())


def dumps(body: Any) -> bytes:
    return json.dumps(body).encode()


async def readings(client, actor: Actor, device_id: str, metric: str) -> dict[int, Any]:
    """The device's stored readings of ``metric``: epoch second → value."""
    r = await client.get(
        f"/api/v1/devices/{device_id}/data?data_type={metric}&limit=1000", headers=actor.headers
    )
    assert r.status_code == 200, r.text
    return {
        int(datetime.fromisoformat(i["timestamp"]).astimezone(UTC).timestamp()): i["value"]
        for i in r.json()["items"]
    }


async def stored(client, actor: Actor, device_id: str, metric: str, count: int) -> dict[int, Any]:
    """The readings of ``metric`` once there are ``count`` of them."""

    async def check() -> dict[int, Any] | None:
        found = await readings(client, actor, device_id, metric)
        return found if len(found) >= count else None

    return await eventually(check, WAIT_S)


def told(peer: Peer, device_id: str) -> list[dict[str, Any]]:
    """What the device was told on its errors topic."""
    errors = topics.errors(device_id)
    return [json.loads(p) for t, p in list(peer.messages) if t == errors]


async def listening(client, actor: Actor, site: Site) -> tuple[str, Peer]:
    """A connected device that listens on its errors topic."""
    device, peer = await device_peer(client, actor, site.peers)
    assert await peer.subscribe(topics.errors(device["id"])) == 1
    return device["id"], peer


async def test_an_array_of_readings_in_one_message(client, site: Site, factory: Factory):
    op = await factory.user("operator", "acme")
    device_id, peer = await listening(client, op, site)
    t = now_s() - 60
    batch = [
        {"value": 20.5, "unit": "celsius", "quality": "good", "timestamp": t},
        {"value": 20.75, "timestamp": t + 10},
        {"value": 21, "timestamp": datetime.fromtimestamp(t + 20, UTC).isoformat()},
    ]
    await peer.publish(topics.data(device_id, "temperature"), dumps(batch))
    # The single reading of before still works beside it.
    await peer.publish(
        topics.data(device_id, "temperature"), dumps({"value": 22, "timestamp": t + 30})
    )
    got = await stored(client, op, device_id, "temperature", 4)
    assert got == {t: 20.5, t + 10: 20.75, t + 20: 21.0, t + 30: 22.0}
    assert told(peer, device_id) == [] and peer.disconnects == 0


async def test_several_metrics_in_one_message(client, site: Site, factory: Factory):
    op = await factory.user("operator", "acme")
    device_id, peer = await listening(client, op, site)
    t = now_s() - 60
    several = topics.data(device_id, topics.METRICS)
    assert several == f"iot/devices/data/{device_id}/metrics"
    await peer.publish(several, dumps({
        "timestamp": t,
        "metrics": {"temperature": 21.5, "door": "open", "alarm": False,
                    "pressure": {"value": 1013.2, "unit": "hPa", "quality": "good",
                                 "timestamp": t - 1}},
    }))  # fmt: skip
    # An array of those: a device that buffered several samples of its sensors.
    await peer.publish(several, dumps([
        {"timestamp": t - 20, "metrics": {"temperature": 20.0, "humidity": 40}},
        {"timestamp": t - 10, "metrics": {"temperature": 20.5, "humidity": 41}},
    ]))  # fmt: skip
    assert await stored(client, op, device_id, "temperature", 3) == {
        t - 20: 20.0, t - 10: 20.5, t: 21.5
    }  # fmt: skip
    assert await readings(client, op, device_id, "humidity") == {t - 20: 40, t - 10: 41}
    assert await readings(client, op, device_id, "pressure") == {t - 1: 1013.2}
    assert await readings(client, op, device_id, "door") == {t: "open"}
    assert await readings(client, op, device_id, "alarm") == {t: False}
    # A device whose sensor was named "metrics" still sends it single readings there.
    await peer.publish(several, dumps({"value": 7, "timestamp": t}))
    assert await stored(client, op, device_id, "metrics", 1) == {t: 7}
    r = await client.get(f"/api/v1/devices/{device_id}/data/latest", headers=op.headers)
    assert r.json()["metrics"]["pressure"]["unit"] == "hPa"
    assert told(peer, device_id) == [] and peer.disconnects == 0


async def test_bad_readings_are_refused_one_by_one_and_the_rest_is_kept(
    client, site: Site, factory: Factory
):
    op = await factory.user("operator", "acme")
    device_id, peer = await listening(client, op, site)
    t = now_s() - 60
    batch = [
        {"value": 20.0, "timestamp": t},
        {"value": {"nested": 1}, "timestamp": t + 1},
        5,
        {"value": 21.0, "timestamp": "yesterday"},
        {"value": 22.0, "quality": "superb", "timestamp": t + 3},
        {"timestamp": t + 4},
        {"value": 23.0, "timestamp": t + 3600},  # an hour ahead
        {"metrics": {"humidity": 40}},  # several metrics, on a sensor's topic
        {"value": 24.0, "timestamp": t + 5},
    ]
    await peer.publish(topics.data(device_id, "temperature"), dumps(batch))
    await peer.publish(
        topics.data(device_id, topics.METRICS),
        dumps({"timestamp": t, "metrics": {"voltage": 3.3, "flags": [1, 2]}}),
    )
    await peer.publish(topics.data(device_id, "temperature"), b"{not json")
    assert await stored(client, op, device_id, "temperature", 2) == {t: 20.0, t + 5: 24.0}
    assert await stored(client, op, device_id, "voltage", 1) == {t: 3.3}

    def refused() -> list[dict[str, Any]]:
        return [i for m in told(peer, device_id) if m["code"] == "rejected" for i in m["rejected"]]

    assert await peer.wait(lambda: len(refused()) >= 8, WAIT_S), told(peer, device_id)
    by_index = {i["index"]: i for i in refused() if "index" in i}
    assert sorted(by_index) == [1, 2, 3, 4, 5, 6, 7]
    assert {i["sensor_type"] for i in by_index.values()} == {"temperature"}
    reasons = {k: v["reason"] for k, v in by_index.items()}
    assert reasons[1].startswith("value must be a number, boolean or string")
    assert reasons[2] == "a reading is an object with a value"
    assert reasons[3] == "not a timestamp: 'yesterday'"
    assert reasons[4].startswith("quality must be one of good")
    assert reasons[5] == "value is missing"
    assert reasons[6] == "timestamp is more than 5 minutes in the future"
    assert reasons[7] == f"several metrics at once go to iot/devices/data/{device_id}/metrics"
    [flags] = [i for i in refused() if "index" not in i]  # a single object: no index
    assert flags["sensor_type"] == "flags" and flags["reason"].startswith("value must be")
    assert await peer.wait(lambda: any(m["code"] == "bad_json" for m in told(peer, device_id)))
    [bad] = [m for m in told(peer, device_id) if m["code"] == "bad_json"]
    assert bad["topic"] == topics.data(device_id, "temperature")
    assert bad["message"].startswith("Malformed JSON")
    assert await readings(client, op, device_id, "humidity") == {}
    # The session goes on: the next message is stored.
    assert peer.disconnects == 0
    await peer.publish(
        topics.data(device_id, "temperature"), dumps([{"value": 25, "timestamp": t + 6}])
    )
    assert (await stored(client, op, device_id, "temperature", 3))[t + 6] == 25


async def test_a_message_with_too_many_readings_is_refused_whole(
    client, runtime: Runtime, site: Site, factory: Factory
):
    runtime.settings.mqtt_max_readings = 5
    op = await factory.user("operator", "acme")
    device_id, peer = await listening(client, op, site)
    t = now_s() - 60
    data = topics.data(device_id, "temperature")
    await peer.publish(data, dumps([{"value": i, "timestamp": t + i} for i in range(6)]))
    several = topics.data(device_id, topics.METRICS)
    metrics = {f"m{i}": i for i in range(4)}
    await peer.publish(several, dumps([{"timestamp": t, "metrics": metrics}] * 2))  # 8 readings
    await peer.publish(data, dumps([{"value": 100 + i, "timestamp": t + i} for i in range(5)]))
    got = await stored(client, op, device_id, "temperature", 5)
    assert got == {t + i: 100 + i for i in range(5)}  # none of the refused message's

    def too_many() -> list[dict[str, Any]]:
        return [m for m in told(peer, device_id) if m["code"] == "too_many_readings"]

    assert await peer.wait(lambda: len(too_many()) == 2, WAIT_S), told(peer, device_id)
    first, second = too_many()
    assert (first["topic"], first["limit"]) == (data, 5)
    assert first["message"].startswith("6 readings in one message, at most 5 are accepted")
    assert (second["topic"], second["limit"]) == (several, 5)
    assert second["message"].startswith("8 readings")
    for i in range(4):
        assert await readings(client, op, device_id, f"m{i}") == {}
    assert peer.disconnects == 0


async def test_duplicates_are_stored_once(client, site: Site, factory: Factory):
    op = await factory.user("operator", "acme")
    device_id, peer = await listening(client, op, site)
    t = now_s() - 60
    data = topics.data(device_id, "temperature")
    batch = [{"value": 10 + i, "timestamp": t + i} for i in range(3)]
    await peer.publish(data, dumps(batch))
    assert await stored(client, op, device_id, "temperature", 3) == {t: 10, t + 1: 11, t + 2: 12}
    await peer.publish(data, dumps(batch))  # a resend: its PUBACK was lost, say
    # The same reading twice in one message, and one already stored.
    await peer.publish(
        data, dumps([{"value": 13, "timestamp": t + 3}, {"value": 13, "timestamp": t + 3},
                     {"value": 10, "timestamp": t}])
    )  # fmt: skip
    await peer.publish(
        topics.data(device_id, topics.METRICS),
        dumps([{"timestamp": t + 4, "metrics": {"temperature": 14}}] * 2),
    )
    assert await stored(client, op, device_id, "temperature", 5) == {
        t: 10, t + 1: 11, t + 2: 12, t + 3: 13, t + 4: 14
    }  # fmt: skip
    await asyncio.sleep(0.3)
    assert len(await readings(client, op, device_id, "temperature")) == 5
    assert told(peer, device_id) == []  # a duplicate is no refusal


class Recorder:
    """Ingestion and acknowledgements in the order they happen; ingestion held until
    ``release``."""

    def __init__(self, gateway: MqttGateway, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[str, int]] = []
        self.acked: list[bytes] = []  # the payloads acknowledged, in order
        self.gate = asyncio.Event()
        service, link = gateway.edge.ingest, gateway.link
        assert link is not None
        real_ingest, real_ack = service.ingest, link.ack

        async def ingest(incoming: Any) -> Any:
            await self.gate.wait()
            result = await real_ingest(incoming)  # returns once committed
            self.events.append(("stored", result.accepted))
            return result

        def ack(messages: Any) -> int:
            messages = list(messages)
            self.events.append(("ack", len(messages)))
            self.acked.extend(m.payload for m in messages)
            return real_ack(messages)

        monkeypatch.setattr(service, "ingest", ingest)
        monkeypatch.setattr(link, "ack", ack)


async def test_qos1_acknowledged_only_after_the_readings_are_committed(
    client, site: Site, factory: Factory, monkeypatch: pytest.MonkeyPatch
):
    op = await factory.user("operator", "acme")
    device_id, peer = await listening(client, op, site)
    recorder = Recorder(site.gateway, monkeypatch)
    t = now_s() - 60
    batch = [{"value": i, "timestamp": t + i} for i in range(50)]
    info = peer.client.publish(topics.data(device_id, "temperature"), dumps(batch), qos=1)
    await asyncio.sleep(0.5)
    assert recorder.events == []  # held before the commit: not acknowledged
    if site.broker == "embedded":  # its PUBACK waits for the gateway's
        assert not info.is_published()
    recorder.gate.set()
    await asyncio.to_thread(info.wait_for_publish, 5)
    assert info.is_published()
    await eventually(lambda: _is_true(bool(recorder.events and recorder.events[-1][0] == "ack")))
    assert recorder.events == [("stored", 50), ("ack", 1)]
    # Acknowledged, so committed: no waiting for it.
    assert len(await readings(client, op, device_id, "temperature")) == 50


async def in_parts(
    client,
    runtime: Runtime,
    site: Site,
    factory: Factory,
    monkeypatch: pytest.MonkeyPatch,
    ago: int,
) -> tuple[Actor, str, Peer, Recorder, int, str, list[bytes]]:
    """Group commits of 10 readings, a listening device, a recorder, and six data
    messages of 4 readings each (values 0…23, one a second from ``ago`` seconds back):
    the actor, device id, peer, recorder, first timestamp, data topic and payloads."""
    runtime.settings.ingest_max_batch = 10
    op = await factory.user("operator", "acme")
    device_id, peer = await listening(client, op, site)
    recorder = Recorder(site.gateway, monkeypatch)
    t = now_s() - ago
    payloads = [
        dumps([{"value": k * 4 + i, "timestamp": t + k * 4 + i} for i in range(4)])
        for k in range(6)
    ]
    return op, device_id, peer, recorder, t, topics.data(device_id, "temperature"), payloads


async def test_a_batch_with_many_readings_is_stored_and_acknowledged_in_parts(
    client, runtime: Runtime, site: Site, factory: Factory, monkeypatch: pytest.MonkeyPatch
):
    p = await in_parts(client, runtime, site, factory, monkeypatch, ago=120)
    op, device_id, peer, recorder, t, data, payloads = p
    sent = [peer.client.publish(data, payload, qos=1) for payload in payloads]
    await asyncio.sleep(0.5)  # the first batch is held: the others wait behind it
    recorder.gate.set()
    for info in sent:
        await asyncio.to_thread(info.wait_for_publish, 5)
    await eventually(lambda: _is_true(sum(n for e, n in recorder.events if e == "ack") == 6))
    # Every acknowledgement comes after the commit of its part (two parts may be
    # stored at once), in the order the messages came, and no part holds more than the
    # 10 readings of a group commit plus one message.
    events = recorder.events
    stored_so_far = acked_so_far = 0
    for event, n in events:
        if event == "stored":
            stored_so_far += n
        else:
            acked_so_far += 4 * n  # readings in the messages acknowledged
            assert acked_so_far <= stored_so_far, events
    assert recorder.acked == payloads
    parts = [n for e, n in events if e == "stored"]
    assert sum(parts) == 24 and max(parts) <= 12 and len(parts) >= 2
    got = await readings(client, op, device_id, "temperature")
    assert got == {t + j: j for j in range(24)}
    assert peer.disconnects == 0


async def test_the_parts_of_two_batches_in_hand_are_acknowledged_in_order(
    client, runtime: Runtime, site: Site, factory: Factory, monkeypatch: pytest.MonkeyPatch
):
    # The link hands the gateway a second batch while the first is in hand; the first
    # one's later parts still take their turns before any part of the second.
    p = await in_parts(client, runtime, site, factory, monkeypatch, ago=300)
    op, device_id, _peer, recorder, t, data, payloads = p
    recorder.gate.set()
    # QoS 0: handed straight to the handler, so no broker waits for these acknowledgements.
    sent = [IncomingMessage(data, p, 0, False, 0) for p in payloads]
    await asyncio.gather(site.gateway.handle(sent[:4]), site.gateway.handle(sent[4:]))
    assert recorder.acked == payloads
    got = await readings(client, op, device_id, "temperature")
    assert got == {t + j: j for j in range(24)}


async def _is_true(value: bool) -> bool:
    return value
