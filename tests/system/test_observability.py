"""The platform's figures in /metrics moving with real traffic (HTTP, a WebSocket device,
an MQTT device), liveness and readiness with every configured component, and refused
MQTT publishes logged and counted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from redis.exceptions import RedisError

from conftest import Actor, Served, serve_runtime
from fieldwatch.app import create_app, device_edge
from fieldwatch.core.events import Event
from fieldwatch.core.settings import Settings
from fieldwatch.runtime import Runtime, build_runtime
from fieldwatch.system.dependencies import EDGE
from fieldwatch.system.metrics import FIGURES
from fieldwatch.transports.edge import DeviceEdge
from fieldwatch.transports.mqtt import topics
from fieldwatch.transports.mqtt.gateway import MqttGateway
from mqtt_peers import Peer, dumps
from telemetry_helpers import device_with_token, iso, recent
from ws_helpers import connected, make_device, recv

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
WAIT_S = 10.0


async def scrape(http: httpx.AsyncClient) -> Samples:
    r = await http.get("/metrics")
    assert r.status_code == 200
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not await check():  # noqa: ASYNC110 (a scrape, not an event to wait on)
            await asyncio.sleep(0.05)


def readings(*values: float, seconds_ago: float = 60) -> dict[str, Any]:
    at = recent(seconds_ago)
    points = [
        {"timestamp": iso(at + timedelta(seconds=i)), "value": v} for i, v in enumerate(values)
    ]
    return {"data_type": "temperature", "values": points}


# --- health -------------------------------------------------------------------------------


async def test_liveness_answers_without_looking_at_anything(client):
    r = await client.get("/health/live")
    assert r.status_code == 200 and r.json()["status"] == "ok"


async def test_ready_when_the_database_is(client):
    r = await client.get("/health/ready")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok" and body["failing"] == []
    assert set(body["checks"]) == {"database"}  # nothing else configured
    assert body["checks"]["database"]["schema"] == "current"


@pytest.fixture
async def app_with(settings: Settings, backend) -> AsyncIterator[Callable[..., FastAPI]]:
    """An app on a runtime of its own, with ``settings`` changed as asked."""
    made: list[Runtime] = []

    def make(**changes: Any) -> FastAPI:
        runtime = build_runtime(settings.model_copy(update=changes))
        made.append(runtime)
        return create_app(runtime=runtime)

    yield make
    for runtime in made:
        # Presence flushes to the unreachable Redis on the way out: that fails (and is
        # not what is tested); the database and the client are released all the same.
        with contextlib.suppress(OSError, RedisError):
            await runtime.close()


async def get(app: FastAPI, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fieldwatch.test") as http:
        return await http.get(path)


@pytest.mark.parametrize(
    ("setting", "url", "component"),
    [
        ("redis_url", "redis://127.0.0.1:1/0", "redis"),
        ("rabbitmq_url", "amqp://guest:guest@127.0.0.1:1/", "rabbitmq"),
    ],
)
async def test_not_ready_when_a_configured_component_is_down(app_with, setting, url, component):
    app = app_with(**{setting: url})
    r = await get(app, "/health/ready")
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["status"] == "error" and body["failing"] == [component]
    assert body["checks"][component]["status"] == "error"
    assert body["checks"]["database"]["status"] == "ok"
    # /health lists it too, and answers 503 only without the database (as it always has).
    health = await get(app, "/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.json()["checks"][component]["status"] == "error"
    assert (await get(app, "/health/live")).status_code == 200


async def test_not_ready_while_mqtt_is_to_run_and_does_not(app, client, runtime):
    edge = device_edge(runtime)
    edge.mqtt_expected = True  # start_gateway was asked, and it could not start
    EDGE.put(app, edge)
    r = await client.get("/health/ready")
    assert r.status_code == 503 and r.json()["failing"] == ["mqtt"]
    assert r.json()["checks"]["mqtt"] == {
        "broker": "embedded", "status": "error", "error": "not running"
    }  # fmt: skip


# --- metrics ------------------------------------------------------------------------------


async def test_http_traffic_moves_the_ingest_figures(app, client, admin: Actor, runtime):
    FIGURES.of(app).cache_s = 0  # the database's counts, read at every scrape
    before = await scrape(client)
    device, token = await device_with_token(client, admin)
    url = f"/api/v1/devices/{device['id']}/data"
    body = readings(20.0, 21.0, 22.0)
    r = await client.post(url, json=body, headers=token)
    assert r.status_code == 200 and r.json()["accepted"] == 3, r.text
    r = await client.post(url, json=body, headers=token)  # sent again
    assert r.json()["duplicates"] == 3, r.text
    r = await client.post(url, json=readings(9.0, seconds_ago=-3600), headers=token)
    assert r.status_code == 422, r.text  # an hour ahead: refused
    after = await scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    readings_total = "fieldwatch_ingest_readings_total"
    assert moved(readings_total, transport="http", outcome="accepted") == 3
    assert moved(readings_total, transport="http", outcome="duplicate") == 3
    assert moved(readings_total, transport="http", outcome="refused") == 1
    assert moved(readings_total, transport="mqtt", outcome="accepted") == 0
    commits = moved("fieldwatch_ingest_commit_seconds_count")
    assert commits == moved("fieldwatch_ingest_batch_readings_count") >= 1
    assert moved("fieldwatch_ingest_batch_readings_sum") == 6  # the refused one never went
    assert value(after, "fieldwatch_ingest_queue_readings") == 0
    assert value(after, "fieldwatch_devices", connectivity="online") == 1
    assert value(after, "fieldwatch_commands", status="pending") == 0

    # The write path saturated: the upload is refused with 503, and counted.
    runtime.telemetry.writer.max_pending = 0
    r = await client.post(url, json=readings(1.0, 2.0, seconds_ago=10), headers=token)
    assert r.status_code == 503, r.text
    saturated = await scrape(client)
    assert value(saturated, readings_total, transport="http", outcome="overloaded") == 2
    assert value(saturated, "fieldwatch_http_unavailable_total", reason="saturated") == 1


async def test_event_handler_failures_are_counted(client, runtime):
    async def broken(event: Event) -> None:
        raise RuntimeError("a subscriber's bug")

    runtime.bus.subscribe("test.broken", broken)
    before = value(await scrape(client), "fieldwatch_event_failures_total", stage="handler")
    await runtime.bus.publish(Event("test.broken", uuid.uuid4(), {}))
    after = value(await scrape(client), "fieldwatch_event_failures_total", stage="handler")
    assert after - before == 1


@pytest.fixture
async def served(runtime: Runtime) -> AsyncIterator[Served]:
    async with serve_runtime(runtime) as served:
        yield served


@pytest.fixture
async def mqtt_on(served: Served) -> AsyncIterator[MqttGateway]:
    """MQTT on the served app's device edge (the embedded broker on a free port), as
    ``fieldwatch serve`` starts it."""
    edge: DeviceEdge = served.edge
    edge.settings.mqtt_port = 0
    edge.mqtt_expected = True
    gateway = MqttGateway(edge)
    await gateway.start()
    edge.mqtt = gateway
    try:
        yield gateway
    finally:
        edge.mqtt = None
        await gateway.stop()


async def test_websocket_and_mqtt_devices_move_the_figures(
    served: Served, mqtt_on: MqttGateway, factory, caplog
):
    admin = await factory.user("admin")
    http = served.http
    before = await scrape(http)
    ws_device = await make_device(served, admin)
    ws = await connected(served, ws_device)
    frame = {"type": "telemetry", "id": "f-1", "timestamp": iso(recent(30)),
             "metrics": {"temperature": 21.5, "humidity": 40}}  # fmt: skip
    await ws.send(json.dumps(frame))
    assert (await recv(ws))["accepted"] == 2

    device, token = await device_with_token(http, admin)
    secret = token["Authorization"].split()[1]
    peer = Peer(mqtt_on.broker.port, device["id"], secret, client_id=device["id"])
    assert (await peer.connect()) == "Success"
    try:
        await peer.publish(topics.data(device["id"], "temperature"), dumps({"value": 20}))

        async def stored() -> bool:
            now = await scrape(http)
            key = "fieldwatch_ingest_readings_total"
            return value(now, key, transport="mqtt", outcome="accepted") == 1

        await eventually(stored)
        during = await scrape(http)
        assert value(during, "fieldwatch_device_sessions", transport="websocket") == 1
        assert value(during, "fieldwatch_device_sessions", transport="mqtt") == 1
        assert value(during, "fieldwatch_mqtt_gateway_connected") == 1
        assert value(during, "fieldwatch_mqtt_gateway_lag_seconds") < WAIT_S
        key = "fieldwatch_ingest_readings_total"
        assert (
            value(during, key, transport="websocket", outcome="accepted")
            - value(before, key, transport="websocket", outcome="accepted")
            == 2
        )
        r = await http.get("/health/ready")
        assert r.status_code == 200, r.text
        assert r.json()["checks"]["mqtt"]["status"] == "ok"

        # Another device's topic: refused by the broker, logged once, counted each time.
        other = "0" * 8 + "-0000-0000-0000-" + "0" * 12
        caplog.set_level(logging.WARNING, "fieldwatch.transports.mqtt.refusals")
        for n in (1, 2):
            await peer.publish(topics.data(other, "temperature"), dumps({"value": 99}))

            async def counted(n: int = n) -> bool:
                now = await scrape(http)
                return value(now, "fieldwatch_mqtt_refused_total", reason="acl") == n

            await eventually(counted)
        refusals = [r for r in caplog.records if "publish refused" in r.getMessage()]
        assert len(refusals) == 1, [r.getMessage() for r in refusals]
        message = refusals[0].getMessage()
        assert device["id"] in message and topics.data(other, "temperature") in message
        assert '"value"' not in message  # never the payload
    finally:
        await peer.close()
        await ws.close()
