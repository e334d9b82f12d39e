"""The compose topology as processes (``fieldwatch.devtools.topology``, ``make topology``):
two api processes, a gateway and two workers (the second one for the periodic jobs)
over PostgreSQL, Redis, RabbitMQ and a Mosquitto with dynamic security, behind a real
nginx running the shipped ``deploy/nginx/fieldwatch.conf``.

Clients use nginx only — except the MQTT device, which talks to Mosquitto as it would
in compose (nginx carries no MQTT), and the reads that name one api process: the
readings are read from each api process's own port too, and commands are created on
each, so that both are shown to serve them (nginx alone would not say which answered).

Needs PostgreSQL, Redis, RabbitMQ, nginx and Mosquitto: skipped without one, failed in
CI. The tests share one topology and run in order; the last ones kill processes."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
from collections.abc import AsyncIterator

import httpx
import pytest

from conftest import PG_URL, missing
from fieldwatch.devtools.servers import Servers
from fieldwatch.devtools.topology import Layout, Topology
from fieldwatch.transports.mqtt import topics
from mqtt_peers import eventually
from rabbit_helpers import RABBIT_URL
from topology_helpers import (
    WAIT_S,
    Fleet,
    dashboards_on_each_api,
    latest,
    new_device,
    offline_alerts,
    open_fleet,
    sample,
    send_ws_reading,
    stored_counter,
    sweep_row,
    sweep_ticks,
    upload_until_stored,
)

REDIS_URL = os.environ.get("FIELDWATCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SWEEP_S = 0.5
SETTINGS = {
    "FIELDWATCH_PRESENCE_SWEEP_S": str(SWEEP_S),
    "FIELDWATCH_HEARTBEAT_INTERVAL_S": "1",
    "FIELDWATCH_OFFLINE_TOLERANCE": "2",
}


@pytest.fixture(scope="module")
async def topology() -> AsyncIterator[Topology]:
    base = Servers.from_env()
    servers = Servers(PG_URL or base.database_url, REDIS_URL, RABBIT_URL)
    problems = await servers.unavailable()
    if problems:
        missing("the topology needs: " + "; ".join(problems))
    async with Topology(servers, Layout(apis=2, workers=2, settings=SETTINGS)) as running:
        yield running


@pytest.fixture(scope="module")
async def fleet(topology: Topology) -> AsyncIterator[Fleet]:
    async with open_fleet(topology) as opened:
        yield opened


async def test_the_parts_are_up_behind_nginx(topology: Topology, fleet: Fleet) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        for part in topology.parts.values():
            health = (await http.get(f"{part.url}/health/ready")).json()
            assert (health["status"], health["role"]) == ("ok", part.role), health
        through = (await http.get(f"{topology.url}/health/ready")).json()
        assert through["role"] == "api"
        me = await fleet.http.get("/api/v1/auth/me", headers=fleet.auth)
        assert me.status_code == 200 and me.json()["email"] == topology.admin_email
        [gateway] = topology.role("gateway")
        metrics = await gateway.metrics()
        assert sample(metrics, "fieldwatch_device_sessions", transport="websocket") == 1
        assert sample(metrics, "fieldwatch_mqtt_gateway_connected") == 1
        for api in topology.role("api"):  # device sessions are the gateway's only
            assert sample(await api.metrics(), "fieldwatch_device_sessions",
                          transport="websocket") == 0  # fmt: skip


async def test_readings_of_both_devices_through_both_api_processes(
    topology: Topology, fleet: Fleet
) -> None:
    await send_ws_reading(fleet, "temperature", 21.5)
    await fleet.peer.publish(topics.data(fleet.mqtt_device["id"], "flow"), b'{"value": 4.5}')
    expected = {fleet.ws_device["id"]: {"temperature": 21.5},
                fleet.mqtt_device["id"]: {"flow": 4.5}}  # fmt: skip

    bases = {"nginx": "", **{api.name: api.url for api in topology.role("api")}}
    seen: dict[tuple[str, str], dict] = {}

    async def everywhere() -> bool:
        for name, base in bases.items():
            for device in expected:
                seen[name, device] = await latest(fleet.http, base, fleet.auth, device)
        return all(values.items() <= seen[name, device].items() for name in bases
                   for device, values in expected.items())  # fmt: skip

    with contextlib.suppress(TimeoutError):
        await eventually(everywhere, within=WAIT_S)
    assert await everywhere(), seen


async def test_a_command_from_each_api_process_reaches_each_device(
    topology: Topology, fleet: Fleet
) -> None:
    made: list[tuple[str, str]] = []  # (device, command id)
    for api in topology.role("api"):
        for device in (fleet.ws_device, fleet.mqtt_device):
            r = await fleet.http.post(f"{api.url}/api/v1/devices/{device['id']}/commands",
                                      json={"command": "reboot"}, headers=fleet.auth)  # fmt: skip
            assert r.status_code == 201, (api.name, r.text)
            made.append((device["id"], r.json()["command_id"]))
    for device, command_id in made:
        if device == fleet.ws_device["id"]:
            frame = await fleet.command_frame(command_id)
            assert frame["type"] == "command" and frame["command"] == "reboot"
            await fleet.ws.send(json.dumps({"type": "command_ack", "command_id": command_id}))
        else:
            topic = topics.command(device, command_id)
            assert await fleet.peer.received(topic, WAIT_S), fleet.peer.messages
            await fleet.peer.publish(topics.command_ack(device, command_id), b"{}")

    async def all_acknowledged() -> bool:
        for _, command_id in made:
            r = await fleet.http.get(f"/api/v1/commands/{command_id}", headers=fleet.auth)
            if r.json()["status"] != "acknowledged":
                return False
        return True

    await eventually(all_acknowledged, within=WAIT_S)


async def test_socketio_clients_on_each_api_process_see_the_same_events(
    topology: Topology, fleet: Fleet
) -> None:
    token = fleet.auth["Authorization"].split()[1]
    dashboards = await dashboards_on_each_api(topology, token)
    try:
        await send_ws_reading(fleet, "humidity", 40.0)
        await fleet.peer.publish(topics.data(fleet.mqtt_device["id"], "pressure"), b'{"value": 2}')
        [api, _] = topology.role("api")
        r = await fleet.http.post(f"{api.url}/api/v1/devices/{fleet.ws_device['id']}/commands",
                                  json={"command": "identify"}, headers=fleet.auth)  # fmt: skip
        command_id = r.json()["command_id"]
        wanted = {(fleet.ws_device["id"], "humidity", 40.0),
                  (fleet.mqtt_device["id"], "pressure", 2.0),
                  (fleet.ws_device["id"], "command", command_id)}  # fmt: skip

        async def everyone_saw_it() -> bool:
            return all(wanted <= set(d.seen) for d in dashboards)

        await eventually(everyone_saw_it, within=WAIT_S)
        await asyncio.sleep(0.5)  # anything still coming
        assert set(dashboards[0].seen) == set(dashboards[1].seen)
    finally:
        for dashboard in dashboards:
            await dashboard.close()


async def test_each_tick_of_a_periodic_job_runs_in_one_of_the_two_workers(
    topology: Topology,
) -> None:
    workers = topology.role("worker")
    first = [await sweep_ticks(w) for w in workers]
    runs_1, tick_1, _ = await sweep_row(topology)
    await asyncio.sleep(12 * SWEEP_S)
    runs_2, tick_2, _ = await sweep_row(topology)
    second = [await sweep_ticks(w) for w in workers]
    ticks = round((tick_2 - tick_1) / (SWEEP_S * 1000))
    ran = [b[0] - a[0] for a, b in zip(first, second, strict=True)]
    tried = [b[0] + b[1] - a[0] - a[1] for a, b in zip(first, second, strict=True)]
    assert ticks >= 8, (tick_1, tick_2)
    # At most one run per tick of the grid (two workers running each would double it); a
    # tick that came while a loaded machine held both up is skipped, hence the margin.
    assert 0.7 * ticks <= runs_2 - runs_1 <= ticks, (runs_2 - runs_1, ticks)
    assert abs(sum(ran) - (runs_2 - runs_1)) <= 2, ran  # the metrics are read around the rows
    assert all(t >= 0.7 * ticks for t in tried), (tried, ticks)  # both tried (nearly) each one


async def test_killing_an_api_process_mid_run_loses_no_reading(
    topology: Topology, fleet: Fleet
) -> None:
    """Four HTTP uploaders through nginx; one api process, which has been storing its
    share of them, is killed (SIGKILL) a third of the way through. A request in flight on
    it gets 502 and is sent again; nginx sends the next ones to the other api process.
    Every reading is stored once."""
    device = await new_device(fleet.http, fleet.auth, "http-device")
    victim = topology.role("api")[0]
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)
    refused: list[int] = []
    stored: list[int] = []
    count, lanes = 120, 4
    at_kill: dict[str, float] = {}
    a_third = asyncio.Event()

    async def lane(k: int, http: httpx.AsyncClient) -> None:
        for i in range(k, count, lanes):
            await upload_until_stored(http, device, i, start, refused)
            stored.append(i)
            if len(stored) >= count // 3:
                a_third.set()
            await asyncio.sleep(0.02)

    async def kill_soon() -> None:
        await a_third.wait()
        metrics = await victim.metrics()
        at_kill["victim"] = sample(metrics, "fieldwatch_ingest_readings_total",
                                   transport="http", outcome="accepted")  # fmt: skip
        victim.kill()
        at_kill["stored"] = len(stored)

    async with httpx.AsyncClient(base_url=topology.url, timeout=10) as http:
        await asyncio.gather(kill_soon(), *(lane(k, http) for k in range(lanes)))
        await send_ws_reading(fleet, "rssi", -60.0)  # the gateway's devices went on too
        assert not victim.running
        # Every request now: half of them first tried on the dead process, then the other.
        answers = [(await http.get("/api/v1/auth/me", headers=fleet.auth)).status_code
                   for _ in range(10)]  # fmt: skip
    assert answers == [200] * 10
    assert at_kill["victim"] > 0 and at_kill["stored"] < count * 0.6, at_kill  # mid-run
    assert await stored_counter(fleet, device["id"]) == [float(i) for i in range(count)]
    assert len(refused) <= lanes, refused  # only what was in flight on the killed process
    await victim.restart()  # back on its port, where nginx finds it again
    async with httpx.AsyncClient(base_url=victim.url, timeout=10) as http:
        assert (await http.get("/api/v1/auth/me", headers=fleet.auth)).status_code == 200


async def test_killing_the_workers_loses_nothing_a_restarted_one_picks_up(
    topology: Topology, fleet: Fleet
) -> None:
    first, second = topology.role("worker")
    first.kill()
    runs_a, _, _ = await sweep_row(topology)
    await asyncio.sleep(4 * SWEEP_S)
    runs_b, _, owner = await sweep_row(topology)
    assert runs_b > runs_a and f":{second.pid}:" in owner  # the other one goes on
    second.kill()  # and now no worker at all

    # A deployed device is heard from once, then falls silent while no worker runs.
    device = await new_device(fleet.http, fleet.auth, "silent")
    r = await fleet.http.put(f"/api/v1/devices/{device['id']}/deploy",
                             json={"location": "Site"}, headers=fleet.auth)  # fmt: skip
    assert r.status_code == 200, r.text
    device_auth = {"Authorization": f"Bearer {device['token']}"}
    beat = await fleet.http.post(f"/api/v1/devices/{device['id']}/heartbeat", json={},
                                 headers=device_auth)  # fmt: skip
    assert beat.status_code == 200, beat.text
    runs_c, _, _ = await sweep_row(topology)
    await asyncio.sleep(3.0)  # past its offline tolerance (2 s)
    assert (await sweep_row(topology))[0] == runs_c  # nobody swept
    assert await offline_alerts(fleet, device["id"]) == []

    await first.restart()  # picks up: the sweep finds the silent device, one alert opens
    await eventually(lambda: offline_alerts(fleet, device["id"]), within=WAIT_S)
    await asyncio.sleep(2 * SWEEP_S)  # a later sweep opens no second one
    [alert] = await offline_alerts(fleet, device["id"])
    assert (alert["rule_name"], alert["count"]) == ("Device offline", 1)
    runs_d, _, owner = await sweep_row(topology)
    assert runs_d > runs_c and f":{first.pid}:" in owner
