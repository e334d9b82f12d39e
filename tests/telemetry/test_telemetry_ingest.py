from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from sqlalchemy import select

from conftest import Actor, Factory, create_device, problem
from fieldwatch.telemetry.models import Rollup1h, Rollup1m
from telemetry_helpers import device_with_token, iso, recent


def seed002(metric: str, points: list[tuple], unit: str | None = "celsius") -> dict:
    return {
        "data_type": metric,
        "timestamp": iso(recent()),
        "values": [
            {"timestamp": iso(ts), "value": v, "unit": unit, "quality": "good"} for ts, v in points
        ],
        "metadata": {"source": "device"},
    }


async def _data(client, actor: Actor, device_id: str, **params) -> list[dict]:
    r = await client.get(f"/api/v1/devices/{device_id}/data", params=params, headers=actor.headers)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def test_upload_and_read_back_with_unit_and_quality(client, operator: Actor):
    device, token = await device_with_token(client, operator)
    t0 = recent(60)
    points = [(t0, 21.5), (recent(30), 22.0), (recent(0), 22.5)]
    r = await client.post(
        f"/api/v1/devices/{device['id']}/data", json=seed002("temperature", points), headers=token
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 3, "duplicates": 0, "rejected": []}
    items = await _data(client, operator, device["id"])
    assert [i["value"] for i in items] == [22.5, 22.0, 21.5]  # newest first
    assert {(i["data_type"], i["unit"], i["quality"]) for i in items} == {
        ("temperature", "celsius", "good")
    }


async def test_a_retry_never_creates_duplicates(client, operator: Actor):
    device, token = await device_with_token(client, operator)
    body = seed002("temperature", [(recent(10), 1.0), (recent(5), 2.0)])
    first = await client.post(f"/api/v1/devices/{device['id']}/data", json=body, headers=token)
    again = await client.post(f"/api/v1/devices/{device['id']}/data", json=body, headers=token)
    assert first.json()["accepted"] == 2
    assert again.json() == {"accepted": 0, "duplicates": 2, "rejected": []}
    # A batch mixing new and already-stored readings: only the new one counts.
    body["values"].append({"timestamp": iso(recent(1)), "value": 3.0})
    mixed = await client.post(f"/api/v1/devices/{device['id']}/data", json=body, headers=token)
    assert mixed.json() == {"accepted": 1, "duplicates": 2, "rejected": []}
    assert len(await _data(client, operator, device["id"])) == 3


async def test_partial_batches_store_the_good_readings(client, operator: Actor):
    device, token = await device_with_token(client, operator)
    now = recent()
    values = [
        {"timestamp": iso(now), "value": 1.5},                       # 0 good
        {"timestamp": iso(recent(1)), "value": float("nan")},        # 1 NaN
        {"timestamp": iso(recent(2)), "value": float("inf")},        # 2 infinity
        {"timestamp": iso(recent(3)), "value": {"x": 1}},            # 3 wrong type
        {"timestamp": iso(recent(-600)), "value": 2.0},              # 4 10 min in the future
        {"timestamp": iso(recent(-200)), "value": 2.5},              # 5 3 min ahead: fine
        {"timestamp": iso(recent(400 * 86400)), "value": 3.0},       # 6 past retention
        {"timestamp": "yesterday", "value": 4.0},                    # 7 bad timestamp
        {"timestamp": iso(recent(4)), "value": "a string"},          # 8 text into a number
        {"timestamp": iso(recent(5)), "value": 5, "quality": "meh"}, # 9 unknown quality
        {"timestamp": iso(recent(6)), "value": 6},                   # 10 good (int)
    ]  # fmt: skip
    body = json.dumps({"data_type": "pressure", "values": values})  # emits NaN / Infinity
    r = await client.post(
        f"/api/v1/devices/{device['id']}/data",
        content=body,
        headers={**token, "content-type": "application/json"},
    )
    assert r.status_code == 200, r.text
    result = r.json()
    assert (result["accepted"], result["duplicates"]) == (3, 0)
    reasons = {x["index"]: x["reason"] for x in result["rejected"]}
    assert sorted(reasons) == [1, 2, 3, 4, 6, 7, 8, 9]
    assert "finite" in reasons[1] and "finite" in reasons[2]
    assert "future" in reasons[4] and "retention" in reasons[6]
    assert "holds number values" in reasons[8]
    stored = sorted(i["value"] for i in await _data(client, operator, device["id"]))
    assert stored == [1.5, 2.5, 6.0]


async def test_all_rejected_is_422_with_the_reasons(client, operator: Actor):
    device, token = await device_with_token(client, operator)
    body = {"data_type": "t", "values": [{"timestamp": iso(recent()), "value": None}]}
    r = await client.post(f"/api/v1/devices/{device['id']}/data", json=body, headers=token)
    body = problem(r, 422)
    assert body["accepted"] == 0 and body["rejected"][0]["reason"] == "value is missing"


async def test_malformed_or_oversized_bodies_are_refused_whole(client, operator: Actor, runtime):
    device, token = await device_with_token(client, operator)
    url = f"/api/v1/devices/{device['id']}/data"
    problem(await client.post(url, content=b'{"data_type": "t", "values": [', headers=token), 400)
    problem(await client.post(url, json=["not", "an", "object"], headers=token), 400)
    runtime.settings.ingest_max_bytes = 200
    big = seed002("t", [(recent(i), float(i)) for i in range(20)])
    problem(await client.post(url, json=big, headers=token), 413)
    assert await _data(client, operator, device["id"]) == []


async def test_saturated_write_path_answers_503(client, operator: Actor, runtime):
    device, token = await device_with_token(client, operator)
    runtime.telemetry.writer.max_pending = 2
    body = seed002("t", [(recent(i), float(i)) for i in range(3)])
    r = await client.post(f"/api/v1/devices/{device['id']}/data", json=body, headers=token)
    problem(r, 503)
    assert r.headers["retry-after"] == "1"
    assert await _data(client, operator, device["id"]) == []


async def test_gateway_batch_for_many_devices(client, factory: Factory):
    op = await factory.user("operator", "acme")
    a = await create_device(client, op, name="a")
    b = await create_device(client, op, name="b")
    retired = await create_device(client, op, name="old")
    await client.put(f"/api/v1/devices/{retired['id']}/retire", headers=op.headers)
    other = await factory.user("operator", "globex")
    foreign = await create_device(client, other)
    ts = iso(recent())
    body = [
        {"device_id": a["id"], "timestamp": ts, "metrics": {"temperature": 20.5, "door": True}},
        {
            "device_id": b["id"],
            "metrics": {"temperature": {"value": 19.0, "unit": "celsius"}, "status_text": "ok"},
        },
        {"device_id": foreign["id"], "metrics": {"temperature": 1.0}},
        {"device_id": retired["id"], "metrics": {"temperature": 2.0}},
        {"device_id": "not-a-uuid", "metrics": {"temperature": 3.0}},
        {"metrics": "nope"},
    ]
    r = await client.post("/api/v1/monitoring/data", json=body, headers=op.headers)
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["accepted"] == 4
    reasons = {x["index"]: x["reason"] for x in result["rejected"]}
    assert reasons == {
        2: "unknown device",
        3: "device is retired",
        4: "unknown device",
        5: "each item needs a device_id and a metrics object",
    }
    latest = (await client.get(f"/api/v1/devices/{a['id']}/data/latest", headers=op.headers)).json()
    assert latest["metrics"]["door"]["value"] is True
    assert latest["metrics"]["temperature"]["value"] == 20.5
    # Seed 001 single object form
    r = await client.post(
        "/api/v1/monitoring/data",
        json={"device_id": b["id"], "metrics": {"temperature": 18.0}},
        headers=op.headers,
    )
    assert r.json()["accepted"] == 1
    # The other workspace saw nothing of it
    assert (
        await client.get(f"/api/v1/devices/{foreign['id']}/data", headers=other.headers)
    ).json()["items"] == []


async def test_device_tokens_write_only_their_own_device(client, operator: Actor):
    mine, token = await device_with_token(client, operator)
    other = await create_device(client, operator, name="other")
    body = seed002("t", [(recent(), 1.0)])
    problem(await client.post(f"/api/v1/devices/{other['id']}/data", json=body, headers=token), 403)
    batch = [
        {"device_id": other["id"], "metrics": {"t": 1.0}},
        {"device_id": mine["id"], "metrics": {"t": 2.0}},
    ]
    r = await client.post("/api/v1/monitoring/data", json=batch, headers=token)
    assert r.json()["accepted"] == 1
    assert "own device" in r.json()["rejected"][0]["reason"]
    assert await _data(client, operator, other["id"]) == []


async def test_roles_for_writing(client, viewer: Actor, operator: Actor):
    device = await create_device(client, operator)
    body = seed002("t", [(recent(), 1.0)])
    problem(
        await client.post(
            f"/api/v1/devices/{device['id']}/data", json=body, headers=viewer.headers
        ),
        403,
    )
    r = await client.post(
        f"/api/v1/devices/{device['id']}/data", json=body, headers=operator.headers
    )
    assert r.json()["accepted"] == 1
    problem(await client.post(f"/api/v1/devices/{device['id']}/data", json=body), 401)


async def test_other_workspace_cannot_read_or_write(client, factory: Factory):
    a = await factory.user("admin", "acme")
    device, token = await device_with_token(client, a)
    await client.post(
        f"/api/v1/devices/{device['id']}/data", json=seed002("t", [(recent(), 1.0)]), headers=token
    )
    b = await factory.user("admin", "globex")
    for method, path in [
        ("GET", "data"),
        ("GET", "data/latest"),
        ("DELETE", "data"),
        ("POST", "data"),
        ("POST", "heartbeat"),
    ]:
        body = seed002("t", [(recent(1), 2.0)]) if method == "POST" else None
        r = await client.request(
            method, f"/api/v1/devices/{device['id']}/{path}", json=body, headers=b.headers
        )
        problem(r, 404)
    assert len(await _data(client, a, device["id"])) == 1


async def test_heartbeat_is_stored_and_marks_the_device_online(client, operator: Actor, runtime):
    device, token = await device_with_token(client, operator)
    r = await client.post(
        f"/api/v1/devices/{device['id']}/heartbeat",
        json={"battery_level": 85, "signal_strength": -67, "memory_usage": 41.5, "cpu_usage": 12},
        headers=token,
    )
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 4 and r.json()["heartbeat_interval"] == 60
    latest = (
        await client.get(f"/api/v1/devices/{device['id']}/data/latest", headers=operator.headers)
    ).json()["metrics"]
    assert latest["battery_level"]["value"] == 85 and latest["signal_strength"]["value"] == -67
    assert runtime.presence.connectivity(__import__("uuid").UUID(device["id"])) == "online"
    # An empty heartbeat still counts as a sign of life.
    r = await client.post(f"/api/v1/devices/{device['id']}/heartbeat", headers=token)
    assert r.status_code == 200 and r.json()["accepted"] == 0


async def test_cursor_paging(client, operator: Actor):
    device, token = await device_with_token(client, operator)
    points = [(recent(100 - i), float(i)) for i in range(25)]
    await client.post(
        f"/api/v1/devices/{device['id']}/data", json=seed002("t", points), headers=token
    )
    seen: list[float] = []
    cursor = None
    for _ in range(5):
        params = {"limit": 10, "order": "asc", **({"cursor": cursor} if cursor else {})}
        r = await client.get(
            f"/api/v1/devices/{device['id']}/data", params=params, headers=operator.headers
        )
        page = r.json()
        seen += [i["value"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [float(i) for i in range(25)]
    window = await _data(
        client,
        operator,
        device["id"],
        start_time=iso(points[5][0]),
        end_time=iso(points[8][0]),
        order="asc",
    )
    assert [i["value"] for i in window] == [5.0, 6.0, 7.0]
    problem(
        await client.get(
            f"/api/v1/devices/{device['id']}/data?cursor=zzz", headers=operator.headers
        ),
        422,
    )


async def test_rollups_follow_the_data(client, operator: Actor, runtime):
    device, token = await device_with_token(client, operator)
    base = recent(3600).replace(second=0)
    points = [(base.replace(second=s), v) for s, v in [(0, 1.0), (10, 5.0), (20, 3.0)]]
    points.append((base + timedelta(minutes=1), 10.0))  # the next minute
    await client.post(
        f"/api/v1/devices/{device['id']}/data", json=seed002("t", points), headers=token
    )
    # the same again: duplicates must not be counted twice in the rollups
    await client.post(
        f"/api/v1/devices/{device['id']}/data", json=seed002("t", points), headers=token
    )
    async with runtime.uow() as uow:
        minute = (await uow.session.scalars(select(Rollup1m).where(Rollup1m.bucket == base))).one()
        hours = (await uow.session.scalars(select(Rollup1h))).all()
    assert (minute.count, minute.sum, minute.min, minute.max) == (3, 9.0, 1.0, 5.0)
    assert sum(h.count for h in hours) == 4 and sum(h.sum for h in hours) == 19.0


async def test_concurrent_overlapping_uploads_count_each_reading_once(client, operator: Actor):
    device, token = await device_with_token(client, operator)
    points = [(recent(i), float(i)) for i in range(50)]
    url = f"/api/v1/devices/{device['id']}/data"
    halves = [seed002("t", points[:30]), seed002("t", points[20:]), seed002("t", points)]
    results = await asyncio.gather(*(client.post(url, json=b, headers=token) for b in halves))
    accepted = sum(r.json()["accepted"] for r in results)
    duplicates = sum(r.json()["duplicates"] for r in results)
    assert accepted == 50 and duplicates == 30 + 30 + 50 - 50
    assert len(await _data(client, operator, device["id"], limit=1000)) == 50


async def test_delete_readings_needs_admin_and_rebuilds_rollups(client, admin: Actor, runtime):
    device, token = await device_with_token(client, admin)
    points = [(recent(300 + i), float(i)) for i in range(10)]
    await client.post(
        f"/api/v1/devices/{device['id']}/data", json=seed002("t", points), headers=token
    )
    await client.post(
        f"/api/v1/devices/{device['id']}/data", json=seed002("h", points), headers=token
    )
    r = await client.delete(
        f"/api/v1/devices/{device['id']}/data",
        params={"data_type": "t", "start_time": iso(points[4][0])},
        headers=admin.headers,
    )
    assert r.json() == {"deleted": 5}  # points 0..4 are the newest
    left = await _data(client, admin, device["id"], data_type="t")
    assert sorted(i["value"] for i in left) == [5.0, 6.0, 7.0, 8.0, 9.0]
    assert len(await _data(client, admin, device["id"], data_type="h")) == 10
    async with runtime.uow() as uow:
        hours = (await uow.session.scalars(select(Rollup1h))).all()
    assert sum(h.count for h in hours) == 15
    latest = (
        await client.get(f"/api/v1/devices/{device['id']}/data/latest", headers=admin.headers)
    ).json()["metrics"]
    assert latest["t"]["value"] == 5.0


async def test_purging_a_device_removes_its_telemetry(client, admin: Actor, runtime):
    from sqlalchemy import func

    from fieldwatch.telemetry.models import Reading, Series

    device, token = await device_with_token(client, admin)
    keep, keep_token = await device_with_token(client, admin, name="keep")
    body = seed002("t", [(recent(i), float(i)) for i in range(5)])
    await client.post(f"/api/v1/devices/{device['id']}/data", json=body, headers=token)
    await client.post(f"/api/v1/devices/{keep['id']}/data", json=body, headers=keep_token)
    r = await client.delete(f"/api/v1/devices/{device['id']}?purge=true", headers=admin.headers)
    assert r.status_code == 204
    async with runtime.uow() as uow:
        readings = await uow.session.scalar(select(func.count()).select_from(Reading))
        series = (await uow.session.scalars(select(Series))).all()
    assert readings == 5 and [str(s.device_id) for s in series] == [keep["id"]]


async def test_revocation_and_retirement_apply_at_once_despite_caching(client, operator: Actor):
    device, token = await device_with_token(client, operator)
    url = f"/api/v1/devices/{device['id']}/data"
    assert (await client.post(url, json=seed002("t", [(recent(3), 1.0)]), headers=token)).json()[
        "accepted"
    ] == 1
    tokens = (
        await client.get(f"/api/v1/devices/{device['id']}/tokens", headers=operator.headers)
    ).json()["items"]
    await client.delete(
        f"/api/v1/devices/{device['id']}/tokens/{tokens[0]['id']}", headers=operator.headers
    )
    problem(await client.post(url, json=seed002("t", [(recent(2), 2.0)]), headers=token), 401)

    # An operator's cached credential sees the device retired at once too.
    ok = await client.post(url, json=seed002("t", [(recent(1), 3.0)]), headers=operator.headers)
    assert ok.json()["accepted"] == 1
    await client.put(f"/api/v1/devices/{device['id']}/retire", headers=operator.headers)
    refused = await client.post(
        url, json=seed002("t", [(recent(0), 4.0)]), headers=operator.headers
    )
    assert "retired" in problem(refused, 409)["detail"]


async def test_many_concurrent_uploads_do_not_exhaust_the_connection_pool(client, operator):
    """Each upload must not hold a pooled connection while it waits for another one."""
    devices = [await device_with_token(client, operator, name=f"d{i}") for i in range(24)]

    async def upload(i: int):
        device, token = devices[i % len(devices)]
        body = seed002("t", [(recent(i + 1), float(i))])
        return await client.post(f"/api/v1/devices/{device['id']}/data", json=body, headers=token)

    results = await asyncio.wait_for(asyncio.gather(*(upload(i) for i in range(48))), timeout=20)
    assert [r.status_code for r in results] == [200] * 48
    assert sum(r.json()["accepted"] for r in results) == 48
