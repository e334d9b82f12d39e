"""The device SDK and the simulator against a real server, over WebSocket and HTTP."""

from __future__ import annotations

import asyncio
import contextlib

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


# --- commands and configuration ---------------------------------------------------------


async def _command(served: Served, actor: Actor, device_id: str, command: str, **params):
    r = await served.http.post(
        f"/api/v1/devices/{device_id}/commands",
        json={"command": command, "params": params},
        headers=actor.headers,
    )
    assert r.status_code == 201, r.text
    return r.json()["command_id"]


async def _finished(served: Served, actor: Actor, command_id: str) -> dict:
    async with asyncio.timeout(10):
        while True:
            r = await served.http.get(f"/api/v1/commands/{command_id}", headers=actor.headers)
            if r.json()["status"] in ("completed", "failed"):
                return dict(r.json())
            await asyncio.sleep(0.02)


async def test_agent_runs_command_handlers(served: Served, operator: Actor):
    device, token = await _token(served, operator)
    agent = DeviceAgent(served.base_url, token)
    ran: list[dict] = []

    @agent.command("add")
    async def add(params: dict) -> dict:
        ran.append(params)
        return {"sum": params["a"] + params["b"]}

    agent.add_command_handler("fail", lambda params: 1 / 0)
    async with agent:
        done = await _finished(served, operator, await _command(served, operator, device["id"],
                                                                 "add", a=2, b=3))  # fmt: skip
        assert (done["status"], done["result"]) == ("completed", {"sum": 5})
        assert [t["to_status"] for t in done["transitions"]] == [
            "pending", "sent", "acknowledged", "completed"
        ]  # fmt: skip
        failed = await _finished(served, operator, await _command(served, operator, device["id"],
                                                                   "fail"))  # fmt: skip
        assert failed["status"] == "failed" and "division by zero" in failed["reason"]
        unknown = await _finished(served, operator, await _command(served, operator, device["id"],
                                                                    "selfdestruct"))  # fmt: skip
        assert unknown["status"] == "failed" and "unknown command" in unknown["reason"]
    assert ran == [{"a": 2, "b": 3}]


class _Wire:
    """Stands in for the connection: records the frames the agent sends."""

    def __init__(self) -> None:
        self.frames: list[dict] = []

    async def send(self, raw: str) -> None:
        import json

        self.frames.append(json.loads(raw))


async def test_a_result_lost_with_the_connection_is_sent_again(served: Served, operator: Actor):
    """The command ran and was acknowledged, but the connection broke before its result
    reached the server: the agent keeps the result until the server acknowledges it and
    sends it after reconnecting; the command is not run again."""
    device, token = await _token(served, operator)
    agent = DeviceAgent(served.base_url, token)
    runs: list[int] = []

    async def measure(params):
        runs.append(1)
        assert agent._ws is not None
        await agent._ws.close()  # the network drops while the command runs
        return {"value": 42}

    agent.add_command_handler("measure", measure)
    async with agent:
        command_id = await _command(served, operator, device["id"], "measure")
        done = await _finished(served, operator, command_id)
        assert done["status"] == "completed" and done["result"] == {"value": 42}
        assert runs == [1]
        for _ in range(200):  # the server's ack (sent after its commit) clears it
            if not agent._unconfirmed:
                break
            await asyncio.sleep(0.05)
        assert agent._unconfirmed == {}


async def test_agent_does_not_run_a_resent_command_twice():
    agent = DeviceAgent("http://127.0.0.1:9", "fwd_x")
    runs = []
    agent.add_command_handler("ping", lambda params: runs.append(1) or {"pong": True})
    wire = _Wire()
    message = {"type": "command", "command_id": "c-1", "command": "ping", "params": {}}
    await agent._run_command(wire, message)  # type: ignore[arg-type]
    await agent._run_command(wire, {**message, "attempt": 2})  # type: ignore[arg-type]
    assert runs == [1]
    kinds = [(f["type"], f.get("status")) for f in wire.frames]
    # ack, result; then for the resend: ack again and the same result again
    assert kinds == [("command_ack", None), ("command_result", "completed")] * 2
    assert wire.frames[1] == wire.frames[3]


async def test_agent_applies_pushed_configuration(served: Served, operator: Actor):
    device, token = await _token(served, operator)
    url = f"/api/v1/devices/{device['id']}/config"
    r = await served.http.put(url, json={"data_reporting_interval": 30}, headers=operator.headers)
    assert r.status_code == 200
    agent = DeviceAgent(served.base_url, token)
    applied: list[tuple[dict, int]] = []
    agent.on_config(lambda config, version: applied.append((config, version)))

    async def config_reaches(key: str, value: object) -> None:
        async with asyncio.timeout(10):
            while True:
                if (await served.http.get(url, headers=operator.headers)).json()[key] == value:
                    return
                await asyncio.sleep(0.02)

    async with agent:
        await config_reaches("reported_version", 1)
        r = await served.http.put(
            url, json={"data_reporting_interval": 60}, headers=operator.headers
        )
        await config_reaches("reported_version", 2)
    assert applied == [({"data_reporting_interval": 30}, 1), ({"data_reporting_interval": 60}, 2)]
    assert agent.config_version == 2


async def test_simulated_device_answers_its_commands(served: Served, operator: Actor):
    device, token = await _token(served, operator)
    task = asyncio.create_task(
        simulate(served.base_url, [token], interval=0.2, duration=30, report_every=1)
    )
    try:
        ping = await _finished(served, operator, await _command(served, operator, device["id"],
                                                                 "ping"))  # fmt: skip
        assert ping["status"] == "completed" and ping["result"]["pong"] is True
        bad = await _finished(served, operator, await _command(
            served, operator, device["id"], "set_reporting_interval", interval=-1))  # fmt: skip
        assert bad["status"] == "failed" and "interval must be" in bad["reason"]
        ok = await _finished(served, operator, await _command(
            served, operator, device["id"], "set_reporting_interval", interval=5))  # fmt: skip
        assert ok["result"] == {"interval": 5.0}
        reboot = await _finished(served, operator, await _command(served, operator, device["id"],
                                                                   "reboot"))  # fmt: skip
        assert reboot["status"] == "completed"
        # It comes back after the reboot and answers again.
        again = await _finished(served, operator, await _command(served, operator, device["id"],
                                                                  "ping"))  # fmt: skip
        assert again["status"] == "completed" and again["result"]["uptime_s"] < 5
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
