"""Per-device limits, over every transport with real clients: distinct metrics per device
(HTTP, WebSocket, MQTT), rate limits (HTTP 429, MQTT refusals and disconnection of a
flooding device while the others' messages go on), and their settings per device type
and per device."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from conftest import Actor, Factory, Served, problem
from fieldwatch.app import create_app, device_edge
from fieldwatch.runtime import Runtime, build_runtime
from fieldwatch.telemetry.models import Series
from fieldwatch.transports.mqtt import topics
from fieldwatch.transports.mqtt.gateway import MqttGateway
from mqtt_peers import Peer, connectivity, device_peer, eventually, gateway, mosquitto_dynsec, peers
from telemetry_helpers import device_with_token
from ws_helpers import Device, connected, recv

# The MQTT tests' fixtures, here too: the embedded broker's gateway and its devices, and
# a Mosquitto with dynamic security.
__all__ = ["gateway", "mosquitto_dynsec", "peers"]

LIMIT = 5


async def series_of(runtime: Runtime, device_id: str) -> int:
    async with runtime.sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).select_from(Series).where(Series.device_id == uuid.UUID(device_id))
        )
    return int(count or 0)


def metrics_body(device_id: str, names: list[str], offset: int = 0) -> dict[str, Any]:
    """A seed 001 upload of ``names`` at one timestamp (a minute ago, plus ``offset`` s)."""
    stamp = time.time() - 60 + offset
    return {"device_id": device_id, "timestamp": stamp, "metrics": dict.fromkeys(names, 1.5)}


# --- distinct metrics per device ----------------------------------------------------------


async def test_metric_limit_over_http(client, runtime: Runtime, factory: Factory) -> None:
    runtime.settings.max_metrics_per_device = LIMIT
    op = await factory.user("operator")
    device, headers = await device_with_token(client, op)
    body = metrics_body(device["id"], [f"m{i}" for i in range(8)])
    r = await client.post("/api/v1/monitoring/data", json=body, headers=headers)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["accepted"] == LIMIT
    assert [x["metric"] for x in out["rejected"]] == ["m5", "m6", "m7"]
    assert all(x["reason"] == f"the device has reached its limit of {LIMIT} metrics"
               for x in out["rejected"])  # fmt: skip
    # Known names still go in, new ones are refused one by one; the rest is stored.
    body = metrics_body(device["id"], ["m0", "m4", "new"], offset=1)
    out = (await client.post("/api/v1/monitoring/data", json=body, headers=headers)).json()
    assert out["accepted"] == 2 and [x["metric"] for x in out["rejected"]] == ["new"]
    r = await client.post(
        f"/api/v1/devices/{device['id']}/data",
        json={"data_type": "another", "values": [{"value": 1}]},
        headers=headers,
    )
    assert problem(r, 422)["rejected"][0]["reason"].endswith(f"limit of {LIMIT} metrics")
    assert await series_of(runtime, device["id"]) == LIMIT
    # Another device has its own allowance.
    other, other_headers = await device_with_token(client, op)
    body = metrics_body(other["id"], ["m5", "m6"])
    out = (await client.post("/api/v1/monitoring/data", json=body, headers=other_headers)).json()
    assert out["accepted"] == 2 and out["rejected"] == []


async def test_metric_limit_holds_for_concurrent_uploads(
    client, runtime: Runtime, factory: Factory
) -> None:
    runtime.settings.max_metrics_per_device = LIMIT
    op = await factory.user("operator")
    device, headers = await device_with_token(client, op)

    async def upload(i: int) -> dict[str, Any]:
        body = metrics_body(device["id"], [f"c{i}"])
        r = await client.post("/api/v1/monitoring/data", json=body, headers=headers)
        return dict(r.json())

    results = await asyncio.gather(*(upload(i) for i in range(12)))
    assert sum(r.get("accepted", 0) for r in results) == LIMIT
    assert await series_of(runtime, device["id"]) == LIMIT


async def test_metric_limit_counts_series_another_process_created(
    client, runtime: Runtime, factory: Factory
) -> None:
    """Each process caches the count per device; another process creating series makes
    that count low, never wrong: the database is counted again before creating."""
    runtime.settings.max_metrics_per_device = LIMIT
    op = await factory.user("operator")
    device, headers = await device_with_token(client, op)
    r = await client.post(
        "/api/v1/monitoring/data", json=metrics_body(device["id"], ["a", "b", "c"]), headers=headers
    )
    assert r.json()["accepted"] == 3
    other = build_runtime(runtime.settings)  # the same database, caches of its own
    try:
        transport = httpx.ASGITransport(app=create_app(runtime=other))
        async with httpx.AsyncClient(transport=transport, base_url="http://other") as second:
            body = metrics_body(device["id"], ["d", "e", "f"], offset=1)
            out = (await second.post("/api/v1/monitoring/data", json=body, headers=headers)).json()
            assert out["accepted"] == 2 and [x["metric"] for x in out["rejected"]] == ["f"]
    finally:
        await other.close()
    body = metrics_body(device["id"], ["g", "d"], offset=2)
    out = (await client.post("/api/v1/monitoring/data", json=body, headers=headers)).json()
    assert out["accepted"] == 1 and [x["metric"] for x in out["rejected"]] == ["g"]
    assert await series_of(runtime, device["id"]) == LIMIT


async def test_metric_limit_over_websocket(
    served: Served, runtime: Runtime, factory: Factory
) -> None:
    runtime.settings.max_metrics_per_device = LIMIT
    admin = await factory.user("admin")
    device, headers = await device_with_token(served.http, admin)
    token = headers["Authorization"].split()[1]
    ws = await connected(served, Device(device["id"], token, headers))
    frame = {"type": "telemetry", "id": "t1", "metrics": {f"w{i}": i for i in range(7)}}
    await ws.send(json.dumps(frame))
    ack = await recv(ws)
    assert (ack["type"], ack["ref"], ack["accepted"]) == ("ack", "t1", LIMIT)
    assert [(x["metric"], x["reason"]) for x in ack["rejected"]] == [
        (f"w{i}", f"the device has reached its limit of {LIMIT} metrics") for i in (5, 6)
    ]
    await ws.close()
    assert await series_of(runtime, device["id"]) == LIMIT


async def test_metric_limit_over_mqtt(client, peers, runtime: Runtime, factory: Factory) -> None:
    runtime.settings.max_metrics_per_device = LIMIT
    op = await factory.user("operator")
    device, peer = await device_peer(client, op, peers)
    assert await peer.subscribe(topics.errors(device["id"])) == 1
    for i in range(7):
        await peer.publish(topics.data(device["id"], f"q{i}"), json.dumps({"value": i}).encode())
    assert await peer.received(topics.errors(device["id"]), 10)
    (_, payload), *_ = [m for m in peer.messages if m[0] == topics.errors(device["id"])]
    told = json.loads(payload)
    assert told["code"] == "rejected"
    assert {x["sensor_type"] for x in told["rejected"]} <= {"q5", "q6"}
    assert all(x["reason"].endswith(f"limit of {LIMIT} metrics") for x in told["rejected"])
    await eventually(lambda: _equals(series_of(runtime, device["id"]), LIMIT))
    await asyncio.sleep(0.2)
    assert await series_of(runtime, device["id"]) == LIMIT


async def _equals(coro: Any, value: Any) -> bool:
    return bool(await coro == value)


# --- rate limits --------------------------------------------------------------------------


def refused_metric(text: str, transport: str) -> float:
    found = re.search(
        rf'fieldwatch_device_messages_refused_total\{{reason="rate_limited",'
        rf'transport="{transport}"\}} ([0-9.e+]+)',
        text,
    )
    return float(found.group(1)) if found else 0.0


async def test_http_uploads_over_the_rate_limit_get_429(
    client, runtime: Runtime, factory: Factory
) -> None:
    runtime.settings.device_rate_limit = 3
    op = await factory.user("operator")
    device, headers = await device_with_token(client, op)
    path = f"/api/v1/devices/{device['id']}/heartbeat"
    for _ in range(3):
        assert (await client.post(path, json={"cpu_usage": 1}, headers=headers)).status_code == 200
    r = await client.post(path, json={"cpu_usage": 1}, headers=headers)
    body = problem(r, 429)
    assert body["type"].endswith("rate-limited")
    assert body["limit"] == {"messages": 3, "window_s": 60}
    retry = int(r.headers["retry-after"])
    assert retry == body["retry_after"] and 1 <= retry <= 20  # 3 a minute: one per 20 s
    assert refused_metric((await client.get("/metrics")).text, "http") == 1
    # The data routes count too; an operator uploading for the device does not.
    r = await client.post(
        "/api/v1/monitoring/data", json=metrics_body(device["id"], ["x"]), headers=headers
    )
    problem(r, 429)
    r = await client.post(
        "/api/v1/monitoring/data", json=metrics_body(device["id"], ["x"]), headers=op.headers
    )
    assert r.status_code == 200, r.text
    # Another device is not affected.
    other, other_headers = await device_with_token(client, op)
    r = await client.post(
        f"/api/v1/devices/{other['id']}/heartbeat", json={}, headers=other_headers
    )
    assert r.status_code == 200
    # Its own limit lifts it at once.
    r = await client.put(
        f"/api/v1/devices/{device['id']}/rate-limit",
        json={"messages": 100, "window_s": 60},
        headers=op.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["source"] == "device"
    assert (await client.post(path, json={}, headers=headers)).status_code == 200


async def test_rate_limits_per_type_and_per_device(
    client, runtime: Runtime, factory: Factory, viewer: Actor
) -> None:
    op = await factory.user("operator", workspace=viewer.workspace)
    device, headers = await device_with_token(client, op, type="pump")
    url = f"/api/v1/devices/{device['id']}/rate-limit"
    shown = (await client.get(url, headers=viewer.headers)).json()
    assert shown["source"] == "default"
    assert shown["limits"]["mqtt"] == {"messages": 1000, "window_s": 60}
    assert shown["limits"]["websocket"] == {"messages": 50, "window_s": 1}
    problem(
        await client.put("/api/v1/device-types/pump/rate-limit", headers=viewer.headers,
                         json={"messages": 2, "window_s": 60}),
        403,
    )  # fmt: skip
    problem(
        await client.put("/api/v1/device-types/pump/rate-limit", headers=op.headers,
                         json={"messages": 0, "window_s": 60}),
        422,
    )  # fmt: skip
    r = await client.put(
        "/api/v1/device-types/pump/rate-limit",
        json={"messages": 2, "window_s": 60},
        headers=op.headers,
    )
    assert r.json() == {
        "source": "type",
        "limits": {t: {"messages": 2, "window_s": 60} for t in ("websocket", "mqtt", "http")},
    }
    assert (await client.get(url, headers=viewer.headers)).json()["source"] == "type"
    beat = f"/api/v1/devices/{device['id']}/heartbeat"
    statuses = [(await client.post(beat, json={}, headers=headers)).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    r = await client.put(url, json={"messages": 5, "window_s": 60}, headers=op.headers)
    assert r.json()["source"] == "device"
    assert (await client.post(beat, json={}, headers=headers)).status_code == 200
    r = await client.delete(url, headers=op.headers)
    assert r.json()["source"] == "type"
    r = await client.delete("/api/v1/device-types/pump/rate-limit", headers=op.headers)
    assert r.json()["source"] == "default"
    assert (await client.post(beat, json={}, headers=headers)).status_code == 200


async def _ack_latencies(peer: Peer, device_id: str, n: int, start: int) -> list[float]:
    """Publish ``n`` readings at QoS 1, 25 ms apart; the broker's ack times."""
    latencies = []
    for i in range(start, start + n):
        payload = json.dumps({"value": i, "timestamp": time.time() - 30 + i / 100}).encode()
        began = time.perf_counter()
        await peer.publish(topics.data(device_id, "temperature"), payload)
        latencies.append(time.perf_counter() - began)
        await asyncio.sleep(0.025)
    return latencies


async def _readings(client, actor: Actor, device_id: str) -> int:
    r = await client.get(
        f"/api/v1/devices/{device_id}/data?data_type=temperature&limit=1000", headers=actor.headers
    )
    return len(r.json()["items"]) if r.status_code == 200 else 0


async def _flood_while_healthy_publishes(
    client, runtime: Runtime, op: Actor, flooder: Peer, flooder_id: str, healthy: Peer,
    healthy_id: str,
) -> tuple[list[float], list[float]]:  # fmt: skip
    """The healthy device's ack latencies alone, then while the other one floods."""
    alone = await _ack_latencies(healthy, healthy_id, 10, 0)

    def flood() -> None:  # 600 messages over about 0.6 s, while the other one publishes
        for i in range(600):
            body = json.dumps({"value": i, "timestamp": time.time() - 30}).encode()
            flooder.client.publish(topics.data(flooder_id, "temperature"), body, qos=0)
            time.sleep(0.001)

    flooding = asyncio.create_task(asyncio.to_thread(flood))
    await asyncio.sleep(0.05)
    during = await _ack_latencies(healthy, healthy_id, 20, 10)
    await flooding
    return alone, during


async def _check_flood_outcome(
    client, runtime: Runtime, op: Actor, flooder: Peer, flooder_id: str, healthy: Peer,
    healthy_id: str, alone: list[float], during: list[float],
) -> None:  # fmt: skip
    # The healthy device: every message acked quickly, stored, and none refused.
    assert max(during) < max(2.0, 20 * max(alone)), (alone, during)
    await eventually(lambda: _equals(_readings(client, op, healthy_id), 30))
    assert not healthy.got(topics.errors(healthy_id))
    # The flooder: told, refused (counted), disconnected; at most its allowance stored.
    assert await flooder.wait(lambda: flooder.disconnects > 0, 10), "the flooder is connected"
    told = [json.loads(p) for t, p in flooder.messages if t == topics.errors(flooder_id)]
    # Told at the first refusal; the "flooding" notice before the kick is best effort
    # (a broker busy with the flood may not deliver it before the connection closes).
    assert told and told[0]["code"] == "rate_limited" and told[0]["retry_after"] > 0, told
    assert {t["code"] for t in told} <= {"rate_limited", "flooding"}
    assert runtime.limits.refused[("mqtt", "rate_limited")] > 100
    assert runtime.limits.disconnects["mqtt"] >= 1
    assert 0 < await _readings(client, op, flooder_id) <= 50 + 5  # its allowance, refilling
    metrics = (await client.get("/metrics")).text
    assert refused_metric(metrics, "mqtt") > 100
    assert 'fieldwatch_device_disconnects_total{transport="mqtt"}' in metrics


async def test_a_flooding_mqtt_device_is_refused_and_dropped_and_others_go_on(
    client, peers, runtime: Runtime, factory: Factory
) -> None:
    """One device floods (600 messages in 0.6 s, over its allowance of 50) while another
    publishes at QoS 1: the other's messages are all acknowledged, about as fast as
    without the flood, and stored; the flooder's excess is refused and counted, it is
    told why, and it is disconnected; its last will still marks it offline."""
    runtime.settings.device_rate_limit = 50
    runtime.settings.device_rate_window_s = 3600  # no token comes back during the test
    op = await factory.user("operator")
    flooder_dev, flooder = await device_peer(client, op, peers)
    healthy_dev, healthy = await device_peer(client, op, peers)
    for peer, dev in ((flooder, flooder_dev), (healthy, healthy_dev)):
        assert await peer.subscribe(topics.errors(dev["id"])) == 1
    alone, during = await _flood_while_healthy_publishes(
        client, runtime, op, flooder, flooder_dev["id"], healthy, healthy_dev["id"]
    )
    await _check_flood_outcome(
        client, runtime, op, flooder, flooder_dev["id"], healthy, healthy_dev["id"],
        alone, during,
    )  # fmt: skip
    # Its last will went through, over the limit as it is: it is shown offline.
    await eventually(lambda: _equals(connectivity(client, op, flooder_dev["id"]), "offline"))


@pytest.mark.parametrize("mqtt_client", ["paho", "mqtt5"])
async def test_a_flooding_device_is_kicked_from_mosquitto(
    client, runtime: Runtime, factory: Factory, mosquitto_dynsec, mqtt_client: str
) -> None:
    broker = mosquitto_dynsec
    runtime.settings.device_rate_limit = 50
    runtime.settings.mqtt_url = broker.admin_url
    runtime.settings.mqtt_client = mqtt_client  # type: ignore[assignment]
    gw = MqttGateway(device_edge(runtime))
    await gw.start()
    made: list[Peer] = []
    try:
        op = await factory.user("operator")
        devices = []
        for _ in range(2):
            device, headers = await device_with_token(client, op)  # synced to the broker
            token = headers["Authorization"].split()[1]
            peer = Peer(broker.port, device["id"], token, client_id=device["id"])
            made.append(peer)
            assert (await peer.connect()) == "Success"
            assert await peer.subscribe(topics.errors(device["id"])) == 1
            devices.append((device, peer))
        (flooder_dev, flooder), (healthy_dev, healthy) = devices
        alone, during = await _flood_while_healthy_publishes(
            client, runtime, op, flooder, flooder_dev["id"], healthy, healthy_dev["id"]
        )
        await _check_flood_outcome(
            client, runtime, op, flooder, flooder_dev["id"], healthy, healthy_dev["id"],
            alone, during,
        )  # fmt: skip
    finally:
        for p in made:
            p.client.disconnect()
            await asyncio.to_thread(p.client.loop_stop)
        await gw.stop()
