"""The topology without MQTT (``Layout(mqtt=False)``, as bench/bench_scaleout.py runs it):
no Mosquitto is started and no process speaks MQTT, yet a device gets a token and its
WebSocket session through nginx on the gateway. Its tokens become no broker logins, so
making thousands of them does not wait on Mosquitto's dynamic security.

Needs PostgreSQL, Redis, RabbitMQ and nginx: skipped without one, failed in CI."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import httpx
import pytest
from websockets.asyncio.client import connect

from conftest import PG_URL, missing
from fieldwatch.devtools.__main__ import parse
from fieldwatch.devtools.servers import Servers
from fieldwatch.devtools.topology import Layout, Topology
from rabbit_helpers import RABBIT_URL
from topology_helpers import WAIT_S, new_device, sample
from ws_helpers import recv

REDIS_URL = os.environ.get("FIELDWATCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="module")
async def topology() -> AsyncIterator[Topology]:
    base = Servers.from_env()
    servers = Servers(PG_URL or base.database_url, REDIS_URL, RABBIT_URL)
    problems = await servers.unavailable()
    if problems:
        missing("the topology needs: " + "; ".join(problems))
    async with Topology(servers, Layout(apis=1, gateways=1, workers=0, mqtt=False)) as running:
        yield running


async def test_no_broker_and_a_websocket_device_connects_through_nginx(
    topology: Topology,
) -> None:
    assert topology.broker is None
    assert "FIELDWATCH_MQTT_URL" not in topology.env
    assert topology.env["FIELDWATCH_MQTT_EMBEDDED"] == "false"
    summary = topology.summary()
    assert "no MQTT in this layout" in summary
    assert "mqtt://" not in summary and "mosquitto" not in summary
    async with httpx.AsyncClient(base_url=topology.url, timeout=10) as http:
        login = {"email": topology.admin_email, "password": topology.admin_password}
        r = await http.post("/api/v1/auth/login", json=login)
        assert r.status_code == 200, r.text
        auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
        device = await new_device(http, auth, "ws-only")
        ws_url = topology.url.replace("http://", "ws://") + "/ws/device"
        headers = {"Authorization": f"Bearer {device['token']}"}
        async with connect(ws_url, additional_headers=headers, open_timeout=WAIT_S) as ws:
            welcome = await recv(ws)
            assert welcome["type"] == "welcome", welcome
            [gateway] = topology.role("gateway")
            metrics = await gateway.metrics()
            assert sample(metrics, "fieldwatch_device_sessions", transport="websocket") == 1
            assert not sample(metrics, "fieldwatch_mqtt_gateway_connected")


def test_make_topology_has_a_switch_for_the_layout_without_mqtt() -> None:
    assert parse(["topology"]).mqtt is True
    assert parse(["topology", "--no-mqtt"]).mqtt is False
