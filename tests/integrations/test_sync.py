"""Syncing an Oura ring from the stand-in over real HTTP: import, backfill, incremental
sync with overlap and no duplicates, the readings in the telemetry API, the sync API."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from conftest import problem
from fieldwatch.core.clock import utcnow
from fieldwatch.core.events import Event
from fieldwatch.integrations.sync.events import SYNC_CHANGED
from fieldwatch.integrations.sync.runner import OVERLAP
from fieldwatch.runtime import Runtime
from fieldwatch.telemetry.ingest.service import TELEMETRY_RECEIVED
from integration_helpers import API, connect_as, days_ahead, import_ring
from standins.oura import PAGE, RING_ZONE, heart_rate
from sync_helpers import count_runs, cursor, device_sync, readings, runs, segments_of

USER = "oura-user-7"
HR = "/v2/usercollection/heartrate"
STANDIN_USERS = [USER]


async def test_import_lists_the_ring_and_creates_a_synced_device(client, operator, oura) -> None:
    connection = await connect_as(client, operator, USER)
    listed = await client.get(f"{API}/oura/devices", params={"connection_id": connection},
                              headers=operator.headers)  # fmt: skip
    assert listed.status_code == 200, listed.text
    assert set(listed.json()) == {"items", "total", "limit", "offset"}  # the list envelope
    (ring,) = listed.json()["items"]
    assert (ring["vendor_device_id"], ring["device_id"]) == (f"ring-{USER}", None)
    body = {"connection_id": connection, "devices": [ring["vendor_device_id"]],
            "sync_settings": {"sync_interval_minutes": 30, "sync_historical_days": 2}}  # fmt: skip
    made = await client.post(f"{API}/oura/import", json=body, headers=operator.headers)
    assert made.status_code == 201, made.text
    (imported,) = made.json()
    assert imported["created"] and imported["sync_status"] == "pending"
    device = await client.get(f"/api/v1/devices/{imported['device_id']}", headers=operator.headers)
    assert device.json()["type"] == "oura_ring" and device.json()["status"] == "in_stock"
    assert device.json()["manufacturer"] == "Oura"
    again = await client.post(f"{API}/oura/import", json=body, headers=operator.headers)
    assert again.json()[0] == {**imported, "created": False}
    listed = await client.get(f"{API}/oura/devices", params={"connection_id": connection},
                              headers=operator.headers)  # fmt: skip
    assert listed.json()["items"][0]["device_id"] == imported["device_id"]
    wrong = await client.post(f"{API}/oura/import", headers=operator.headers,
                              json={**body, "devices": ["ring-of-someone-else"]})  # fmt: skip
    assert problem(wrong, 400)["vendor_devices"] == [f"ring-{USER}"]


async def test_backfill_then_incremental_sync_without_duplicates(
    client, operator, oura, runtime: Runtime
) -> None:
    events: list[Event] = []

    async def keep(event: Event) -> None:
        events.append(event)

    runtime.bus.subscribe(SYNC_CHANGED, keep)
    connection = await connect_as(client, operator, USER)
    device = await import_ring(client, operator, connection, sync_historical_days=2,
                               sync_interval_minutes=30)  # fmt: skip
    before = utcnow()
    await runtime.sync.run_once()  # the scheduler's first run: a backfill

    (backfill,) = await runs(runtime, device)
    assert (backfill.sync_type, backfill.status, backfill.requested_by) == (
        "backfill",
        "completed",
        "scheduler",
    )
    hr = await readings(runtime, device, "heart_rate")
    assert 2 * 24 * 60 - 1 <= len(hr) <= 2 * 24 * 60 + 2  # a reading a minute, two days
    assert hr[0] >= before - timedelta(days=2, minutes=1)
    steps = await readings(runtime, device, "steps")
    # The two days that are over where the ring is (+02:00); today's total is not final
    # yet (late in a UTC day, it is over there).
    assert len(steps) == 2 + days_ahead(RING_ZONE)
    assert backfill.records_processed == len(hr) + len(steps) == backfill.records_synced
    assert backfill.records_failed == 0 and backfill.duration_seconds is not None
    sync = await device_sync(runtime, device)
    assert (sync.sync_status, sync.last_run_id, sync.failures) == ("ok", backfill.id, 0)
    assert sync.next_sync_at is not None and sync.next_sync_at >= before + timedelta(minutes=29)
    assert await cursor(runtime, device, "heart_rate") == hr[-1]
    segments = await segments_of(runtime, backfill.id)
    assert sum(s.count for s in segments if s.metric == "heart_rate") == len(hr)
    assert {(s.connector, s.quality, s.tz_offset_min) for s in segments} == {
        ("oura", 1.0, 0),
        ("oura", 1.0, 120),
    }  # heart rate in UTC, days in local time
    statuses = [(e.payload["sync_id"], e.payload["status"]) for e in events]
    assert statuses == [(str(backfill.id), s) for s in ("queued", "running", "completed")]

    calls = len(oura.calls)
    manual = await client.post(f"/api/v1/devices/{device}/sync", headers=operator.headers)
    assert manual.status_code == 202, manual.text
    assert (manual.json()["sync_type"], manual.json()["status"]) == ("manual", "queued")
    await runtime.sync.run_once()
    (_, incremental) = await runs(runtime, device)
    assert incremental.status == "completed"
    started = [q for p, q in oura.calls[calls:] if p == HR]
    assert f"start_datetime={(hr[-1] - OVERLAP).isoformat()}".replace(":", "%3A").replace(
        "+", "%2B") in started[0]  # fmt: skip
    # The overlap is fetched again and stored nothing twice.
    assert incremental.records_processed >= 60
    after = await readings(runtime, device, "heart_rate")
    assert len(after) == len(set(after)) == len(hr) + incremental.records_synced - (
        len(await readings(runtime, device, "steps")) - len(steps))  # fmt: skip
    assert incremental.records_synced <= 3


async def test_synced_readings_are_in_the_telemetry_api(client, operator, oura, runtime) -> None:
    connection = await connect_as(client, operator, USER)
    device = await import_ring(client, operator, connection, sync_historical_days=1)
    await runtime.sync.run_once()
    answer = await client.get(f"/api/v1/devices/{device}/data", headers=operator.headers,
                              params={"data_type": "heart_rate", "limit": 5})  # fmt: skip
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    assert len(items) == 5
    for item in items:
        from datetime import datetime

        ts = datetime.fromisoformat(item["timestamp"])
        assert (item["value"], item["unit"]) == (heart_rate(USER, ts), "/min")
    latest = await client.get(f"/api/v1/devices/{device}/data/latest", headers=operator.headers)
    assert latest.status_code == 200 and "steps" in latest.text


async def test_one_open_run_per_device(client, operator, oura, runtime) -> None:
    connection = await connect_as(client, operator, USER)
    device = await import_ring(client, operator, connection, auto_sync=False,
                               sync_historical_days=1)  # fmt: skip
    first = await client.post(f"/api/v1/devices/{device}/sync", headers=operator.headers)
    assert first.status_code == 202
    second = await client.post(f"/api/v1/devices/{device}/sync", headers=operator.headers)
    assert problem(second, 409)["sync_id"] == first.json()["sync_id"]
    status = await client.get("/api/v1/sync/status", headers=operator.headers)
    (row,) = status.json()["items"]
    assert row["device_id"] == device and row["sync_status"] == "pending"
    assert row["next_sync"] is None and not row["auto_sync"]
    assert [r["sync_id"] for r in row["open_runs"]] == [first.json()["sync_id"]]
    bulk = await client.post("/api/v1/sync/bulk", json={"all": True}, headers=operator.headers)
    assert bulk.status_code == 202
    assert bulk.json()["runs"] == []
    assert bulk.json()["skipped"][0]["sync_id"] == first.json()["sync_id"]
    retry = await client.post(f"/api/v1/sync/retry/{first.json()['sync_id']}",
                              headers=operator.headers)  # fmt: skip
    assert "queued" in problem(retry, 409)["detail"]
    unknown_type = await client.post(f"/api/v1/devices/{device}/sync", headers=operator.headers,
                                     json={"data_types": ["body_weight"]})  # fmt: skip
    assert problem(unknown_type, 400)["fetchable"] == ["heart_rate", "steps"]
    await runtime.sync.run_once()
    bulk = await client.post("/api/v1/sync/bulk", headers=operator.headers,
                             json={"device_ids": [device, str(uuid.uuid4())]})  # fmt: skip
    (run,) = bulk.json()["runs"]
    assert run["bulk_id"] == bulk.json()["bulk_id"] and run["sync_type"] == "bulk"
    assert bulk.json()["skipped"][0]["reason"] == "not found"
    history = await client.get("/api/v1/sync/history", headers=operator.headers,
                               params={"device_id": device, "status": "completed"})  # fmt: skip
    assert [r["sync_id"] for r in history.json()["items"]] == [first.json()["sync_id"]]
    assert history.json()["items"][0]["records_synced"] > 0


async def test_a_retired_device_is_not_synced_any_more(client, operator, oura, runtime) -> None:
    connection = await connect_as(client, operator, USER)
    device = await import_ring(client, operator, connection, sync_historical_days=1)
    retired = await client.delete(f"/api/v1/devices/{device}", headers=operator.headers)
    assert retired.status_code in (200, 204), retired.text
    await runtime.sync.run_once()
    assert await runs(runtime, device) == [] and await readings(runtime, device, "heart_rate") == []
    asked = await client.post(f"/api/v1/devices/{device}/sync", headers=operator.headers)
    assert asked.status_code == 202  # asked for anyway: ingestion refuses, the run says so
    await runtime.sync.run_once()
    (run,) = await runs(runtime, device)
    assert run.status == "failed" and "retired" in (run.error_message or "")
    assert await count_runs(runtime) == 1  # not retried


async def test_cancelling_runs(client, operator, oura, runtime) -> None:
    connection = await connect_as(client, operator, USER)
    device = await import_ring(client, operator, connection, auto_sync=False,
                               sync_historical_days=1)  # fmt: skip
    asked = (await client.post(f"/api/v1/devices/{device}/sync", headers=operator.headers)).json()
    cancelled = await client.post(f"/api/v1/sync/{asked['sync_id']}/cancel",
                                  headers=operator.headers)  # fmt: skip
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["error_message"].startswith("cancelled by user:")
    await runtime.sync.run_once()
    assert runtime.sync.executed == [] and await readings(runtime, device, "heart_rate") == []
    again = await client.post(f"/api/v1/sync/{asked['sync_id']}/cancel", headers=operator.headers)
    assert problem(again, 409)["sync_status"] == "cancelled"
    retried = await client.post(f"/api/v1/sync/retry/{asked['sync_id']}", headers=operator.headers)
    assert retried.status_code == 202 and retried.json()["retry_of"] == asked["sync_id"]
    await runtime.sync.run_once()
    assert (await runs(runtime, device))[-1].status == "completed"


async def test_a_running_run_cancelled_stops_at_its_next_page(
    client, operator, oura, runtime
) -> None:
    connection = await connect_as(client, operator, USER)
    device = await import_ring(client, operator, connection, auto_sync=False,
                               sync_historical_days=1)  # fmt: skip
    asked = (await client.post(f"/api/v1/devices/{device}/sync", headers=operator.headers)).json()
    oura.fail("/v2/usercollection/heartrate", delay_s=3, after=1)  # the second page is slow
    first_page = asyncio.Event()

    async def stored(event: Event) -> None:
        first_page.set()

    runtime.bus.subscribe(TELEMETRY_RECEIVED, stored)
    await runtime.sync.tick()
    async with asyncio.timeout(20):
        await first_page.wait()
    assert len(await readings(runtime, device, "heart_rate")) == PAGE
    cancelled = await client.post(f"/api/v1/sync/{asked['sync_id']}/cancel",
                                  headers=operator.headers)  # fmt: skip
    assert cancelled.json()["status"] == "cancelled"
    await runtime.sync.drain()
    (run,) = await runs(runtime, device)
    assert run.status == "cancelled"  # the runner did not overwrite it
    assert len(await readings(runtime, device, "heart_rate")) <= 2 * PAGE < 24 * 60
