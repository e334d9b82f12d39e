"""QoS 1 readings across a crash of the server: a real ``fieldwatch serve`` process,
killed with SIGKILL while paho devices with persistent sessions publish, then started
again on the same ports; the devices resend what was not acknowledged.

Every reading the broker acknowledged to a device must be stored (0 acknowledged but
lost) and none may be counted twice (the readings key makes a second row impossible,
so the check is that the per-minute rollups count each reading once). Through the
embedded broker and through a Mosquitto the test starts (with dynamic security, as
``fieldwatch serve`` manages it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import func, select

from conftest import JWT_SECRET, Actor, Factory, require_dynsec_mosquitto
from fieldwatch.core.settings import Settings
from fieldwatch.runtime import Runtime
from fieldwatch.telemetry.models import Reading, Rollup1m, Series
from fieldwatch.transports.mqtt import topics
from fieldwatch.transports.mqtt.identity import claim_client_id
from mqtt_helpers import Mosquitto, free_port

DEVICES = 3
PER_DEVICE = 1200  # readings each device publishes, paced over about PUBLISH_S
PUBLISH_S = 6.0
KILLS_AT = (0.2, 0.55)  # fractions of the readings published when the server is killed
SETTLE_S = 25.0  # after the last publish, time for every reading to be acknowledged
SETTLE_MAX_S = 120.0  # ... extended while acknowledgements keep arriving, up to this


class ServerProcess:
    """``fieldwatch serve`` as a child process on fixed ports (HTTP and, for the embedded
    broker, MQTT), so that devices find it again after a restart."""

    def __init__(self, env: dict[str, str], log: Path, mqtt_port: int | None) -> None:
        self.env = env
        self.port = free_port()
        self.mqtt_port = mqtt_port
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        cmd = [sys.executable, "-m", "fieldwatch", "serve", "--port", str(self.port)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=out)
        self.starts += 1
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the server exited:\n{self.tail()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.base}/health", timeout=1).status_code == 200:
                    return  # the lifespan (MQTT gateway included) has run
            time.sleep(0.1)
        pytest.fail(f"the server did not start:\n{self.tail()}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self, lines: int = 40) -> str:
        """The log's last lines, requests left out (they would crowd out the rest)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        kept = [line for line in text.splitlines() if "fieldwatch.access" not in line]
        return "\n".join(kept[-lines:])


class Device:
    """A paho device with a persistent session publishing seed 003 readings at QoS 1.
    paho keeps every unacknowledged message and sends it again after a reconnect."""

    def __init__(self, port: int, device_id: str, token: str, v5: bool) -> None:
        self.device_id = device_id
        kind = {"protocol": mqtt.MQTTv5} if v5 else {"clean_session": False}
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device_id, **kind)  # type: ignore[arg-type]
        client.username_pw_set(device_id, token)
        client.reconnect_delay_set(0.2, 1)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        self.client = client
        self.sent: list[tuple[int, int]] = []  # (timestamp in ms, message id); < 65536 of them
        self.acked: set[int] = set()  # message ids the broker acknowledged
        self.connects = 0
        self._lock = threading.Lock()
        connect: dict[str, Any] = {}
        if v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
            connect = {"clean_start": False, "properties": props}
        client.connect_async("127.0.0.1", port, keepalive=10, **connect)
        client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not rc.is_failure:
            with self._lock:
                self.connects += 1

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        with self._lock:
            self.acked.add(mid)

    def publish(self, ts_ms: int, value: float) -> None:
        body = orjson.dumps({"value": value, "timestamp": ts_ms / 1000})
        info = self.client.publish(topics.data(self.device_id, "temperature"), body, qos=1)
        self.sent.append((ts_ms, info.mid))  # kept (and sent later) even when disconnected

    def acknowledged(self) -> set[int]:
        with self._lock:
            return {ts for ts, mid in self.sent if mid in self.acked}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def server_env(settings: Settings, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDWATCH_")}
    return {
        **env,
        "FIELDWATCH_ENV": "test",
        "FIELDWATCH_DATABASE_URL": settings.database_url,
        "FIELDWATCH_DATA_DIR": str(tmp_path / "server-data"),
        "FIELDWATCH_JWT_SECRET": JWT_SECRET,
        "FIELDWATCH_LOG_LEVEL": "INFO",
        # A restarted server sees each device's backlog at once (all of it when the
        # previous one was killed before it drained much): above the default allowance
        # of 1,000 messages a minute the rest would be refused (and acknowledged) for the
        # rate limit, which is not what this test is about.
        "FIELDWATCH_DEVICE_RATE_LIMIT": str(100 * PER_DEVICE),
        **extra,
    }


def make_devices(server: ServerProcess, actor: Actor, count: int) -> list[tuple[str, str]]:
    made = []
    with httpx.Client(base_url=server.base, headers=actor.headers, timeout=30) as http:
        for n in range(count):
            r = http.post("/api/v1/devices", json={"name": f"crash-{n}", "type": "sensor"})
            assert r.status_code == 201, r.text
            device_id = r.json()["id"]
            r = http.post(f"/api/v1/devices/{device_id}/tokens")
            assert r.status_code == 201, r.text
            made.append((device_id, r.json()["token"]))
    return made


def killer(server: ServerProcess, devices: list[Device], published: list[int]) -> None:
    """Kill the server with SIGKILL once each fraction of KILLS_AT of the readings is
    published (and, with the embedded broker, every device is connected again), and
    start it again; the devices go on publishing meanwhile."""
    for fraction in KILLS_AT:
        deadline = time.monotonic() + 20
        while published[0] < PER_DEVICE * fraction or (
            server.mqtt_port and min(d.connects for d in devices) < server.starts
        ):
            if time.monotonic() > deadline:
                return  # the assertions on the number of starts tell
            time.sleep(0.02)
        server.kill()
        server.start()


def publish_through_crashes(server: ServerProcess, devices: list[Device]) -> None:
    """Publish PER_DEVICE readings from every device, paced over PUBLISH_S seconds,
    while the server is killed and started again."""
    first_ms = int(datetime.now(UTC).timestamp() * 1000) - 120_000
    published = [0]
    chaos = threading.Thread(target=killer, args=(server, devices, published))
    chaos.start()
    t0 = time.monotonic()
    for i in range(PER_DEVICE):
        for device in devices:
            device.publish(first_ms + i, 20 + (i % 100) / 10)
        published[0] = i + 1
        time.sleep(max(0.0, t0 + PUBLISH_S * (i + 1) / PER_DEVICE - time.monotonic()))
    chaos.join()


async def settle(devices: list[Device]) -> None:
    """Wait until every reading is acknowledged, or until none has been for SETTLE_S (a
    stall), or SETTLE_MAX_S in all: a loaded machine drains the backlog slowly, with 20
    messages in flight per device, so progress is what is waited for, not a clock."""
    start = time.monotonic()
    deadline = start + SETTLE_S
    count = -1
    while time.monotonic() < min(deadline, start + SETTLE_MAX_S):
        now = sum(len(d.acknowledged()) for d in devices)
        if now == PER_DEVICE * len(devices):
            return
        if now > count:  # progress: give it another SETTLE_S from here
            count, deadline = now, max(deadline, time.monotonic() + SETTLE_S)
        await asyncio.sleep(0.2)


async def stored(runtime: Runtime, device_ids: list[str]) -> tuple[dict[str, set[int]], int]:
    """The timestamps (ms) stored per device, and how many readings the per-minute
    rollups count for those devices."""
    ids = [uuid.UUID(d) for d in device_ids]
    async with runtime.uow() as uow:
        rows = await uow.session.execute(
            select(Series.device_id, Reading.ts)
            .join(Reading, Reading.series_id == Series.id)
            .where(Series.device_id.in_(ids))
        )
        counted = await uow.session.scalar(
            select(func.coalesce(func.sum(Rollup1m.count), 0))
            .join(Series, Series.id == Rollup1m.series_id)
            .where(Series.device_id.in_(ids))
        )
    found: dict[str, set[int]] = {d: set() for d in device_ids}
    for device_id, ts in rows:
        ts = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
        found[str(device_id)].add(round(ts.timestamp() * 1000))
    return found, int(counted or 0)


async def run_crash_scenario(
    runtime: Runtime, factory: Factory, server: ServerProcess, v5: bool
) -> None:
    actor = await factory.user("operator", "acme")
    await asyncio.to_thread(server.start)
    try:
        creds = await asyncio.to_thread(make_devices, server, actor, DEVICES)
        mqtt_port = server.mqtt_port or int(server.env["FIELDWATCH_MQTT_URL"].rsplit(":", 1)[1])
        devices = [Device(mqtt_port, d, t, v5) for d, t in creds]
        try:
            await asyncio.to_thread(publish_through_crashes, server, devices)
            await settle(devices)
            acked = {d.device_id: d.acknowledged() for d in devices}
            reconnects = [d.connects for d in devices]
        finally:
            for device in devices:
                await asyncio.to_thread(device.close)
        ids = [d for d, _ in creds]
        found, counted = await stored(runtime, ids)
        # Mosquitto acknowledges on receipt and holds the rest for Fieldwatch's session:
        # give the restarted server time to drain it. The embedded broker acknowledges
        # after the commit, so what it acknowledged must be stored now.
        deadline = time.monotonic() + (SETTLE_S if server.mqtt_port is None else 0)
        while any(acked[d] - found[d] for d in ids) and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            found, counted = await stored(runtime, ids)
    finally:
        await asyncio.to_thread(server.stop)
    lost = sum(len(acked[d] - found[d]) for d in acked)
    unacked = sum(PER_DEVICE - len(a) for a in acked.values())
    total = sum(len(f) for f in found.values())
    missing = {d[:8]: sorted(acked[d] - found[d])[:5] for d in acked if acked[d] - found[d]}
    context = (
        f"lost {lost}, unacknowledged {unacked}, stored {total}, counted {counted}, "
        f"connects {reconnects}; lost (device: first timestamps): {missing}; "
        f"server log:\n{server.tail()}"
    )
    assert server.starts == 1 + len(KILLS_AT)
    print(context.split(";")[0], f"over {server.starts} starts")
    if server.mqtt_port:  # the embedded broker: each device lived every crash
        assert min(reconnects) >= 1 + len(KILLS_AT), context
    assert lost == 0, f"{lost} acknowledged readings were lost; {context}"
    assert unacked == 0, f"{unacked} readings never acknowledged; {context}"
    assert total == DEVICES * PER_DEVICE, context
    assert counted == total, context  # no reading counted twice


async def test_qos1_readings_survive_kill_9_with_the_embedded_broker(
    runtime: Runtime, factory: Factory, settings: Settings, tmp_path: Path
) -> None:
    mqtt_port = free_port()
    env = server_env(settings, tmp_path, FIELDWATCH_MQTT_PORT=str(mqtt_port))
    server = ServerProcess(env, tmp_path / "server.log", mqtt_port)
    await run_crash_scenario(runtime, factory, server, v5=False)


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    require_dynsec_mosquitto()
    with Mosquitto(dynsec=True) as broker:
        yield broker


@pytest.mark.parametrize("mqtt_client", ["paho", "mqtt5"])
async def test_qos1_readings_survive_kill_9_through_mosquitto(
    runtime: Runtime,
    factory: Factory,
    settings: Settings,
    tmp_path: Path,
    mosquitto: Mosquitto,
    mqtt_client: str,
) -> None:
    url = mosquitto.admin_url
    env = server_env(
        settings, tmp_path, FIELDWATCH_MQTT_URL=url, FIELDWATCH_MQTT_CLIENT=mqtt_client
    )
    server = ServerProcess(env, tmp_path / "server.log", None)
    try:
        await run_crash_scenario(runtime, factory, server, v5=True)
    finally:
        (tmp_path / "mosquitto.log").write_text(mosquitto.log())


def test_each_process_keeps_its_client_id_across_restarts(tmp_path: Path) -> None:
    secret = "installation-secret-" + "x" * 40
    first, held = claim_client_id("fw", tmp_path, secret)
    second, other = claim_client_id("fw", tmp_path, secret)
    assert (first, second) == ("fw-0", "fw-1")  # two processes of one installation
    assert held is not None and other is not None
    held.close()  # the first process dies: its successor takes the same id again
    again, held = claim_client_id("fw", tmp_path, secret)
    assert again == "fw-0"
    default, lock = claim_client_id(None, tmp_path / "elsewhere", secret)
    assert re.fullmatch(r"fieldwatch-[0-9a-f]{32}-0", default)
    # derived from the installation's secret: the same after a restart, not guessable
    # without it (another installation's secret gives another id)
    lock.close() if lock else None
    same, lock = claim_client_id(None, tmp_path / "elsewhere", secret)
    other_install, other_lock = claim_client_id(None, tmp_path / "third", "another-" + "y" * 40)
    assert same == default and other_install != default
    assert other_lock is not None
    other_lock.close()
    for handle in (held, other, lock):
        assert handle is not None
        handle.close()
