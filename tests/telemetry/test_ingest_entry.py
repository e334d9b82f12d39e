"""Every transport ends in ingestion's one entry point: ``ingest`` of the runtime's one
``TelemetryService``, watched here while a real server (uvicorn, the embedded MQTT
broker, the database) does the work. And MQTT heartbeats join the batch of the data that
arrives with them: one ingestion, one write."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from conftest import Factory, Served
from fieldwatch.monitoring.presence import ONLINE
from fieldwatch.runtime import Runtime
from fieldwatch.telemetry.ingest.service import Incoming, IngestResult
from fieldwatch.telemetry.ingest.store import Chunk
from fieldwatch.telemetry.ingest.writer import WriteResult
from fieldwatch.transports.mqtt import topics
from fieldwatch.transports.mqtt.gateway import MqttGateway
from fieldwatch.transports.mqtt.link import IncomingMessage
from mqtt_peers import Peer, dumps, eventually, has_metrics, latest
from telemetry_helpers import iso, recent
from ws_helpers import connected, make_device, recv


@pytest.fixture
def ingested(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> list[Incoming]:
    """What reaches the runtime's entry point, call by call (each call carried out)."""
    calls: list[Incoming] = []
    entry = runtime.ingest.ingest

    async def watched(incoming: Incoming) -> IngestResult:
        calls.append(incoming)
        return await entry(incoming)

    monkeypatch.setattr(runtime.ingest, "ingest", watched)
    return calls


@pytest.fixture
async def gateway(runtime: Runtime, served: Served) -> AsyncIterator[MqttGateway]:
    """MQTT on the served app's device edge, with the embedded broker."""
    runtime.settings.mqtt_port = 0  # a free port
    gw = MqttGateway(served.edge)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


async def test_http_websocket_and_mqtt_end_in_the_same_entry_point(
    served: Served, runtime: Runtime, factory: Factory, ingested: list[Incoming], gateway
) -> None:
    assert served.edge.ingest is runtime.ingest
    op = await factory.user("operator")
    device = await make_device(served, op)
    body = {"data_type": "over_http", "values": [{"timestamp": iso(recent()), "value": 1.0}]}
    r = await served.http.post(
        f"/api/v1/devices/{device.id}/data", json=body, headers=device.headers
    )
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text

    ws = await connected(served, device)
    await ws.send(json.dumps({"type": "telemetry", "id": "w", "data_type": "over_ws", "value": 2}))
    ack = await recv(ws)
    assert (ack["type"], ack["ref"], ack["accepted"]) == ("ack", "w", 1)
    await ws.close()

    peer = Peer(gateway.broker.port, device.id, device.token, client_id=device.id)
    try:
        assert (await peer.connect()) == "Success"
        await peer.publish(topics.data(device.id, "over_mqtt"), dumps({"value": 3.0}))
        names = {"over_http", "over_ws", "over_mqtt"}
        metrics = await eventually(lambda: has_metrics(latest(served.http, op, device.id), names))
    finally:
        peer.client.disconnect()
        await asyncio.to_thread(peer.client.loop_stop)
    assert {name: metrics[name]["value"] for name in names} == {
        "over_http": 1.0, "over_ws": 2.0, "over_mqtt": 3.0
    }  # fmt: skip
    assert [call.source for call in ingested] == ["http", "websocket", "mqtt"]
    dev = uuid.UUID(device.id)
    assert [call.device_id for call in ingested] == [dev, dev, None]  # MQTT: a batch
    assert set(ingested[2].heard) == {dev}


async def test_an_mqtt_heartbeat_joins_the_batch_of_the_data_beside_it(
    served: Served,
    runtime: Runtime,
    factory: Factory,
    ingested: list[Incoming],
    gateway: MqttGateway,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    op = await factory.user("operator")
    device = await make_device(served, op)
    writes: list[int] = []  # rows of each write of the group-commit writer
    write = runtime.telemetry.writer.write

    async def counted(chunk: Chunk) -> WriteResult:
        writes.append(len(chunk.rows))
        return await write(chunk)

    monkeypatch.setattr(runtime.telemetry.writer, "write", counted)
    heartbeat = {"battery_level": 80, "signal_strength": -60}
    burst = [  # what the broker connection hands over for messages that arrive together
        IncomingMessage(topics.heartbeat(device.id), dumps(heartbeat), qos=0, retain=False, mid=1),
        IncomingMessage(topics.data(device.id, "temperature"), dumps({"value": 21.5}), 0, False, 2),
    ]
    await gateway.handle(burst)
    assert len(ingested) == 1 and ingested[0].source == "mqtt"
    assert writes == [3]  # the heartbeat's two readings and the data, in one write
    metrics: dict[str, Any] = await latest(served.http, op, device.id)
    names = ("battery_level", "signal_strength", "temperature")
    assert [metrics[name]["value"] for name in names] == [80, -60, 21.5]
    dev = uuid.UUID(device.id)
    assert (await runtime.presence.connectivity_of([dev]))[dev] == ONLINE
