"""Presence and latest values shared through a real Redis by several processes.

Uses FIELDWATCH_TEST_REDIS_URL (default redis://127.0.0.1:6379/0). When Redis is
unreachable the tests are skipped, except in CI, where they fail. Every test gets its own
key prefix (FIELDWATCH_REDIS_PREFIX) and its keys are deleted afterwards.

Several runtimes over one database stand for several processes. The presence, alert and
monitoring tests of ``test_monitoring`` and ``test_alerts`` run here again with Redis
configured (the ``settings`` fixture below adds it), to show the behaviour is the same.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import test_monitoring
from redis.asyncio import Redis
from sqlalchemy import select

from conftest import Actor, Factory, load_test_module
from fieldwatch.app import create_app
from fieldwatch.core.events import Event
from fieldwatch.core.settings import Settings
from fieldwatch.devices.models import Device
from fieldwatch.monitoring.models import ConnectivityEvent, DevicePresence
from fieldwatch.monitoring.presence_state import EPOCH
from fieldwatch.runtime import Runtime, build_runtime
from fieldwatch.telemetry.query.latest import entry
from telemetry_helpers import device_with_token, iso, recent

REDIS_URL = os.environ.get("FIELDWATCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
RUN_ID = uuid.uuid4().hex[:10]


# The existing presence/monitoring/alert tests, collected here too: with Redis.
for _module in (test_monitoring, load_test_module("alerts/test_alerts.py")):
    for _name in dir(_module):
        if _name.startswith("test_"):
            globals()[_name] = getattr(_module, _name)


@pytest.fixture(scope="session")
async def redis_url() -> str:
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        await client.ping()
    except Exception as exc:
        masked = re.sub(r"//[^@/]*@", "//***@", REDIS_URL)
        message = f"Redis at {masked} is unreachable: {exc!r}"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    finally:
        await client.aclose()
    return REDIS_URL


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis: Redis) -> AsyncIterator[str]:
    """A namespace of its own for each test; its keys are deleted afterwards."""
    name = f"fwtest:{RUN_ID}:{uuid.uuid4().hex[:8]}"
    yield name
    keys = [k async for k in redis.scan_iter(match=f"{name}:*", count=1000)]
    if keys:
        await redis.delete(*keys)
    assert [k async for k in redis.scan_iter(match=f"{name}:*", count=1000)] == []


@pytest.fixture
def settings(settings: Settings, redis_url: str, prefix: str) -> Settings:
    """Every runtime of this module (the ``runtime`` fixture too) uses Redis."""
    return settings.model_copy(update={"redis_url": redis_url, "redis_prefix": prefix})


@pytest.fixture
async def other(settings: Settings) -> AsyncIterator[Runtime]:
    """A second process over the same database and Redis."""
    rt = build_runtime(settings)
    try:
        yield rt
    finally:
        await rt.telemetry.stop()
        await rt.close()


@pytest.fixture
async def other_client(other: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(runtime=other))
    async with httpx.AsyncClient(transport=transport, base_url="http://other.test") as c:
        yield c


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=123456)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def shared_clock(*runtimes: Runtime) -> Clock:
    clock = Clock()
    for rt in runtimes:
        rt.presence.clock = clock
    return clock


def presence_events(*runtimes: Runtime) -> list[tuple[int, Event]]:
    """Every ``device.presence_changed`` event, with the index of the runtime whose bus
    it was published on."""
    got: list[tuple[int, Event]] = []
    for index, rt in enumerate(runtimes):

        def handler(index: int) -> Callable[[Event], Awaitable[None]]:
            async def on_event(event: Event) -> None:
                got.append((index, event))

            return on_event

        rt.bus.subscribe("device.presence_changed", handler(index))
    return got


async def history(rt: Runtime, device_id: uuid.UUID) -> list[tuple[str, str | None]]:
    async with rt.sessionmaker() as session:
        rows = await session.execute(
            select(ConnectivityEvent.connectivity, ConnectivityEvent.reason)
            .where(ConnectivityEvent.device_id == device_id)
            .order_by(ConnectivityEvent.id)
        )
        return [(c, r) for c, r in rows.tuples()]


async def beat(client: httpx.AsyncClient, device: dict[str, Any], token: dict[str, str]) -> None:
    r = await client.post(f"/api/v1/devices/{device['id']}/heartbeat", json={}, headers=token)
    assert r.status_code == 200, r.text


async def send(
    client: httpx.AsyncClient,
    device: dict[str, Any],
    token: dict[str, str],
    metric: str,
    value: Any,
    ts: datetime,
) -> None:
    body = {"data_type": metric, "value": value, "timestamp": iso(ts)}
    r = await client.post(f"/api/v1/devices/{device['id']}/data", json=body, headers=token)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1, r.text


# --- presence ------------------------------------------------------------------------------


async def test_presence_is_shared_and_one_process_wins_the_offline_transition(
    client: httpx.AsyncClient, operator: Actor, runtime: Runtime, other: Runtime
) -> None:
    clock = shared_clock(runtime, other)
    events = presence_events(runtime, other)
    device, token = await device_with_token(client, operator)
    dev = uuid.UUID(device["id"])
    assert await other.presence.connectivity_of([dev]) == {dev: "offline"}

    await beat(client, device, token)  # through process A
    assert await other.presence.connectivity_of([dev]) == {dev: "online"}
    assert await other.presence.last_seen_of([dev]) == {dev: clock.now}
    assert await other.presence.online_in(operator.workspace_id) == {dev}
    assert [(i, e.payload["connectivity"]) for i, e in events] == [(0, "online")]

    clock.advance(179)  # default: 60 s × 3
    assert await other.presence.sweep() == []
    clock.advance(2)
    # Both processes sweep at the same moment: exactly one of them wins.
    swept = await asyncio.gather(runtime.presence.sweep(), other.presence.sweep())
    assert sorted(swept, key=len) == [[], [dev]]
    assert await runtime.presence.sweep() == [] and await other.presence.sweep() == []

    offline = [(i, e) for i, e in events if e.payload["connectivity"] == "offline"]
    assert len(offline) == 1
    winner = 0 if swept[0] else 1
    assert offline[0][0] == winner
    assert offline[0][1].subject_id == dev and offline[0][1].payload["reason"] == "silent"
    assert offline[0][1].payload["last_seen"] == (clock.now - timedelta(seconds=181)).isoformat()
    assert await history(runtime, dev) == [("online", "heartbeat"), ("offline", "silent")]
    for rt in (runtime, other):
        assert await rt.presence.connectivity_of([dev]) == {dev: "offline"}
        assert await rt.presence.online_in(operator.workspace_id) == set()

    await beat(client, device, token)  # back, through A
    assert await other.presence.connectivity_of([dev]) == {dev: "online"}
    assert [e.payload["connectivity"] for _, e in events] == ["online", "offline", "online"]


async def test_concurrent_first_messages_give_one_online_event(
    client: httpx.AsyncClient,
    operator: Actor,
    runtime: Runtime,
    other: Runtime,
    redis: Redis,
    prefix: str,
) -> None:
    shared_clock(runtime, other)
    events = presence_events(runtime, other)
    devices = [uuid.UUID((await device_with_token(client, operator, name=f"d{i}"))[0]["id"])
               for i in range(6)]  # fmt: skip
    ws = operator.workspace_id
    await asyncio.gather(
        runtime.presence.seen(ws, devices, "message"),
        other.presence.seen(ws, list(reversed(devices)), "message"),
        runtime.presence.seen(ws, devices[2:], "message"),
        other.presence.seen(ws, devices[:3], "message"),
    )
    online = [e.subject_id for _, e in events if e.payload["connectivity"] == "online"]
    assert sorted(online) == sorted(devices)  # one event per device, across both processes
    for dev in devices:
        assert await history(runtime, dev) == [("online", "message")]
    assert await runtime.presence.online_in(ws) == set(devices)
    assert await other.presence.online_in(ws) == set(devices)

    # Already online: no event, and last_seen moves for everyone.
    before = len(events)
    clock = other.presence.clock
    assert isinstance(clock, Clock)
    clock.advance(30)
    await asyncio.gather(runtime.presence.seen(ws, devices), other.presence.seen(ws, devices))
    assert len(events) == before
    assert set((await runtime.presence.last_seen_of(devices)).values()) == {clock.now}
    deadline = (clock.now + timedelta(seconds=180) - EPOCH) // timedelta(microseconds=1)
    for dev in devices:  # the sweep's index moved with last_seen
        assert await redis.zscore(f"{prefix}:presence:deadlines", str(dev)) == deadline


async def test_sweep_spares_a_device_heard_from_meanwhile(
    client: httpx.AsyncClient,
    operator: Actor,
    runtime: Runtime,
    other: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = shared_clock(runtime, other)
    events = presence_events(runtime, other)
    device, token = await device_with_token(client, operator)
    dev = uuid.UUID(device["id"])
    await beat(client, device, token)
    clock.advance(181)
    overdue = runtime.presence.state.overdue
    found: list[uuid.UUID] = []

    async def overdue_then_heard(now: datetime) -> dict[uuid.UUID, list[uuid.UUID]]:
        got = await overdue(now)
        found.extend(got.get(operator.workspace_id, []))
        await other.presence.seen(operator.workspace_id, [dev])  # B hears from it now
        return got

    monkeypatch.setattr(runtime.presence.state, "overdue", overdue_then_heard)
    assert await runtime.presence.sweep() == []  # A found it overdue, but it spoke meanwhile
    assert found == [dev]
    assert await other.presence.connectivity_of([dev]) == {dev: "online"}
    assert [e.payload["connectivity"] for _, e in events] == ["online"]
    assert await history(runtime, dev) == [("online", "heartbeat")]


async def test_gone_and_heartbeat_settings_changed_elsewhere(
    client: httpx.AsyncClient,
    other_client: httpx.AsyncClient,
    operator: Actor,
    runtime: Runtime,
    other: Runtime,
) -> None:
    clock = shared_clock(runtime, other)
    events = presence_events(runtime, other)
    fast, fast_token = await device_with_token(client, operator, type="esp32")
    closed, closed_token = await device_with_token(client, operator, type="esp32", name="c")
    await beat(client, fast, fast_token)
    await beat(client, closed, closed_token)
    fast_id, closed_id = uuid.UUID(fast["id"]), uuid.UUID(closed["id"])

    # Process B changes the type's heartbeat; A's sweep uses the new timeout (10 s × 2).
    r = await other_client.put("/api/v1/device-types/esp32/heartbeat",
                               json={"heartbeat_interval_s": 10, "offline_tolerance": 2},
                               headers=operator.headers)  # fmt: skip
    assert r.status_code == 200, r.text
    clock.advance(19)
    assert await runtime.presence.sweep() == []
    await other.presence.seen(operator.workspace_id, [closed_id])  # B hears from it
    await other.presence.gone(operator.workspace_id, closed_id, "session closed")
    await runtime.presence.gone(operator.workspace_id, closed_id, "session closed")  # no-op
    clock.advance(2)
    assert await runtime.presence.sweep() == [fast_id]
    assert [(e.subject_id, e.payload["connectivity"], e.payload["reason"])
            for _, e in events if e.payload["connectivity"] == "offline"] == [
        (closed_id, "offline", "session closed"),
        (fast_id, "offline", "silent"),
    ]  # fmt: skip
    assert await history(runtime, closed_id) == [("online", "heartbeat"),
                                                 ("offline", "session closed")]  # fmt: skip


async def test_a_burst_beyond_the_redis_pool_waits_instead_of_failing(runtime: Runtime) -> None:
    """300 callers at once share the process's 50 connections (a gateway's connect burst
    once failed on redis-py's default pool with ``Too many connections``)."""
    assert runtime.redis is not None
    key = f"{runtime.settings.redis_prefix}:burst"
    counts = await asyncio.gather(*(runtime.redis.incr(key) for _ in range(300)))
    assert sorted(counts) == list(range(1, 301))
    await runtime.redis.delete(key)


async def test_last_seen_is_written_by_one_process(
    client: httpx.AsyncClient, operator: Actor, runtime: Runtime, other: Runtime
) -> None:
    clock = shared_clock(runtime, other)
    device, token = await device_with_token(client, operator)
    dev = uuid.UUID(device["id"])
    await beat(client, device, token)
    first = clock.now
    clock.advance(20)  # past FLUSH_S: the new last_seen is due to be written
    await other.presence.seen(operator.workspace_id, [dev])
    assert await runtime.presence.state.take_unwritten(timedelta(seconds=15)) == [
        (dev, clock.now)
    ]  # A took it (and marked it written) ...
    assert await other.presence.state.take_unwritten(timedelta(seconds=15)) == []  # ... not B
    clock.advance(20)
    await runtime.presence.seen(operator.workspace_id, [dev])
    await asyncio.gather(runtime.presence.flush(), other.presence.flush())
    async with runtime.sessionmaker() as session:
        presence = await session.get(DevicePresence, dev)
        assert presence is not None and presence.last_seen == clock.now
        assert await session.scalar(select(Device.last_seen).where(Device.id == dev)) == clock.now
    assert clock.now - first == timedelta(seconds=40)


async def test_fresh_redis_fills_from_the_database(
    settings: Settings, factory: Factory, runtime: Runtime
) -> None:
    """A process without Redis wrote presence and latest values; a process with an empty
    Redis (another namespace) starts from what the database holds."""
    local = build_runtime(settings.model_copy(update={"redis_url": None}))
    try:
        op = await factory.user("operator")
        transport = httpx.ASGITransport(app=create_app(runtime=local))
        async with httpx.AsyncClient(transport=transport, base_url="http://local") as c:
            device, token = await device_with_token(c, op)
            await send(c, device, token, "temperature", 21.5, recent(3))
        dev = uuid.UUID(device["id"])
        assert local.presence.connectivity(dev) == "online"  # in-process state: sync works
    finally:
        await local.telemetry.stop()
        await local.close()

    await runtime.telemetry.start()  # loads the database into the empty Redis once
    await runtime.presence.start()
    assert await runtime.presence.connectivity_of([dev]) == {dev: "online"}
    snap = await runtime.telemetry.latest.snapshot(op.workspace_id)
    assert snap[device["id"]]["temperature"]["value"] == 21.5
    assert runtime.telemetry.latest._task is None  # no refresher with Redis
    with pytest.raises(RuntimeError, match="in Redis"):
        runtime.presence.connectivity(dev)


# --- latest values ---------------------------------------------------------------------------


async def test_latest_values_are_shared_at_once_and_never_go_back(
    client: httpx.AsyncClient,
    other_client: httpx.AsyncClient,
    operator: Actor,
    runtime: Runtime,
    other: Runtime,
) -> None:
    device, token = await device_with_token(client, operator)
    ws, dev = operator.workspace_id, device["id"]
    first = recent(10)
    await send(client, device, token, "temperature", 20.0, first)  # through A
    assert not runtime.telemetry.latest.writing  # in Redis before the ingest was answered
    snap = await other.telemetry.latest.snapshot(ws)  # B: no refresh, no wait
    assert snap == {dev: {"temperature": {"timestamp": first.isoformat(), "value": 20.0,
                                          "unit": None, "quality": None}}}  # fmt: skip

    await send(other_client, device, token, "temperature", 25.0, recent(5))  # newer, via B
    await send(client, device, token, "temperature", 15.0, recent(60))  # older, via A
    for rt in (runtime, other):
        got = await rt.telemetry.latest.snapshot(ws, [dev], ["temperature"])
        assert got[dev]["temperature"]["value"] == 25.0

    # Direct records in any order: the newest timestamp wins, equal ones replace.
    t0 = datetime.now(UTC).replace(microsecond=0)
    runtime.telemetry.latest.record(ws, dev, "door", entry("bool", None, t0, 1.0, None, None))
    other.telemetry.latest.record(
        ws, dev, "door", entry("bool", None, t0 - timedelta(microseconds=1), 0.0, None, None)
    )
    await asyncio.gather(runtime.telemetry.latest.flush(), other.telemetry.latest.flush())
    assert (await other.telemetry.latest.snapshot(ws, [dev]))[dev]["door"]["value"] is True
    r = await other_client.get("/api/v1/monitoring/latest", headers=operator.headers)
    assert r.json()["devices"][dev]["door"]["value"] is True
    assert r.json()["devices"][dev]["temperature"]["value"] == 25.0

    # Another workspace sees none of it, even when asking for the device by id.
    assert await other.telemetry.latest.snapshot(uuid.uuid4(), [dev]) == {}


async def test_keys_are_namespaced_and_installations_do_not_mix(
    client: httpx.AsyncClient,
    operator: Actor,
    admin: Actor,
    runtime: Runtime,
    settings: Settings,
    redis: Redis,
    prefix: str,
) -> None:
    shared_clock(runtime)
    device, token = await device_with_token(client, operator)
    await send(client, device, token, "temperature", 20.0, recent(1))
    dev = device["id"]
    keys = sorted([k async for k in redis.scan_iter(match=f"*{dev}*", count=1000)])
    assert keys and all(k.startswith(f"{prefix}:") for k in keys), keys
    assert f"{prefix}:presence:{dev}" in keys
    assert f"{prefix}:latest:{operator.workspace_id}:{dev}" in keys
    assert await redis.hget(f"{prefix}:presence:{dev}", "c") == "online"
    assert await redis.zscore(f"{prefix}:presence:deadlines", dev) is not None

    # A second installation on the same Redis (its own namespace) is not affected by
    # this one, nor this one by it.
    elsewhere = f"{prefix}:other"  # under the test's prefix, so that it is cleaned up too
    second = build_runtime(settings.model_copy(update={"redis_prefix": elsewhere}))
    try:
        await second.presence.forget_now(uuid.UUID(dev))
        await second.presence.seen(operator.workspace_id, [uuid.UUID(dev)])
        await second.presence.gone(operator.workspace_id, uuid.UUID(dev), "closed")
        assert await redis.hget(f"{elsewhere}:presence:{dev}", "c") == "offline"
    finally:
        await second.close()
    assert await runtime.presence.connectivity_of([uuid.UUID(dev)]) == {uuid.UUID(dev): "online"}

    # Deleting the device for good removes its keys.
    r = await client.delete(f"/api/v1/devices/{dev}?purge=true", headers=admin.headers)
    assert r.status_code == 204, r.text
    await runtime.telemetry.latest.flush()
    await runtime.presence.stop()  # waits for the background removal
    left = [k async for k in redis.scan_iter(match=f"{prefix}:*", count=1000)
            if dev in k and not k.startswith(f"{elsewhere}:")]  # fmt: skip
    assert left == []
    assert not await redis.sismember(f"{prefix}:latest:{operator.workspace_id}:devices", dev)
