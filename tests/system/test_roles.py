"""``fieldwatch serve --role``: a scaled-out installation as real processes — an api, a
gateway and two workers over PostgreSQL, RabbitMQ, Redis and a Mosquitto with dynamic
security — and the refusal of a part without what its processes share.

What crosses processes here: a command created on the api reaches the WebSocket device
held by the gateway (RabbitMQ), a token issued on the api lets an MQTT device log in to
Mosquitto and its readings are stored by the gateway, an HTTP upload to the api marks the
device online (Redis) and the workers' presence sweep later marks it offline, with one
offline alert although both workers receive the event; each tick of the sweep runs in
one worker (their logs name the ticks each ran). A stopping gateway closes its devices'
sessions with 1012, so they reconnect elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import select
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from conftest import JWT_SECRET, PG_URL, Actor, Backend, missing
from fieldwatch.runtime import Runtime
from fieldwatch.system.models import PeriodicJob
from fieldwatch.transports.mqtt import topics
from mqtt_helpers import Mosquitto, free_port
from mqtt_peers import Peer, eventually, mosquitto_dynsec  # noqa: F401 (fixture)
from rabbit_helpers import exchange, rabbit_url  # noqa: F401 (fixtures)
from ws_helpers import closed_with, recv

REDIS_URL = os.environ.get("FIELDWATCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SWEEP_S = 0.2
TICK = re.compile(r"periodic job presence-sweep: tick (\d+)")
FIELDWATCH = [sys.executable, "-m", "fieldwatch", "serve"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDWATCH_")}
    return {**env, **extra}


@dataclass
class Part:
    """One ``fieldwatch serve --role`` process, its output in a file."""

    role: str
    base: str
    log: Path
    process: subprocess.Popen[bytes]

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_part(name: str, role: str, env: dict[str, str], tmp_path: Path) -> Part:
    port = free_port()
    log = tmp_path / f"{name}.log"
    full = {**env, "FIELDWATCH_DATA_DIR": str(tmp_path / name)}
    if role == "worker":
        full["FIELDWATCH_LOG_LEVEL"] = "DEBUG"  # the ticks each worker ran
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*FIELDWATCH, "--role", role, "--port", str(port)],
            env=full, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return Part(role, f"http://127.0.0.1:{port}", log, process)


def wait_ready(parts: list[Part]) -> None:
    deadline = time.monotonic() + 40
    waiting = list(parts)
    while waiting and time.monotonic() < deadline:
        for part in list(waiting):
            if part.process.poll() is not None:
                pytest.fail(f"the {part.role} exited:\n{part.tail()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{part.base}/health/ready", timeout=2).status_code == 200:
                    waiting.remove(part)
        time.sleep(0.2)
    if waiting:
        pytest.fail(f"not ready: {waiting[0].role}\n{waiting[0].tail()}")


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        missing(f"Redis at {REDIS_URL} is unreachable: {exc!r}")
    prefix = f"fwtest:roles:{uuid.uuid4().hex[:8]}"
    yield prefix
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
def parts(
    backend: Backend,
    runtime: Runtime,
    exchange: str,  # noqa: F811
    rabbit_url: str,  # noqa: F811
    redis_prefix: str,
    mosquitto_dynsec: Mosquitto,  # noqa: F811
    tmp_path: Path,
) -> Iterator[dict[str, Part]]:
    """An api, a gateway and two workers; stopped before the database is emptied."""
    if backend.name != "postgres":
        pytest.skip("the parts of an installation share PostgreSQL (refusals: below)")
    env = clean_env(
        FIELDWATCH_DATABASE_URL=backend.url,
        FIELDWATCH_JWT_SECRET=JWT_SECRET,
        FIELDWATCH_RABBITMQ_URL=rabbit_url,
        FIELDWATCH_RABBITMQ_EXCHANGE=exchange,
        FIELDWATCH_REDIS_URL=REDIS_URL,
        FIELDWATCH_REDIS_PREFIX=redis_prefix,
        FIELDWATCH_MQTT_URL=mosquitto_dynsec.admin_url,
        FIELDWATCH_PRESENCE_SWEEP_S=str(SWEEP_S),
        FIELDWATCH_HEARTBEAT_INTERVAL_S="1",
        FIELDWATCH_OFFLINE_TOLERANCE="2",
    )
    roles = {"api": "api", "gateway": "gateway", "worker-1": "worker", "worker-2": "worker"}
    started = {name: start_part(name, role, env, tmp_path) for name, role in roles.items()}
    try:
        wait_ready(list(started.values()))
        yield started
    finally:
        for part in started.values():
            part.stop()


async def worker_ticks(http: httpx.AsyncClient, part: Part) -> dict[str, int]:
    text = (await http.get(f"{part.base}/metrics")).text
    pattern = r'fieldwatch_job_ticks_total\{job="presence-sweep",outcome="(\w+)"\} (\S+)'
    found = re.findall(pattern, text)
    return {outcome: int(float(n)) for outcome, n in found}


async def test_an_api_a_gateway_and_two_workers(
    parts: dict[str, Part],
    operator: Actor,
    runtime: Runtime,
    mosquitto_dynsec: Mosquitto,  # noqa: F811
) -> None:
    api, gateway = parts["api"], parts["gateway"]
    workers = [parts["worker-1"], parts["worker-2"]]
    auth = operator.headers
    async with httpx.AsyncClient(base_url=api.base, timeout=10) as http:
        # What each part serves: every one its health; the API only the api.
        for part in parts.values():
            health = (await http.get(f"{part.base}/health/ready")).json()
            assert (health["status"], health["role"]) == ("ok", part.role), health
            listing = await http.get(f"{part.base}/api/v1/devices", headers=auth)
            assert listing.status_code == (200 if part is api else 404), part.role

        # A WebSocket device on the gateway; a command created on the api reaches it.
        device = (await http.post("/api/v1/devices", json={"name": "ws", "type": "esp32"},
                                  headers=auth)).json()  # fmt: skip
        token = (await http.post(f"/api/v1/devices/{device['id']}/tokens", headers=auth)).json()
        with pytest.raises(InvalidStatus) as refused:  # device sessions are the gateway's
            await connect(f"ws://{api.base[7:]}/ws/device/{token['token']}")
        assert refused.value.response.status_code == 403
        ws = await connect(f"ws://{gateway.base[7:]}/ws/device/{token['token']}")
        assert (await recv(ws))["type"] == "welcome"
        created = await http.post(f"/api/v1/devices/{device['id']}/commands",
                                  json={"command": "reboot"}, headers=auth)  # fmt: skip
        assert created.status_code == 201, created.text
        frame = await recv(ws)
        assert (frame["type"], frame["command_id"]) == ("command", created.json()["command_id"])
        await ws.send(json.dumps({"type": "command_ack", "command_id": frame["command_id"]}))

        async def acknowledged() -> bool:
            r = await http.get(f"/api/v1/commands/{frame['command_id']}", headers=auth)
            return bool(r.json()["status"] == "acknowledged")

        await eventually(acknowledged)

        # A token issued on the api is the device's MQTT login; the gateway stores.
        sensor = (await http.post("/api/v1/devices", json={"name": "mqtt", "type": "meter"},
                                  headers=auth)).json()  # fmt: skip
        secret = (await http.post(f"/api/v1/devices/{sensor['id']}/tokens", headers=auth)).json()
        peer = Peer(mosquitto_dynsec.port, sensor["id"], secret["token"], client_id=sensor["id"])
        assert (await peer.connect()) == "Success"
        await peer.publish(topics.data(sensor["id"], "flow"), b'{"value": 4.5}')

        async def stored() -> bool:
            r = await http.get(f"/api/v1/devices/{sensor['id']}/data/latest", headers=auth)
            return r.status_code == 200 and "flow" in r.json()["metrics"]

        await eventually(stored)
        await peer.close()

        # An upload to the api marks a deployed device online; the workers' sweep marks
        # it offline after 2 s of silence, and one offline alert opens.
        silent = (await http.post("/api/v1/devices", json={"name": "silent", "type": "meter"},
                                  headers=auth)).json()  # fmt: skip
        await http.put(f"/api/v1/devices/{silent['id']}/deploy", json={"location": "Site"},
                       headers=auth)  # fmt: skip
        key = (await http.post(f"/api/v1/devices/{silent['id']}/tokens", headers=auth)).json()
        beat = await http.post(f"/api/v1/devices/{silent['id']}/heartbeat", json={},
                               headers={"Authorization": f"Bearer {key['token']}"})  # fmt: skip
        assert beat.status_code in (200, 202), beat.text

        async def alerts() -> list[dict]:
            r = await http.get("/api/v1/alerts", params={"device_id": silent["id"]},
                               headers=auth)  # fmt: skip
            return list(r.json()["items"])

        found = await eventually(alerts, within=15)
        await asyncio.sleep(1.0)
        found = await alerts()
        assert len(found) == 1, json.dumps(found, indent=1) + "\n".join(w.tail() for w in workers)
        [alert] = found
        await asyncio.sleep(1.0)  # both workers had the event
        [alert] = await alerts()
        assert (alert["rule_name"], alert["count"]) == ("Device offline", 1)

        # Each tick of the sweep ran in one worker, both trying every tick.
        counts = [await worker_ticks(http, w) for w in workers]

    for worker in workers:
        worker.stop()
    ran = [set(map(int, TICK.findall(w.log.read_text(errors="replace")))) for w in workers]
    assert not ran[0] & ran[1], "a tick ran twice"
    union = ran[0] | ran[1]
    assert union, [w.tail() for w in workers]
    assert sum(c.get("elsewhere", 0) for c in counts) >= 1  # they competed
    async with runtime.sessionmaker() as session:
        row = await session.scalar(select(PeriodicJob).where(PeriodicJob.name == "presence-sweep"))
    assert row is not None and len(union) <= row.runs <= len(union) + 2
    span = (max(union) - min(union)) / (SWEEP_S * 1000) + 1
    assert len(union) >= 0.5 * span, (len(union), span)

    # A stopping gateway tells its devices to reconnect elsewhere (1012).
    closing = asyncio.create_task(closed_with(ws))
    await asyncio.to_thread(gateway.stop)
    assert (await closing)[0] == 1012


def serve_refused(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [*FIELDWATCH, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stderr


def test_a_part_refuses_to_start_without_what_its_processes_share(tmp_path: Path) -> None:
    env = clean_env(FIELDWATCH_DATA_DIR=str(tmp_path / "data"))
    alone = serve_refused(env, "--role", "gateway")
    assert "Role gateway (--role, FIELDWATCH_ROLE)" in alone
    for name in ("DATABASE_URL", "RABBITMQ_URL", "REDIS_URL", "MQTT_URL"):
        assert f"  FIELDWATCH_{name}: " in alone, alone
    assert not (tmp_path / "data").exists()  # refused before anything was made

    pg = PG_URL or "postgresql://fieldwatch@127.0.0.1:5432/fieldwatch"
    almost = {**env, "FIELDWATCH_ROLE": "api", "FIELDWATCH_DATABASE_URL": pg,
              "FIELDWATCH_REDIS_URL": REDIS_URL}  # fmt: skip
    only_bus = serve_refused(almost, "--port", str(free_port()))
    assert "Role api" in only_bus and "FIELDWATCH_RABBITMQ_URL" in only_bus
    assert "REDIS_URL:" not in only_bus and "DATABASE_URL:" not in only_bus
    assert "MQTT_URL:" not in only_bus  # an api runs no MQTT

    gateway = serve_refused({**almost, "FIELDWATCH_RABBITMQ_URL": "amqp://127.0.0.1/"},
                            "--role", "gateway")  # fmt: skip
    assert "FIELDWATCH_MQTT_URL: an external MQTT broker" in gateway
    assert "RABBITMQ_URL:" not in gateway
