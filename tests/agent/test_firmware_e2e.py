"""A firmware update end to end with the device SDK against a real server (WebSocket,
MQTT through the embedded broker, HTTP polling): the signed artifact uploaded and the
update started through the API, the SDK downloading from Fieldwatch's own endpoint with
its agent token and checking the signature, and the update completed only once the
device is back on the new version. And the simulator, counting what the server says."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from artifact_helpers import Signer, register_key, uploaded
from conftest import Actor, Served
from fieldwatch.agent import DeviceAgent
from fieldwatch.runtime import Runtime
from fieldwatch.transports.mqtt.gateway import MqttGateway
from mqtt_peers import eventually, gateway
from telemetry_helpers import device_with_token

__all__ = ["gateway"]  # the fixture used here

IMAGE = os.urandom(400_000)
FINAL = {"completed", "failed", "cancelled", "expired"}


async def device_and_token(served: Served, actor: Actor) -> tuple[dict, str]:
    device, headers = await device_with_token(
        served.http, actor, type="esp32", firmware_version="1.0.0"
    )
    return device, headers["Authorization"].split()[1]


async def start(served: Served, actor: Actor, device_id: str, version: str) -> str:
    r = await served.http.post(
        f"/api/v1/devices/{device_id}/firmware-update", json={"version": version},
        headers=actor.headers,
    )  # fmt: skip
    assert r.status_code == 201, r.text
    return str(r.json()["update_id"])


async def read(served: Served, actor: Actor, update_id: str) -> dict[str, Any]:
    r = await served.http.get(f"/api/v1/firmware/updates/{update_id}", headers=actor.headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def wait_for(served: Served, actor: Actor, update_id: str, states: set[str]) -> dict:
    async def reached() -> dict | None:
        update = await read(served, actor, update_id)
        return update if update["state"] in states else None

    return dict(await eventually(reached, within=30))


def transitions(update: dict[str, Any]) -> list[str]:
    return [t["to_status"] for t in update["transitions"]]


class HeldReboot:
    """A reboot that takes the new version but comes back only when told to."""

    def __init__(self, agent: DeviceAgent) -> None:
        self.agent = agent
        self.rebooting = asyncio.Event()
        self.go = asyncio.Event()

    async def __call__(self, message: dict[str, Any]) -> None:
        self.rebooting.set()
        await self.go.wait()
        self.agent.firmware_version = str(message["version"])
        await self.agent.reconnect()


async def update_end_to_end(
    served: Served,
    operator: Actor,
    admin: Actor,
    tmp_path: Path,
    *,
    poll_updates: bool = False,
    **options: Any,
) -> None:
    signer = Signer()
    await register_key(served.http, admin, signer)
    signature = signer.sign(IMAGE, "1.5.0", ["esp32"])
    await uploaded(served.http, operator, IMAGE, version="1.5.0", signature=signature)
    device, token = await device_and_token(served, operator)
    agent = DeviceAgent(served.base_url, token, firmware_version="1.0.0", heartbeat=False,
                        **options)  # fmt: skip
    reboot = HeldReboot(agent)
    agent.enable_firmware_updates(tmp_path, public_keys=[signer.raw], require_signature=True,
                                  reboot=reboot, poll_updates=poll_updates)  # fmt: skip
    async with agent:
        update_id = await start(served, operator, device["id"], "1.5.0")
        if options.get("transport") == "http" and not poll_updates:  # it polls when told
            assert agent.firmware is not None
            assert await agent.firmware.poll() > 0
        async with asyncio.timeout(30):
            await reboot.rebooting.wait()
        held = await wait_for(served, operator, update_id, {"rebooting"})
        assert held["state"] == "rebooting"  # not completed while the device is away
        if poll_updates:  # a poll now would say 1.0.0 runs: to the server, a rollback
            await asyncio.sleep(2.5)  # (a few of the server's poll intervals)
            assert (await read(served, operator, update_id))["state"] == "rebooting"
        reboot.go.set()
        done = await wait_for(served, operator, update_id, FINAL)
    assert done["state"] == "completed", done
    steps = transitions(done)
    for state in ("acknowledged", "downloading", "downloaded", "verified", "installing"):
        assert state in steps
    assert steps[-2:] == ["rebooting", "completed"]
    r = await served.http.get(f"/api/v1/devices/{device['id']}", headers=operator.headers)
    assert r.json()["firmware_version"] == "1.5.0"


async def test_an_update_over_websocket_completes_once_the_device_is_back(
    served: Served, operator: Actor, admin: Actor, tmp_path: Path
) -> None:
    await update_end_to_end(served, operator, admin, tmp_path)


async def test_an_update_polled_over_http_completes_once_the_device_is_back(
    served: Served, operator: Actor, admin: Actor, tmp_path: Path
) -> None:
    await update_end_to_end(served, operator, admin, tmp_path, transport="http")


async def test_an_http_agent_told_to_poll_takes_its_update_by_itself(
    served: Served, runtime: Runtime, operator: Actor, admin: Actor, tmp_path: Path
) -> None:
    runtime.settings.firmware_poll_interval_s = 1  # its first poll finds nothing yet
    await update_end_to_end(served, operator, admin, tmp_path, transport="http",
                            poll_updates=True)  # fmt: skip


async def test_an_update_over_mqtt_completes_once_the_device_is_back(
    served: Served, gateway: MqttGateway, operator: Actor, admin: Actor, tmp_path: Path
) -> None:
    await update_end_to_end(served, operator, admin, tmp_path, transport="mqtt",
                            mqtt_url=f"mqtt://127.0.0.1:{gateway.broker.port}")  # fmt: skip


async def _simulated_update(
    served: Served, actor: Actor, platform: Any, token: str, version: str, sim: Any
) -> Any:
    """One simulated device (on ``version``'s predecessor) takes an update to ``version``;
    returns the tally once the server has finished the update."""
    from fieldwatch.agent.sim_firmware import UpdateTally
    from fieldwatch.agent.simulator import simulate

    tally, stop = UpdateTally(), asyncio.Event()
    me = await served.http.get("/api/v1/device/me", headers={"Authorization": f"Bearer {token}"})
    device_id = me.json()["device_id"]
    r = await served.http.get(f"/api/v1/devices/{device_id}", headers=actor.headers)
    running = r.json()["firmware_version"]
    run = asyncio.create_task(
        simulate(served.base_url, [token], interval=0.2, report_every=0.2, stop=stop,
                 firmware=sim, versions=[running], tally=tally)
    )  # fmt: skip
    try:
        update_id = await start(served, actor, device_id, version)

        async def settled() -> bool:
            await tally.check(platform)
            return update_id in tally.outcome

        await eventually(settled, within=30)
    finally:
        stop.set()
        await run
    return tally


async def test_the_simulator_counts_what_the_server_confirms(
    served: Served, operator: Actor, admin: Actor, tmp_path: Path, monkeypatch
) -> None:
    import random

    from fieldwatch.agent.platform import Credentials, Platform
    from fieldwatch.agent.sim_firmware import FirmwareSim

    await uploaded(served.http, operator, IMAGE, version="1.5.0")
    await uploaded(served.http, operator, IMAGE[::-1], version="1.6.0")
    _, token = await device_and_token(served, operator)
    r = await served.http.post("/api/v1/api-keys", json={"name": "sim", "role": "operator"},
                               headers=admin.headers)  # fmt: skip
    platform = Platform(served.base_url)
    await platform.sign_in(Credentials(api_key=r.json()["key"]))
    try:
        good = FirmwareSim(install_s=0.1, power_loss_rate=1.0, power_loss_s=0.2,
                           directory=tmp_path)  # fmt: skip
        tally = await _simulated_update(served, operator, platform, token, "1.5.0", good)
        assert (tally.completed, tally.failed, tally.power_losses) == (1, 0, 1)
        # Now one that comes back on the old version: failed, as the server says.
        monkeypatch.setattr(random.Random, "choice", lambda self, options: "rolled_back")
        bad = FirmwareSim(failure_rate=1.0, install_s=0.1, directory=tmp_path)
        tally = await _simulated_update(served, operator, platform, token, "1.6.0", bad)
        assert (tally.completed, tally.failed) == (0, 1)
        (state,) = tally.outcome.values()
        assert state == "failed"
        assert list(tally.reasons.values()) == ["rolled_back"]  # the server's reason
    finally:
        await platform.close()


async def test_a_rollout_reaches_simulated_devices_that_poll_over_http(
    served: Served, runtime: Runtime, operator: Actor, admin: Actor, tmp_path: Path
) -> None:
    """Simulated HTTP devices are not pushed to: they poll ``firmware/next`` by
    themselves, at the interval the server answers, and take what it hands out."""
    from fieldwatch.agent.platform import Credentials, Platform
    from fieldwatch.agent.sim_firmware import FirmwareSim, UpdateTally
    from fieldwatch.agent.simulator import simulate

    runtime.settings.firmware_poll_interval_s = 1  # the answer the devices go by
    artifact = await uploaded(served.http, operator, IMAGE, version="1.5.0")
    device, token = await device_and_token(served, operator)
    r = await served.http.put(f"/api/v1/devices/{device['id']}/deploy", json={"location": "roof"},
                              headers=operator.headers)  # fmt: skip
    assert r.status_code == 200, r.text
    r = await served.http.post("/api/v1/api-keys", json={"name": "sim", "role": "operator"},
                               headers=admin.headers)  # fmt: skip
    platform = Platform(served.base_url)
    await platform.sign_in(Credentials(api_key=r.json()["key"]))
    tally, stop = UpdateTally(), asyncio.Event()
    sim = FirmwareSim(install_s=0.1, directory=tmp_path)
    run = asyncio.create_task(
        simulate(served.base_url, [token], transport="http", interval=0.2, report_every=0.2,
                 stop=stop, firmware=sim, versions=["1.0.0"], tally=tally)
    )  # fmt: skip
    try:
        rollout = {"name": "to the pollers", "artifact_id": artifact["id"], "canary": 0,
                   "target": {"device_ids": [device["id"]]}}  # fmt: skip
        r = await served.http.post("/api/v1/firmware/rollouts", json=rollout,
                                   headers=operator.headers)  # fmt: skip
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        r = await served.http.post(f"/api/v1/firmware/rollouts/{rid}/start",
                                   headers=operator.headers)  # fmt: skip
        assert r.status_code == 200, r.text
        await runtime.rollouts.run()

        async def settled() -> bool:
            await tally.check(platform)
            return bool(tally.outcome)

        await eventually(settled, within=30)
    finally:
        stop.set()
        await run
        await platform.close()
    (update_id,) = tally.taken
    assert tally.outcome == {update_id: "completed"}
    done = await read(served, operator, update_id)
    assert (done["state"], done["rollout_id"]) == ("completed", rid)
    assert transitions(done)[-2:] == ["rebooting", "completed"]
    command = await served.http.get(f"/api/v1/commands/{update_id}", headers=operator.headers)
    assert command.json()["transport"] == "http"  # handed out by a poll, not pushed
    r = await served.http.get(f"/api/v1/devices/{device['id']}", headers=operator.headers)
    assert r.json()["firmware_version"] == "1.5.0"
