"""Per-workspace retention: settings, refusal of too-old readings, removal, partitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from conftest import Factory, problem
from fieldwatch.telemetry.models import Reading, Rollup1m
from telemetry_helpers import device_with_token, iso, recent


async def test_settings_and_refusal(client, factory: Factory):
    admin = await factory.user("admin", "acme")
    operator = await factory.user("operator", "acme")
    assert (await client.get("/api/v1/telemetry/settings", headers=operator.headers)).json() == {
        "retention_days": 365
    }
    problem(await client.put("/api/v1/telemetry/settings", json={"retention_days": 5},
                             headers=operator.headers), 403)  # fmt: skip
    problem(await client.put("/api/v1/telemetry/settings", json={"retention_days": 0},
                             headers=admin.headers), 422)  # fmt: skip
    r = await client.put("/api/v1/telemetry/settings", json={"retention_days": 5},
                         headers=admin.headers)  # fmt: skip
    assert r.json() == {"retention_days": 5}
    device, token = await device_with_token(client, admin)
    values = [{"timestamp": iso(recent(d * 86400)), "value": d} for d in (6, 4)]
    body = {"data_type": "t", "values": values}
    result = (await client.post(f"/api/v1/devices/{device['id']}/data", json=body,
                                headers=token)).json()  # fmt: skip
    assert result["accepted"] == 1 and "retention" in result["rejected"][0]["reason"]


async def test_maintenance_removes_what_is_past_each_window(client, factory: Factory, runtime):
    short = await factory.user("admin", "short")
    long_ = await factory.user("admin", "long")
    devices = {}
    for actor in (short, long_):
        device, token = await device_with_token(client, actor)
        body = {"data_type": "t", "values": [{"timestamp": iso(recent(d * 86400)), "value": d}
                                             for d in (1, 3, 8, 20)]}  # fmt: skip
        r = await client.post(f"/api/v1/devices/{device['id']}/data", json=body, headers=token)
        assert r.json()["accepted"] == 4
        devices[actor.workspace] = device
    await client.put("/api/v1/telemetry/settings", json={"retention_days": 5},
                     headers=short.headers)  # fmt: skip
    report = await runtime.telemetry.retention.run()
    assert report.deleted_readings == 2
    left_short = (await client.get(f"/api/v1/devices/{devices['short']['id']}/data",
                                   headers=short.headers)).json()["items"]  # fmt: skip
    assert sorted(i["value"] for i in left_short) == [1.0, 3.0]
    left_long = (await client.get(f"/api/v1/devices/{devices['long']['id']}/data",
                                  headers=long_.headers)).json()["items"]  # fmt: skip
    assert len(left_long) == 4
    async with runtime.uow() as uow:
        rollups = await uow.session.scalar(select(func.count()).select_from(Rollup1m))
    assert rollups == 6


async def test_old_partitions_are_dropped_on_postgres(client, admin, runtime, backend):
    if backend.name != "postgres":
        pytest.skip("partitions exist only on PostgreSQL")
    device, token = await device_with_token(client, admin)
    await client.post(f"/api/v1/devices/{device['id']}/data",
                      json={"data_type": "t", "value": 1.0}, headers=token)  # fmt: skip
    old_week = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday, long past 365 days
    async with runtime.engine.begin() as conn:
        await conn.execute(
            text(
                "CREATE TABLE readings_p20240101 PARTITION OF readings "
                "FOR VALUES FROM ('2024-01-01T00:00:00+00') TO ('2024-01-08T00:00:00+00')"
            )
        )
        await conn.execute(text(
            "INSERT INTO readings (series_id, ts, value) SELECT id, :ts, 5 FROM series"),
            {"ts": old_week + timedelta(days=2)})  # fmt: skip
    report = await runtime.telemetry.retention.run()
    assert report.dropped_partitions == ["readings_p20240101"]
    async with runtime.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(Reading)) == 1
