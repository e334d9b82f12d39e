"""Presence (with a controllable clock), status, health, stats and monitoring data."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from unittest.mock import ANY

from conftest import Actor, Factory, create_device, problem
from telemetry_helpers import device_with_token, iso, recent


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def _beat(client, device_id: str, token: dict, **fields) -> None:
    r = await client.post(f"/api/v1/devices/{device_id}/heartbeat", json=fields, headers=token)
    assert r.status_code == 200, r.text


async def test_offline_after_interval_times_tolerance_and_back(client, operator: Actor, runtime):
    clock = Clock()
    runtime.presence.clock = clock
    events: list = []

    async def on_presence(event):
        events.append(event)

    runtime.bus.subscribe("device.presence_changed", on_presence)
    device, token = await device_with_token(client, operator)
    dev_id = uuid.UUID(device["id"])
    await _beat(client, device["id"], token, battery_level=90)
    assert await runtime.presence.connectivity_of([dev_id]) == {dev_id: "online"}

    clock.advance(179)  # default: 60 s × 3
    assert await runtime.presence.sweep() == []
    await _beat(client, device["id"], token)  # still talking: stays online, no new event
    clock.advance(179)
    assert await runtime.presence.sweep() == []
    clock.advance(2)
    assert await runtime.presence.sweep() == [dev_id]
    status = (await client.get(f"/api/v1/devices/{device['id']}/status",
                               headers=operator.headers)).json()  # fmt: skip
    assert status["connectivity"] == "offline" and status["battery_level"] == 90

    await _beat(client, device["id"], token)  # back online
    history = (await client.get(f"/api/v1/devices/{device['id']}/connectivity",
                                headers=operator.headers)).json()["items"]  # fmt: skip
    assert [(h["connectivity"], h["reason"]) for h in history] == [
        ("online", "heartbeat"),
        ("offline", "silent"),
        ("online", "heartbeat"),
    ]
    assert [e.payload["connectivity"] for e in events] == ["online", "offline", "online"]


async def test_heartbeat_interval_per_type_and_per_device(client, operator: Actor, runtime):
    clock = Clock()
    runtime.presence.clock = clock
    r = await client.put("/api/v1/device-types/esp32/heartbeat",
                         json={"heartbeat_interval_s": 10, "offline_tolerance": 2},
                         headers=operator.headers)  # fmt: skip
    assert r.status_code == 200, r.text
    fast, fast_token = await device_with_token(client, operator, type="esp32")
    slow, slow_token = await device_with_token(client, operator, type="esp32", name="slow")
    await client.put(f"/api/v1/devices/{slow['id']}/heartbeat-interval",
                     json={"heartbeat_interval_s": 100}, headers=operator.headers)  # fmt: skip
    plain, plain_token = await device_with_token(client, operator, type="meter", name="plain")
    for d, t in ((fast, fast_token), (slow, slow_token), (plain, plain_token)):
        await _beat(client, d["id"], t)
    clock.advance(21)
    assert await runtime.presence.sweep() == [uuid.UUID(fast["id"])]
    clock.advance(160)  # 181 s: past the default 180 s, before slow's 300 s
    assert await runtime.presence.sweep() == [uuid.UUID(plain["id"])]
    clock.advance(120)
    assert await runtime.presence.sweep() == [uuid.UUID(slow["id"])]
    got = (
        await client.get("/api/v1/device-types/meter/heartbeat", headers=operator.headers)
    ).json()
    assert got == {"heartbeat_interval_s": 60, "offline_tolerance": 3.0}


async def test_presence_survives_a_restart(client, operator: Actor, runtime, settings):
    from fieldwatch.runtime import build_runtime

    device, token = await device_with_token(client, operator)
    await _beat(client, device["id"], token)
    fresh = build_runtime(settings)  # a new process over the same database
    try:
        clock = Clock()
        clock.advance(181)
        fresh.presence.clock = clock
        await fresh.presence.start()
        dev_id = uuid.UUID(device["id"])
        assert await fresh.presence.connectivity_of([dev_id]) == {dev_id: "online"}
        assert await fresh.presence.sweep() == [uuid.UUID(device["id"])]
    finally:
        await fresh.close()


async def test_health_and_summary(client, operator: Actor, runtime):
    deployed, d_token = await device_with_token(client, operator, type="meter")
    await client.put(f"/api/v1/devices/{deployed['id']}/deploy", json={"location": "Site"},
                     headers=operator.headers)  # fmt: skip
    quiet = await create_device(client, operator, type="meter", name="quiet")
    await client.put(f"/api/v1/devices/{quiet['id']}/deploy", json={"location": "Site"},
                     headers=operator.headers)  # fmt: skip
    shelf, s_token = await device_with_token(client, operator, type="gateway", name="shelf")
    await _beat(client, deployed["id"], d_token, battery_level=12.5, signal_strength=-70)
    await _beat(client, shelf["id"], s_token, battery_level=80)

    health = (await client.get(f"/api/v1/devices/{deployed['id']}/health",
                               headers=operator.headers)).json()  # fmt: skip
    assert health["status"] == "online" and health["errors"] == []
    assert health["warnings"] == ["battery low (12.5%)"]
    quiet_health = (await client.get(f"/api/v1/devices/{quiet['id']}/health",
                                     headers=operator.headers)).json()  # fmt: skip
    assert quiet_health["status"] == "offline"
    assert quiet_health["warnings"] == ["deployed but never seen"]

    summary = (await client.get("/api/v1/devices/health/summary", headers=operator.headers)).json()
    assert (summary["total"], summary["online"], summary["offline"]) == (3, 2, 1)
    assert summary["never_seen"] == 1 and summary["low_battery"] == 1
    assert summary["by_type"] == {
        "gateway": {"online": 1, "offline": 0},
        "meter": {"online": 1, "offline": 1},
    }
    assert summary["devices_with_errors"] == [quiet["id"]]


async def test_stats_and_monitoring_data(client, operator: Actor, runtime):
    a, a_token = await device_with_token(client, operator, type="meter", name="a")
    b, b_token = await device_with_token(client, operator, type="pump", name="b")
    now = recent(0)
    body = lambda vals: {"data_type": "temperature",  # noqa: E731
                         "values": [{"timestamp": iso(now - timedelta(seconds=s)), "value": v}
                                    for s, v in vals]}  # fmt: skip
    await client.post(f"/api/v1/devices/{a['id']}/data", json=body([(90, 10.0), (100, 20.0)]),
                      headers=a_token)  # fmt: skip
    await client.post(f"/api/v1/devices/{b['id']}/data", json=body([(95, 30.0)]),
                      headers=b_token)  # fmt: skip
    stats = (await client.get("/api/v1/monitoring/stats", headers=operator.headers)).json()
    assert stats["devices_by_status"]["in_stock"] == 2
    assert (stats["online"], stats["offline"]) == (2, 0)
    t = stats["metrics"]["temperature"]
    assert (t["count"], t["min"], t["avg"], t["max"]) == (3, 10.0, 20.0, 30.0)
    assert stats["readings_per_minute"] == 3 / 60

    everything = (await client.get("/api/v1/monitoring/data", headers=operator.headers)).json()
    assert len(everything["items"]) == 3
    pumps = (await client.get("/api/v1/monitoring/data?type=pump", headers=operator.headers)).json()
    assert [(i["device_id"], i["value"]) for i in pumps["items"]] == [(b["id"], 30.0)]
    one = (await client.get(f"/api/v1/monitoring/data/{a['id']}", headers=operator.headers)).json()
    assert sorted(i["value"] for i in one["items"]) == [10.0, 20.0]


async def test_monitoring_is_workspace_scoped(client, factory: Factory):
    a = await factory.user("operator", "acme")
    device, token = await device_with_token(client, a)
    await _beat(client, device["id"], token, battery_level=50)
    b = await factory.user("operator", "globex")
    for path in ("status", "health", "connectivity"):
        problem(await client.get(f"/api/v1/devices/{device['id']}/{path}", headers=b.headers), 404)
    problem(await client.put(f"/api/v1/devices/{device['id']}/heartbeat-interval",
                             json={"heartbeat_interval_s": 5}, headers=b.headers), 404)  # fmt: skip
    problem(await client.get(f"/api/v1/monitoring/data/{device['id']}", headers=b.headers), 404)
    assert (await client.get(f"/api/v1/monitoring/data?device_id={device['id']}",
                             headers=b.headers)).json()["items"] == []  # fmt: skip
    stats = (await client.get("/api/v1/monitoring/stats", headers=b.headers)).json()
    assert stats["online"] == 0 and stats["metrics"] == {}
    summary = (await client.get("/api/v1/devices/health/summary", headers=b.headers)).json()
    assert summary["total"] == 0


async def test_latest_values_for_the_fleet(client, factory: Factory):
    op = await factory.user("operator", "acme")
    a, a_token = await device_with_token(client, op, type="meter", name="a")
    b, b_token = await device_with_token(client, op, type="pump", name="b")
    await _beat(client, a["id"], a_token, battery_level=70, signal_strength=-60)
    await client.post(f"/api/v1/devices/{b['id']}/data",
                      json={"data_type": "door", "value": True, "timestamp": iso(recent(5))},
                      headers=b_token)  # fmt: skip
    await client.post(f"/api/v1/devices/{b['id']}/data",
                      json={"data_type": "door", "value": False, "timestamp": iso(recent(9))},
                      headers=b_token)  # fmt: skip
    other = await factory.user("operator", "globex")
    c, c_token = await device_with_token(client, other)
    await _beat(client, c["id"], c_token, battery_level=1)
    latest = (await client.get("/api/v1/monitoring/latest", headers=op.headers)).json()
    assert latest["count"] == 2
    assert latest["devices"][a["id"]]["battery_level"]["value"] == 70
    assert latest["devices"][b["id"]]["door"]["value"] is True  # the newer one wins
    only = (await client.get("/api/v1/monitoring/latest",
                             params={"type": "meter", "data_type": "battery_level"},
                             headers=op.headers)).json()  # fmt: skip
    assert only["devices"] == {
        a["id"]: {"battery_level": only["devices"][a["id"]]["battery_level"]}
    }
    assert list(only["devices"][a["id"]]) == ["battery_level"]


async def test_latest_values_converge_across_processes(client, operator: Actor, settings, runtime):
    import httpx

    from fieldwatch.app import create_app
    from fieldwatch.runtime import build_runtime

    device, token = await device_with_token(client, operator)
    await _beat(client, device["id"], token, battery_level=50)
    first = (await client.get("/api/v1/monitoring/latest", headers=operator.headers)).json()
    assert first["devices"][device["id"]]["battery_level"]["value"] == 50

    other = build_runtime(settings)  # a second process over the same database
    try:
        transport = httpx.ASGITransport(app=create_app(runtime=other))
        async with httpx.AsyncClient(transport=transport, base_url="http://other") as c2:
            await _beat(c2, device["id"], token, battery_level=40)
        from fieldwatch.telemetry.query.latest import REFRESH_S

        assert REFRESH_S <= 5  # what the background refresher uses
        await runtime.telemetry.latest.refresh()  # what the refresher does every REFRESH_S
        after = (await client.get("/api/v1/monitoring/latest", headers=operator.headers)).json()
        assert after["devices"][device["id"]]["battery_level"]["value"] == 40
    finally:
        await other.telemetry.stop()
        await other.close()


async def test_device_list_shows_and_filters_connectivity(client, factory: Factory, runtime):
    clock = Clock()
    runtime.presence.clock = clock
    operator = await factory.user("operator", "acme")
    stranger = await factory.user("operator", "globex")
    talker, token = await device_with_token(client, operator, name="talker")
    quiet, _ = await device_with_token(client, operator, name="quiet")
    theirs, their_token = await device_with_token(client, stranger, name="theirs")
    await _beat(client, theirs["id"], their_token)  # online, in another workspace

    async def listed(who: Actor = operator, **params) -> tuple[dict, int]:
        r = await client.get("/api/v1/devices", params=params, headers=who.headers)
        assert r.status_code == 200, r.text
        items = {d["id"]: (d["connectivity"], d["last_seen"]) for d in r.json()["items"]}
        return items, r.json()["total"]

    def at(value: str | None) -> datetime | None:
        return None if value is None else datetime.fromisoformat(value)

    assert await listed() == ({talker["id"]: ("offline", None), quiet["id"]: ("offline", None)}, 2)
    await _beat(client, talker["id"], token)
    heard = clock.now
    items, _ = await listed()
    assert items[talker["id"]][0] == "online" and at(items[talker["id"]][1]) == heard
    assert items[quiet["id"]] == ("offline", None)
    online, total = await listed(connectivity="online")
    assert (list(online), total) == ([talker["id"]], 1)
    offline, total = await listed(connectivity="offline")
    assert (list(offline), total) == ([quiet["id"]], 1)
    r = await client.get("/api/v1/devices/in_stock", params={"connectivity": "online"},
                         headers=operator.headers)  # fmt: skip
    assert [(d["id"], d["connectivity"]) for d in r.json()["items"]] == [(talker["id"], "online")]
    assert r.json()["total"] == 1
    r = await client.get("/api/v1/devices", params={"connectivity": "offline", "q": "t"},
                         headers=operator.headers)  # fmt: skip
    assert ([d["id"] for d in r.json()["items"]], r.json()["total"]) == ([quiet["id"]], 1)

    clock.advance(181)  # silent past 60 s × 3
    assert set(await runtime.presence.sweep()) == {uuid.UUID(talker["id"]), uuid.UUID(theirs["id"])}
    await _beat(client, theirs["id"], their_token)
    items, _ = await listed()
    assert items[talker["id"]][0] == "offline" and at(items[talker["id"]][1]) == heard
    assert await listed(connectivity="online") == ({}, 0)
    offline, total = await listed(connectivity="offline", limit=1)
    assert len(offline) == 1 and total == 2
    offline, total = await listed(connectivity="offline", sort="name")
    assert (list(offline), total) == ([quiet["id"], talker["id"]], 2)

    # The other workspace sees its own device only, and never these.
    assert await listed(stranger, connectivity="online") == ({theirs["id"]: ("online", ANY)}, 1)
    assert (await listed(stranger, connectivity="offline"))[1] == 0
    problem(await client.get("/api/v1/devices", params={"connectivity": "away"},
                             headers=operator.headers), 422)  # fmt: skip


async def test_last_seen_of_devices_that_stay_online_is_written_in_one_flush(
    client, operator: Actor, runtime
):
    from sqlalchemy import select

    from fieldwatch.devices.models import Device
    from fieldwatch.monitoring.models import DevicePresence
    from fieldwatch.monitoring.presence import FLUSH_S
    from rollout_helpers import Clock

    runtime.presence.clock = clock = Clock()
    devices = [uuid.UUID((await create_device(client, operator, name=f"lsf-{i}"))["id"])
               for i in range(5)]  # fmt: skip
    await runtime.presence.seen(operator.workspace_id, devices)
    clock.advance(FLUSH_S + 5)
    await runtime.presence.seen(operator.workspace_id, devices[:3])  # two went quiet
    await runtime.presence.flush()
    async with runtime.sessionmaker() as session:
        rows = dict((await session.execute(
            select(DevicePresence.device_id, DevicePresence.last_seen)
            .where(DevicePresence.device_id.in_(devices)))).tuples().all())  # fmt: skip
        stored = dict(
            (
                await session.execute(
                    select(Device.id, Device.last_seen).where(Device.id.in_(devices))
                )
            )
            .tuples()
            .all()
        )
    assert {d: rows[d] for d in devices[:3]} == {d: clock.now for d in devices[:3]}
    assert {d: stored[d] for d in devices[:3]} == {d: clock.now for d in devices[:3]}
    first = clock.now - timedelta(seconds=FLUSH_S + 5)
    assert all(rows[d] == first and stored[d] == first for d in devices[3:])
