"""The clients of ``tests/deploy/test_topology.py``: a signed-in HTTP client, a WebSocket
device and an MQTT device (``Fleet``), Socket.IO dashboards on chosen api processes, and
the reads that tell what the processes did (their metrics, the periodic jobs' rows)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import httpx
import socketio
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect

from fieldwatch.devtools.parts import Part
from fieldwatch.devtools.topology import Topology
from fieldwatch.transports.mqtt import topics
from mqtt_peers import Peer
from telemetry_helpers import iso
from ws_helpers import recv

WAIT_S = 15.0


@dataclass
class Fleet:
    http: httpx.AsyncClient  # to nginx, signed in as the admin
    auth: dict[str, str]
    ws_device: dict[str, str]  # id, token
    mqtt_device: dict[str, str]
    ws: ClientConnection
    peer: Peer
    frames: list[dict[str, Any]] = field(default_factory=list)  # what the ws device got

    async def command_frame(self, command_id: str) -> dict[str, Any]:
        """The WebSocket device's frame for ``command_id`` (other frames are kept)."""
        async with asyncio.timeout(WAIT_S):
            while True:
                found = [f for f in self.frames if f.get("command_id") == command_id]
                if found:
                    return found[0]
                self.frames.append(await recv(self.ws))


async def new_device(http: httpx.AsyncClient, auth: dict[str, str], name: str) -> dict[str, str]:
    r = await http.post("/api/v1/devices", json={"name": name, "type": "esp32"}, headers=auth)
    assert r.status_code == 201, r.text
    device_id = r.json()["id"]
    r = await http.post(f"/api/v1/devices/{device_id}/tokens", headers=auth)
    assert r.status_code == 201, r.text
    return {"id": device_id, "token": r.json()["token"]}


@contextlib.asynccontextmanager
async def open_fleet(topology: Topology) -> AsyncIterator[Fleet]:
    """Signed in through nginx; a WebSocket device on the gateway through nginx, an MQTT
    device on Mosquitto, both online."""
    async with httpx.AsyncClient(base_url=topology.url, timeout=10) as http:
        login = {"email": topology.admin_email, "password": topology.admin_password}
        r = await http.post("/api/v1/auth/login", json=login)
        assert r.status_code == 200, r.text
        auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
        ws_device = await new_device(http, auth, "ws-device")
        mqtt_device = await new_device(http, auth, "mqtt-device")
        ws_url = topology.url.replace("http://", "ws://") + "/ws/device"
        headers = {"Authorization": f"Bearer {ws_device['token']}"}
        ws = await connect(ws_url, additional_headers=headers, open_timeout=WAIT_S)
        assert (await recv(ws))["type"] == "welcome"
        assert topology.broker is not None
        peer = Peer(topology.broker.port, mqtt_device["id"], mqtt_device["token"],
                    client_id=mqtt_device["id"])  # fmt: skip
        assert (await peer.connect()) == "Success"
        assert await peer.subscribe(f"iot/devices/{mqtt_device['id']}/commands/+") == 1
        await peer.publish(topics.status(mqtt_device["id"]), b'{"status": "online"}')
        try:
            yield Fleet(http, auth, ws_device, mqtt_device, ws, peer)
        finally:
            await peer.close()
            await ws.close()


def sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one sample of a Prometheus text page (0 when absent)."""
    for family in text_string_to_metric_families(metrics):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


async def send_ws_reading(fleet: Fleet, metric: str, value: float) -> None:
    ref = f"r-{uuid.uuid4().hex[:8]}"
    when = iso(dt.datetime.now(dt.UTC) - dt.timedelta(milliseconds=200))
    await fleet.ws.send(json.dumps({"type": "telemetry", "id": ref, "metrics": {metric: value},
                                    "timestamp": when}))  # fmt: skip
    async with asyncio.timeout(WAIT_S):
        while True:
            frame = await recv(fleet.ws)
            if frame.get("type") == "ack" and frame.get("ref") == ref:
                assert frame["accepted"] == 1, frame
                return
            fleet.frames.append(frame)


async def latest(http: httpx.AsyncClient, base: str, auth: dict[str, str], device: str) -> dict:
    r = await http.get(f"{base}/api/v1/devices/{device}/data/latest", headers=auth)
    assert r.status_code == 200, r.text
    return {name: m["value"] for name, m in r.json()["metrics"].items()}


class Dashboard:
    """A Socket.IO client through nginx from its own loopback address: nginx's
    ``ip_hash`` for Socket.IO then picks an api process by that address."""

    def __init__(self, source: str) -> None:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0)))
        self.sio = socketio.AsyncClient(reconnection=False, http_session=self.session)
        self.seen: list[tuple[str, str, Any]] = []
        self.sio.on("telemetry", self._telemetry)
        self.sio.on("command", self._command)

    async def _telemetry(self, message: dict[str, Any]) -> None:
        for metric, reading in message["metrics"].items():
            self.seen.append((message["device_id"], metric, reading["value"]))

    async def _command(self, message: dict[str, Any]) -> None:
        self.seen.append((message["device_id"], "command", message.get("command_id")))

    async def close(self) -> None:
        await self.sio.disconnect()
        await self.session.close()


async def dashboards_on_each_api(topology: Topology, token: str) -> list[Dashboard]:
    """Connect dashboards from 127.0.N.1 until each api process has one; the others go."""
    apis = topology.role("api")
    on: dict[str, Dashboard] = {}
    extra: list[Dashboard] = []
    for n in range(1, 40):
        dashboard = Dashboard(f"127.0.{n}.1")
        before = [sample(await a.metrics(), "fieldwatch_realtime_clients") for a in apis]
        await dashboard.sio.connect(topology.url, auth={"token": token}, transports=["websocket"],
                                    socketio_path="ws/monitoring", wait_timeout=10)  # fmt: skip
        after = [sample(await a.metrics(), "fieldwatch_realtime_clients") for a in apis]
        [landed] = [a.name for a, b, c in zip(apis, before, after, strict=True) if c == b + 1]
        if landed in on:
            extra.append(dashboard)
        else:
            on[landed] = dashboard
        if len(on) == len(apis):
            break
    for dashboard in extra:
        await dashboard.close()
    assert sorted(on) == sorted(a.name for a in apis), "ip_hash sent every address to one"
    return [on[a.name] for a in apis]


async def sweep_row(topology: Topology) -> tuple[int, int, str]:
    """The presence sweep's row of ``periodic_jobs``: (runs, tick_ms, owner)."""
    dsn = topology.servers.database(topology.database).replace("+asyncpg", "")
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT runs, tick_ms, owner FROM periodic_jobs WHERE name = 'presence-sweep'"
        )
    finally:
        await conn.close()
    assert row is not None
    return int(row["runs"]), int(row["tick_ms"]), str(row["owner"])


async def sweep_ticks(part: Part) -> tuple[float, float]:
    """(ran here, claimed by another worker) of the presence sweep in ``part``."""
    text = await part.metrics()
    job = "presence-sweep"
    return (sample(text, "fieldwatch_job_ticks_total", job=job, outcome="ran"),
            sample(text, "fieldwatch_job_ticks_total", job=job, outcome="elsewhere"))  # fmt: skip


async def upload_until_stored(http: httpx.AsyncClient, device: dict[str, str], i: int,
                              start: dt.datetime, refused: list[int]) -> None:  # fmt: skip
    """Reading ``i`` through nginx, sent again after an error as a device does (the
    timestamp makes it the same reading: stored once)."""
    when = iso(start + dt.timedelta(milliseconds=10 * i))
    body = {"data_type": "counter", "values": [{"timestamp": when, "value": i}]}
    headers = {"Authorization": f"Bearer {device['token']}"}
    for _ in range(10):
        try:
            r = await http.post(f"/api/v1/devices/{device['id']}/data", json=body, headers=headers)
            if r.status_code == 200:
                return
            refused.append(r.status_code)
        except httpx.TransportError:
            refused.append(0)
        await asyncio.sleep(0.1)
    raise AssertionError(f"reading {i} was never stored: {refused}")


async def stored_counter(fleet: Fleet, device: str) -> list[float]:
    query = {"data_type": "counter", "limit": 1000, "order": "asc"}
    r = await fleet.http.get(f"/api/v1/devices/{device}/data", params=query, headers=fleet.auth)
    assert r.status_code == 200, r.text
    return [item["value"] for item in r.json()["items"]]


async def offline_alerts(fleet: Fleet, device: str) -> list[dict[str, Any]]:
    r = await fleet.http.get("/api/v1/alerts", params={"device_id": device}, headers=fleet.auth)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])
