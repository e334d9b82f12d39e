"""The device SDK and the simulator against a real server, over WebSocket and HTTP."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from conftest import Actor, Served
from fieldwatch.agent import AgentError, DeviceAgent
from fieldwatch.agent.simulator import SensorModel, simulate
from telemetry_helpers import device_with_token


async def _token(served: Served, actor: Actor, **fields) -> tuple[dict, str]:
    device, headers = await device_with_token(served.http, actor, **fields)
    return device, headers["Authorization"].split()[1]


@pytest.mark.parametrize("transport", ["ws", "http"])
async def test_agent_sends_and_reads_back(served: Served, operator: Actor, transport: str):
    device, token = await _token(served, operator)
    async with DeviceAgent(served.base_url, token, transport=transport) as agent:  # type: ignore[arg-type]
        assert agent.device_id == device["id"]
        ack = await agent.send({"temperature": 21.5, "humidity": 40.0})
        assert (ack["accepted"], ack["duplicates"]) == (2, 0)
        beat = await agent.heartbeat(battery_level=77)
        assert beat["accepted"] == 1
    latest = (
        await served.http.get(
            f"/api/v1/devices/{device['id']}/data/latest", headers=operator.headers
        )
    ).json()["metrics"]
    assert latest["temperature"]["value"] == 21.5 and latest["battery_level"]["value"] == 77


async def test_agent_with_a_bad_token_is_refused(served: Served):
    for transport in ("ws", "http"):
        agent = DeviceAgent(served.base_url, "fwd_not-a-token", transport=transport, timeout_s=3)  # type: ignore[arg-type]
        with pytest.raises(AgentError, match="refused"):
            await agent.start()


async def test_agent_reconnects_after_the_server_drops_it(served: Served, operator: Actor):
    _device, token = await _token(served, operator)
    async with DeviceAgent(served.base_url, token) as agent:
        assert agent._ws is not None
        await agent._ws.close()  # as if the network dropped
        async with asyncio.timeout(15):
            while True:  # the agent reconnects by itself (with backoff)
                try:
                    ack = await agent.send({"temperature": 1.0})
                    break
                except (AgentError, TimeoutError):
                    await asyncio.sleep(0.2)
        assert ack["accepted"] == 1


def test_sensor_model_is_plausible():
    model = SensorModel()
    readings = [model.step() for _ in range(2000)]
    assert all(0 <= r["humidity"] <= 100 for r in readings)
    assert readings[-1]["battery_level"] < readings[0]["battery_level"]
    normal = [r["temperature"] for r in readings]
    assert 10 < sum(normal) / len(normal) < 35
    assert max(normal) - min(normal) > 5  # spikes happen


async def test_simulated_fleet_reaches_storage(served: Served, operator: Actor):
    tokens = [(await _token(served, operator, name=f"sim{i}"))[1] for i in range(3)]
    stats = await simulate(served.base_url, tokens, interval=0.1, duration=1.5, report_every=0.5)
    assert stats.errors == 0 and stats.accepted >= 3 * 3 * 5
    devices = (await served.http.get("/api/v1/monitoring/latest", headers=operator.headers)).json()
    assert devices["count"] == 3


def test_simulate_command_needs_a_workspace(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDWATCH_")}
    env["FIELDWATCH_DATA_DIR"] = str(tmp_path)
    subprocess.run([sys.executable, "-m", "fieldwatch", "db", "upgrade"], env=env, check=True,
                   capture_output=True)  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "fieldwatch", "simulate", "--workspace", "nope", "--duration", "1"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1 and "No workspace 'nope'" in proc.stderr
