"""Privacy: consent per connection, disconnect (revoked at the Oura stand-in) with and
without purge, and the access log of health data reads."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import func, select

from conftest import create_device, problem
from fieldwatch.integrations.models import Connection, DeviceSync, Segment
from fieldwatch.runtime import Runtime
from integration_helpers import API, connect_as, days_ahead, import_ring
from standins.oura import RING_ZONE
from sync_helpers import readings, runs

USER = "oura-user-priv"
HR = "/v2/usercollection/heartrate"
STANDIN_USERS = [USER]


async def synced_ring(client, admin, runtime: Runtime) -> tuple[str, str]:
    connection = await connect_as(client, admin, USER)
    device = await import_ring(client, admin, connection, sync_historical_days=1)
    await runtime.sync.run_once()
    return connection, device


async def test_consent_limits_what_later_syncs_fetch(client, admin, factory, oura,
                                                     runtime: Runtime) -> None:  # fmt: skip
    connection = await connect_as(client, admin, USER)
    url = f"{API}/connections/{connection}/consent"
    given = await client.put(url, json={"data_types": ["steps"]}, headers=admin.headers)
    assert given.status_code == 200, given.text
    assert given.json() == {"connection_id": connection, "connector": "oura",
                            "data_types": ["steps"]}  # fmt: skip
    assert (await client.get(url, headers=admin.headers)).json()["data_types"] == ["steps"]
    bad = await client.put(url, json={"data_types": ["blood_glucose"]}, headers=admin.headers)
    assert "blood_glucose" in problem(bad, 422)["detail"]
    unsynced = await client.put(url, json={"data_types": ["spo2"]}, headers=admin.headers)
    refused = problem(unsynced, 422)
    assert [e["field"] for e in refused["errors"]] == ["data_types"]
    assert "spo2" in refused["detail"] and refused["data_types"] == ["heart_rate", "steps"]
    other = await factory.user("admin", workspace="elsewhere")
    problem(await client.put(url, json={"data_types": []}, headers=other.headers), 404)
    operator = await factory.user("operator")
    problem(await client.put(url, json={"data_types": []}, headers=operator.headers), 403)

    device = await import_ring(client, admin, connection, sync_historical_days=1)
    await runtime.sync.run_once()
    assert [r.status for r in await runs(runtime, device)] == ["completed"]
    assert await readings(runtime, device, "heart_rate") == []
    assert len(await readings(runtime, device, "steps")) == 1 + days_ahead(RING_ZONE)
    assert not [p for p, _ in oura.calls if p == HR]


async def test_disconnect_revokes_at_the_vendor_and_stops_syncs(
    client, admin, oura, runtime: Runtime
) -> None:
    connection, device = await synced_ring(client, admin, runtime)
    kept = len(await readings(runtime, device, "heart_rate"))
    assert kept > 0
    gone = await client.delete(f"{API}/connections/{connection}", headers=admin.headers)
    assert gone.status_code == 200, gone.text
    assert gone.json() == {"connection_id": connection, "status": "revoked",
                           "revoked_at_vendor": True, "devices": [device], "purged": False,
                           "readings_deleted": 0}  # fmt: skip
    assert oura.revocations == [USER]
    async with runtime.uow() as uow:
        row = await uow.session.get(Connection, uuid.UUID(connection))
        sync = await uow.session.get(DeviceSync, uuid.UUID(device))
    assert row is not None and (row.status, row.credentials) == ("revoked", None)
    assert sync is not None and (sync.auto_sync, sync.next_sync_at, sync.sync_status) == (
        False, None, "paused")  # fmt: skip
    assert len(await readings(runtime, device, "heart_rate")) == kept  # not purged
    await runtime.sync.run_once()
    assert len(await runs(runtime, device)) == 1  # nothing scheduled any more
    health = await client.get(f"/api/v1/devices/{device}/health", headers=admin.headers)
    assert any("revoked" in e for e in health.json()["errors"])
    listed = await client.get(f"{API}/connections", headers=admin.headers)
    assert listed.json()["items"][0]["status"] == "revoked"


async def test_disconnect_with_purge_deletes_the_synced_data(
    client, admin, factory, oura, runtime: Runtime
) -> None:
    connection, device = await synced_ring(client, admin, runtime)
    stored = len(await readings(runtime, device, "heart_rate")) + len(
        await readings(runtime, device, "steps"))  # fmt: skip
    other = await factory.user("admin", workspace="elsewhere")
    url = f"{API}/connections/{connection}"
    problem(await client.delete(url, params={"purge": "true"}, headers=other.headers), 404)
    gone = await client.delete(url, params={"purge": "true"}, headers=admin.headers)
    assert gone.status_code == 200, gone.text
    assert gone.json()["purged"] and gone.json()["readings_deleted"] == stored
    assert await readings(runtime, device, "heart_rate") == []
    async with runtime.uow() as uow:
        segments = await uow.session.scalar(select(func.count()).select_from(Segment))
    assert segments == 0
    latest = await client.get(f"/api/v1/devices/{device}/data/latest", headers=admin.headers)
    assert latest.json()["metrics"] == {}
    log = await client.get(f"{API}/access-log", params={"device_id": device},
                           headers=admin.headers)  # fmt: skip
    assert [(e["action"], e["what"]) for e in log.json()["items"]][-1] == (
        "purge", "all synced readings")  # fmt: skip


async def test_reads_of_synced_data_are_logged(client, admin, factory, oura,
                                               runtime: Runtime) -> None:  # fmt: skip
    _, device = await synced_ring(client, admin, runtime)
    sensor = await create_device(client, admin)
    viewer = await factory.user("viewer")
    for path in ("data?data_type=heart_rate&limit=5", "data/latest"):
        answer = await client.get(f"/api/v1/devices/{device}/{path}", headers=viewer.headers)
        assert answer.status_code == 200, answer.text
    answer = await client.get(f"/api/v1/devices/{sensor['id']}/data", headers=viewer.headers)
    assert answer.status_code == 200
    log = await client.get(f"{API}/access-log", headers=admin.headers)
    assert log.status_code == 200, log.text
    entries = log.json()["items"]
    assert log.json()["total"] == 2
    assert {(e["device_id"], e["actor"], e["action"], e["what"]) for e in entries} == {
        (device, f"user:{viewer.email}", "read", "data heart_rate"),
        (device, f"user:{viewer.email}", "read", "data latest"),
    }
    only = await client.get(f"{API}/access-log", params={"device_id": sensor["id"]},
                            headers=admin.headers)  # fmt: skip
    assert only.json()["total"] == 0
    problem(await client.get(f"{API}/access-log", headers=viewer.headers), 403)
    other = await factory.user("admin", workspace="elsewhere")
    theirs = await client.get(f"{API}/access-log", headers=other.headers)
    assert theirs.json()["total"] == 0


async def test_a_vendor_that_fails_to_revoke_still_ends_the_connection(
    client, admin, oura, runtime: Runtime, caplog
) -> None:
    connection, _ = await synced_ring(client, admin, runtime)
    async with runtime.uow() as uow:
        row = await uow.session.get(Connection, uuid.UUID(connection))
        assert row is not None and row.credentials
        token = runtime.key_ring.open(row.credentials, f"{row.workspace_id}:{row.id}:credentials")
    oura.fail("/oauth/revoke", 503)
    gone = await client.delete(f"{API}/connections/{connection}", headers=admin.headers)
    assert gone.status_code == 200, gone.text
    assert (gone.json()["status"], gone.json()["revoked_at_vendor"]) == ("revoked", False)
    assert oura.revocations == []
    for secret in json.loads(token).values():
        if isinstance(secret, str) and len(secret) > 20:
            assert secret not in caplog.text and secret not in gone.text
    async with runtime.uow() as uow:
        row = await uow.session.get(Connection, uuid.UUID(connection))
    assert row is not None and (row.status, row.credentials) == ("revoked", None)
