"""``fieldwatch simulate`` as a user runs it: a real ``fieldwatch serve`` process on
non-default ports, the simulator as another process run from an empty directory, and
what it prints checked against what the API then shows."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest

from conftest import JWT_SECRET, PASSWORD, Actor, Factory, missing, wait_until_up
from fieldwatch.agent.cli import default_mqtt_url, default_server
from fieldwatch.core.settings import Settings
from mqtt_helpers import Mosquitto, free_port, mosquitto_binary

FIELDWATCH = [sys.executable, "-m", "fieldwatch"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDWATCH_")}
    return {**env, **extra}


@dataclass
class Server:
    base: str
    env: dict[str, str]  # what `serve` was started with: the simulator shares its ports


@contextlib.contextmanager
def serving(settings: Settings, tmp_path: Path) -> Iterator[Server]:
    """``fieldwatch serve`` on free (so non-default) HTTP and MQTT ports, told through
    FIELDWATCH_PORT and FIELDWATCH_MQTT_PORT, over the test's database."""
    ports = {"FIELDWATCH_PORT": str(free_port()), "FIELDWATCH_MQTT_PORT": str(free_port())}
    env = clean_env(
        FIELDWATCH_ENV="test",
        FIELDWATCH_DATABASE_URL=str(settings.database_url),
        FIELDWATCH_DATA_DIR=str(tmp_path / "server-data"),
        FIELDWATCH_JWT_SECRET=JWT_SECRET,
        **ports,
    )
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*FIELDWATCH, "serve"], env=env, stdout=out, stderr=out)
    try:
        base = f"http://127.0.0.1:{ports['FIELDWATCH_PORT']}"
        wait_until_up(base)
        yield Server(base, ports)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """An empty working directory, far from any checkout."""
    path = tmp_path / "elsewhere"
    path.mkdir()
    return path


async def simulate(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The simulator as a process (in a thread: the test's event loop keeps running)."""
    return await asyncio.to_thread(
        subprocess.run, [*FIELDWATCH, "simulate", *args], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip


def untouched(path: Path) -> bool:
    return not any(path.iterdir())


@contextlib.asynccontextmanager
async def api(server: Server, actor: Actor) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base, headers=actor.headers, timeout=30) as http:
        yield http


#: What the simulated devices measure. (Over MQTT a device's online/offline status
#: messages are stored too, as the metric ``status``: not readings it sent.)
SENSORS = {"temperature", "humidity", "battery_level"}


async def stored_readings(http: httpx.AsyncClient) -> dict[str, int]:
    """Serial → sensor readings the API shows, for the simulator's devices."""
    devices = (await http.get("/api/v1/devices", params={"q": "SIM-", "limit": 500})).json()
    counts = {}
    for device in devices["items"]:
        r = await http.get(f"/api/v1/devices/{device['id']}/data", params={"limit": 10000})
        assert r.status_code == 200 and r.json()["next_cursor"] is None, r.text
        items = r.json()["items"]
        # (and the version each device says it runs, after every connect)
        assert {i["data_type"] for i in items} <= SENSORS | {"status", "firmware_version"}
        counts[device["serial_number"]] = sum(i["data_type"] in SENSORS for i in items)
    return counts


def figure(pattern: str, text: str) -> int:
    found = re.search(pattern, text)
    assert found, text
    return int(found.group(1))


async def api_key(http: httpx.AsyncClient, role: str = "operator") -> str:
    r = await http.post("/api/v1/api-keys", json={"name": "simulator", "role": role})
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


async def test_stored_is_what_the_api_shows(
    factory: Factory, settings: Settings, tmp_path: Path, elsewhere: Path
):
    admin = await factory.user("admin")
    with serving(settings, tmp_path) as server:
        async with api(server, admin) as http:
            env = clean_env(**server.env, FIELDWATCH_API_KEY=await api_key(http))
            totals = 0
            for transport in ("ws", "http"):
                proc = await simulate(elsewhere, env, "--devices", "3", "--interval", "0.2",
                                      "--duration", "3", "--transport", transport)  # fmt: skip
                assert proc.returncode == 0, proc.stdout + proc.stderr
                assert f"3 simulated devices in workspace 'acme' on {server.base}" in proc.stdout
                totals += figure(r"Done: (\d+) readings stored", proc.stdout)
                counts = await stored_readings(http)
                assert sorted(counts) == ["SIM-00000", "SIM-00001", "SIM-00002"]  # reused
                assert totals == sum(counts.values()) > 0, (transport, proc.stdout)
            for device in (await http.get("/api/v1/devices", params={"q": "SIM-"})).json()["items"]:
                tokens = (await http.get(f"/api/v1/devices/{device['id']}/tokens")).json()["items"]
                assert sorted(t["revoked_at"] is None for t in tokens) == [False, True]

            r = await http.post("/api/v1/provisioning-keys", json={"name": "simulated fleet"})
            provisioning = clean_env(**server.env, FIELDWATCH_PROVISIONING_KEY=r.json()["key"])
            proc = await simulate(elsewhere, provisioning, "--devices", "4", "--interval", "0.2",
                                  "--duration", "2")  # fmt: skip
            assert proc.returncode == 0, proc.stdout + proc.stderr
            totals += figure(r"Done: (\d+) readings stored", proc.stdout)
            counts = await stored_readings(http)
            assert len(counts) == 4 and totals == sum(counts.values())

            proc = await simulate(elsewhere, env, "--workspace", "nope", "--duration", "1")
            assert proc.returncode == 1 and "No workspace 'nope'" in proc.stderr
            assert "Traceback" not in proc.stderr
    assert untouched(elsewhere)  # no ./data, no database


async def test_mqtt_readings_are_confirmed_through_the_api(
    factory: Factory, settings: Settings, tmp_path: Path, elsewhere: Path
):
    operator = await factory.user("operator")
    with serving(settings, tmp_path) as server:
        env = clean_env(**server.env, FIELDWATCH_PASSWORD=PASSWORD)
        login = ("--email", operator.email, "--transport", "mqtt", "--devices", "3")
        proc = await simulate(elsewhere, env, *login, "--interval", "0.2", "--duration", "3")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        broker = f"mqtt://127.0.0.1:{server.env['FIELDWATCH_MQTT_PORT']}"
        published = figure(rf"Done: (\d+) readings published to {broker}\.", proc.stdout)
        confirmed = figure(r"(\d+) of the \d+ readings sent are stored", proc.stdout)
        async with api(server, operator) as http:
            assert confirmed == sum((await stored_readings(http)).values()) == published > 0
        nowhere = f"mqtt://127.0.0.1:{free_port()}"
        proc = await simulate(elsewhere, env, *login, "--duration", "5", "--mqtt-url", nowhere)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert f"cannot reach {nowhere}: connection refused" in proc.stderr
        assert "Traceback" not in proc.stdout + proc.stderr
    assert untouched(elsewhere)


async def test_readings_another_broker_acknowledged_are_not_called_stored(
    factory: Factory, settings: Settings, tmp_path: Path, elsewhere: Path
):
    if mosquitto_binary() is None:
        missing("mosquitto is not installed")
    operator = await factory.user("operator")
    with serving(settings, tmp_path) as server, Mosquitto() as other:  # acknowledges anything
        env = clean_env(**server.env, FIELDWATCH_PASSWORD=PASSWORD)
        args = ("--email", operator.email, "--transport", "mqtt", "--mqtt-url", other.url)
        seen: list[tuple[str, dict]] = []
        watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        watcher.on_message = lambda _c, _u, m: seen.append((m.topic, json.loads(m.payload)))
        watcher.connect("127.0.0.1", other.port)
        watcher.subscribe("iot/devices/data/#", qos=1)
        watcher.loop_start()
        try:
            proc = await simulate(elsewhere, env, *args, "--interval", "0.2", "--duration", "2")
        finally:
            watcher.loop_stop()
            watcher.disconnect()
        # a device's temperature, humidity and battery go in one message, not three
        assert seen and all(topic.endswith("/metrics") for topic, _ in seen)
        assert all(sorted(body["metrics"]) == ["battery_level", "humidity", "temperature"]
                   for _, body in seen)  # fmt: skip
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert figure(r"Done: (\d+) readings published", proc.stdout) > 0
        assert figure(r"(\d+) of the \d+ readings sent are stored", proc.stdout) == 0
        assert f"None reached Fieldwatch: is {other.url} its broker?" in proc.stdout
        async with api(server, operator) as http:
            assert sum((await stored_readings(http)).values()) == 0


async def test_an_unreachable_server_is_named(elsewhere: Path):
    port = free_port()  # nothing listens there
    env = clean_env(FIELDWATCH_PORT=str(port), FIELDWATCH_MQTT_PORT=str(free_port()))
    proc = await simulate(elsewhere, env, "--duration", "1")
    assert proc.returncode == 2 and "--api-key" in proc.stderr and "/api/v1/api-keys" in proc.stderr
    for transport in ("ws", "mqtt"):
        proc = await simulate(elsewhere, env, "--api-key", "fwk_x", "--transport", transport,
                              "--duration", "1")  # fmt: skip
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert f"cannot reach http://127.0.0.1:{port}: connection refused" in proc.stderr
        assert "Traceback" not in proc.stdout + proc.stderr
    assert untouched(elsewhere)


def test_defaults_follow_the_settings_of_serve():
    bound = Settings(host="0.0.0.0", port=8123, mqtt_port=18830, mqtt_url=None)  # noqa: S104
    assert default_server(bound) == "http://127.0.0.1:8123"
    assert default_mqtt_url(bound, "http://plant-7.example:8123") == "mqtt://plant-7.example:18830"
    assert default_server(Settings(host="::", port=80)) == "http://[::1]:80"
    external = Settings(mqtt_url="mqtt://fieldwatch-admin:s3cret@broker.example:8883")
    assert default_mqtt_url(external, "http://x:1") == "mqtt://broker.example:8883"  # no login
