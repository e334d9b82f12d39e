"""The sync engine across processes: a crashed process's run resumed by another once
its lease ran out, two runtimes on one database never running a run twice, and
workspaces that see and trigger only their own syncs."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from sqlalchemy import update

from conftest import problem
from fieldwatch.core.clock import utcnow
from fieldwatch.core.settings import Settings
from fieldwatch.integrations.models import SyncRun
from fieldwatch.integrations.sync.engine import SyncEngine
from fieldwatch.runtime import Runtime, build_runtime
from integration_helpers import API, connect_as, import_ring
from sync_helpers import readings, runs

USERS = ["ring-a", "ring-b", "ring-c"]
HR = "/v2/usercollection/heartrate"
STANDIN_USERS = USERS


async def _claimed_by(runtime: Runtime, run_id: str, owner: str, until_s: float) -> None:
    async with runtime.uow() as uow:
        await uow.session.execute(
            update(SyncRun).where(SyncRun.id == uuid.UUID(run_id))
            .values(status="running", claimed_by=owner, start_time=utcnow(),
                    claimed_until=utcnow() + timedelta(seconds=until_s))
        )  # fmt: skip
        await uow.commit()


async def test_a_dead_process_run_is_resumed_after_its_lease(
    client, operator, oura, runtime: Runtime
) -> None:
    connection = await connect_as(client, operator, USERS[0])
    device = await import_ring(client, operator, connection, auto_sync=False,
                               sync_historical_days=1)  # fmt: skip
    asked = await client.post(f"/api/v1/devices/{device}/sync", headers=operator.headers)
    run_id = asked.json()["sync_id"]
    await _claimed_by(runtime, run_id, "process-that-died", until_s=60)
    await runtime.sync.run_once()  # its lease holds: not taken
    assert runtime.sync.executed == [] and (await runs(runtime, device))[0].status == "running"

    await _claimed_by(runtime, run_id, "process-that-died", until_s=-1)
    await runtime.sync.run_once()
    (run,) = await runs(runtime, device)
    assert runtime.sync.executed == [run.id]
    assert (run.status, run.claimed_by, run.claimed_until) == ("completed", runtime.sync.owner,
                                                              None)  # fmt: skip
    stored = await readings(runtime, device, "heart_rate")
    assert run.records_synced == len(stored) + len(await readings(runtime, device, "steps"))


async def test_two_runtimes_never_run_the_same_run_twice(
    client, operator, oura, runtime: Runtime, settings: Settings
) -> None:
    devices = []
    for user in USERS:
        connection = await connect_as(client, operator, user)
        devices.append(await import_ring(client, operator, connection, sync_historical_days=1))
    other = build_runtime(settings)
    try:
        other.sync.owner = other.sync.runner.owner = "second-process"
        await asyncio.gather(runtime.sync.run_once(), other.sync.run_once(),
                             runtime.sync.run_once(), other.sync.run_once())  # fmt: skip
        done = runtime.sync.executed + other.sync.executed
    finally:
        await other.close()
    all_runs = [r for d in devices for r in await runs(runtime, d)]
    assert len(all_runs) == 3  # scheduled once each, though both schedulers looked
    assert sorted(done) == sorted(r.id for r in all_runs)  # each run executed exactly once
    assert {r.status for r in all_runs} == {"completed"}
    first_pages = [q for p, q in oura.calls if p == HR and "next_token" not in q]
    assert len(first_pages) == 3


async def test_another_workspace_cannot_see_or_trigger_syncs(
    client, operator, oura, runtime, factory
) -> None:
    connection = await connect_as(client, operator, USERS[0])
    device = await import_ring(client, operator, connection, auto_sync=False,
                               sync_historical_days=1)  # fmt: skip
    run = (await client.post(f"/api/v1/devices/{device}/sync", headers=operator.headers)).json()
    await runtime.sync.run_once()
    stranger = await factory.user("admin", workspace="elsewhere")
    h = stranger.headers
    assert problem(await client.post(f"/api/v1/devices/{device}/sync", headers=h), 404)
    assert problem(await client.post(f"/api/v1/sync/retry/{run['sync_id']}", headers=h), 404)
    assert problem(await client.get("/api/v1/sync/status", params={"device_id": device},
                                    headers=h), 404)  # fmt: skip
    for path in ("/api/v1/sync/history", "/api/v1/sync/status"):
        assert (await client.get(path, headers=h)).json()["total"] == 0
    bulk = await client.post("/api/v1/sync/bulk", json={"device_ids": [device]}, headers=h)
    assert bulk.json()["runs"] == [] and bulk.json()["skipped"][0]["reason"] == "not found"
    listed = await client.get(f"{API}/oura/devices", params={"connection_id": connection},
                              headers=h)  # fmt: skip
    assert problem(listed, 404)
    imported = await client.post(f"{API}/oura/import", headers=h,
                                 json={"connection_id": connection, "devices": ["x"]})  # fmt: skip
    assert problem(imported, 404)
    assert problem(await client.get(f"/api/v1/devices/{device}/data", headers=h), 404)


async def test_answers_carry_no_credentials(client, operator, oura, runtime) -> None:
    connection = await connect_as(client, operator, USERS[0])
    device = await import_ring(client, operator, connection, sync_historical_days=1)
    await runtime.sync.run_once()
    texts = [
        (await client.get(path, headers=operator.headers, params=params)).text
        for path, params in (
            ("/api/v1/sync/status", {}), ("/api/v1/sync/history", {}),
            (f"{API}/oura/devices", {"connection_id": connection}),
            (f"{API}/connections", {}), (f"/api/v1/devices/{device}", {}),
        )
    ]  # fmt: skip
    secrets = {*oura.grants, *oura.refresh, oura.client_secret}
    assert secrets and not any(s in text for s in secrets for text in texts)


async def test_a_long_run_keeps_its_claim_by_renewing_it(
    client, operator, oura, runtime: Runtime
) -> None:
    runtime.settings.sync_lease_s = 2  # renewed every ⅔ s; the slow page takes 3 s
    connection = await connect_as(client, operator, USERS[0])
    device = await import_ring(client, operator, connection, auto_sync=False,
                               sync_historical_days=1)  # fmt: skip
    await client.post(f"/api/v1/devices/{device}/sync", headers=operator.headers)
    oura.fail(HR, delay_s=3, after=1)
    other = SyncEngine(runtime.uow, runtime.settings, runtime.ingest, runtime.key_ring,
                       owner="another-process")  # fmt: skip
    await runtime.sync.tick()
    assert len(runtime.sync.executed) == 1
    work = asyncio.ensure_future(runtime.sync.drain())
    while not work.done():  # the other process keeps looking for claimable runs meanwhile
        await other.claim()
        await asyncio.sleep(0.2)
    await work
    assert other.executed == []
    (run,) = await runs(runtime, device)
    assert (run.status, run.claimed_by) == ("completed", runtime.sync.owner)
