"""Analytics of vendor-fed devices over a real sync from the Oura stand-in: device
usage, data quality (with anomalies), sync performance; periods; isolation; access log."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from conftest import problem
from fieldwatch.core.clock import utcnow
from fieldwatch.integrations.models import Segment, SyncRun
from fieldwatch.runtime import Runtime
from integration_helpers import API, connect_as, import_ring
from sync_helpers import readings

USER = "oura-user-analytics"
A = "/api/v1/analytics"
STANDIN_USERS = [USER]


@pytest.fixture
async def ring(client, admin, oura, runtime: Runtime) -> str:
    connection = await connect_as(client, admin, USER)
    device = await import_ring(client, admin, connection, sync_historical_days=1)
    await runtime.sync.run_once()
    manual = await client.post(f"/api/v1/devices/{device}/sync", headers=admin.headers)
    assert manual.status_code == 202, manual.text
    await runtime.sync.run_once()
    return device


async def test_device_usage(client, admin, factory, ring, runtime: Runtime) -> None:
    hr = await readings(runtime, ring, "heart_rate")
    steps = await readings(runtime, ring, "steps")
    answer = await client.get(f"{A}/device-usage", headers=admin.headers)
    assert answer.status_code == 200, answer.text
    (device,) = answer.json()["devices"]
    assert (device["device_id"], device["connector"]) == (ring, "oura")
    by_metric = {m["metric"]: m for m in device["metrics"]}
    assert by_metric["heart_rate"]["readings"] == len(hr)
    assert by_metric["heart_rate"]["days_with_data"] == len({t.date() for t in hr})
    assert by_metric["heart_rate"]["last_data"][:19] == hr[-1].isoformat()[:19]
    assert by_metric["steps"]["readings"] == len(steps)
    assert device["readings"] == len(hr) + len(steps)
    assert answer.json()["by_connector"] == {"oura": len(hr) + len(steps)}
    # A period before the data: nothing.
    end = (hr[0] - timedelta(days=2)).isoformat()
    early = await client.get(f"{A}/device-usage", params={"end": end}, headers=admin.headers)
    assert early.json()["devices"] == []
    other = await factory.user("admin", workspace="elsewhere")
    theirs = await client.get(f"{A}/device-usage", headers=other.headers)
    assert theirs.json()["devices"] == []
    log = await client.get(f"{API}/access-log", params={"device_id": ring},
                           headers=admin.headers)  # fmt: skip
    assert "analytics device-usage" in {e["what"] for e in log.json()["items"]}


async def test_data_quality_counts_parts_and_anomalies(client, admin, ring,
                                                       runtime: Runtime) -> None:  # fmt: skip
    clean = await client.get(f"{A}/data-quality", headers=admin.headers)
    assert clean.status_code == 200, clean.text
    rows = {r["metric"]: r for r in clean.json()["rows"]}
    hr = await readings(runtime, ring, "heart_rate")
    assert rows["heart_rate"]["readings"] >= len(hr)  # overlaps fetched again count too
    assert rows["heart_rate"]["mean_quality"] == 1.0 and rows["heart_rate"]["anomalies"] == 0
    assert clean.json()["mean_quality"] == 1.0
    now = utcnow()
    async with runtime.uow() as uow:
        uow.session.add(Segment(
            workspace_id=admin.workspace_id, device_id=uuid.UUID(ring), connector="oura",
            metric="heart_rate", ts_from=now - timedelta(hours=1), ts_to=now, count=60,
            quality=0.25, anomalies=[now.isoformat(), (now - timedelta(minutes=5)).isoformat()],
            quality_parts={"completeness": 1.0, "plausibility": 0.5, "duplicates": 1.0,
                           "gaps": 0.5},
        ))  # fmt: skip
        await uow.commit()
    after = await client.get(f"{A}/data-quality", params={"device_id": ring},
                             headers=admin.headers)  # fmt: skip
    row = next(r for r in after.json()["rows"] if r["metric"] == "heart_rate")
    n = rows["heart_rate"]["segments"] + 1
    assert row["segments"] == n and row["anomalies"] == 2
    assert (row["implausible_segments"], row["gappy_segments"]) == (1, 1)
    assert row["mean_quality"] == round((n - 1 + 0.25) / n, 4)
    assert row["parts"]["plausibility"] == round((n - 1 + 0.5) / n, 4)
    assert row["parts"]["completeness"] == 1.0


async def test_sync_performance_and_periods(client, admin, factory, ring,
                                            runtime: Runtime) -> None:  # fmt: skip
    answer = await client.get(f"{A}/sync-performance", headers=admin.headers)
    assert answer.status_code == 200, answer.text
    overall = answer.json()["overall"]
    assert (overall["runs"], overall["by_status"], overall["by_type"]) == (
        2, {"completed": 2}, {"backfill": 1, "manual": 1})  # fmt: skip
    assert overall["success_rate"] == 1.0 and overall["retries"] == 0
    assert overall["duration_p50_s"] is not None and overall["records_per_second"] > 0
    assert answer.json()["by_connector"]["oura"] == overall
    async with runtime.uow() as uow:
        uow.session.add(SyncRun(
            workspace_id=admin.workspace_id, device_id=uuid.UUID(ring), sync_type="automatic",
            status="auth_required", attempt=2, requested_by="scheduler", data_types=[],
            duration_seconds=1.0, records_processed=0, records_synced=0, records_failed=0,
        ))  # fmt: skip
        await uow.commit()
    again = (await client.get(f"{A}/sync-performance", headers=admin.headers)).json()["overall"]
    assert (again["runs"], again["auth_required"], again["retries"]) == (3, 1, 1)
    assert again["success_rate"] == round(2 / 3, 4)
    other = await factory.user("admin", workspace="elsewhere")
    theirs = (await client.get(f"{A}/sync-performance", headers=other.headers)).json()
    assert theirs["overall"]["runs"] == 0 and theirs["by_connector"] == {}
    now = utcnow()
    backwards = {"start": now.isoformat(), "end": (now - timedelta(days=1)).isoformat()}
    problem(await client.get(f"{A}/data-quality", params=backwards, headers=admin.headers), 422)
    too_long = {"start": (now - timedelta(days=400)).isoformat()}
    problem(await client.get(f"{A}/device-usage", params=too_long, headers=admin.headers), 422)
