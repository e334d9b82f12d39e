"""Changing a device's sync settings after import: the PATCH (validated, recorded in
the device's log), a re-import with new settings (``updated``), and a device paused by
a disconnect syncing automatically again once its connection is re-authorised."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conftest import create_device, problem
from fieldwatch.runtime import Runtime
from integration_helpers import API, connect_as, import_ring

USER = "oura-user-settings"
STANDIN_USERS = [USER]


def _url(device: str) -> str:
    return f"/api/v1/devices/{device}/sync-settings"


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_patch_changes_only_what_is_given_and_is_logged(
    client, operator, viewer, factory, oura
) -> None:
    connection = await connect_as(client, operator, USER)
    device = await import_ring(client, operator, connection, auto_sync=False,
                               sync_interval_minutes=60, sync_historical_days=3)  # fmt: skip
    changed = await client.patch(_url(device), json={"auto_sync": True,
                                                     "sync_interval_minutes": 15},
                                 headers=operator.headers)  # fmt: skip
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["auto_sync"], body["sync_interval_minutes"], body["sync_historical_days"]) == (
        True, 15, 3)  # fmt: skip
    assert body["connection_status"] == "active"
    assert abs(_when(body["next_sync"]) - datetime.now(UTC)) < timedelta(minutes=1)  # never synced

    off = await client.patch(_url(device), json={"auto_sync": False}, headers=operator.headers)
    assert (off.json()["auto_sync"], off.json()["next_sync"]) == (False, None)
    assert off.json()["sync_interval_minutes"] == 15  # kept

    logs = await client.get(f"/api/v1/devices/{device}/logs", headers=operator.headers)
    entries = [e for e in logs.json()["items"] if e.get("notes") == "sync settings changed"]
    assert len(entries) == 2
    changes = [e["changes"] for e in entries]
    assert {"before": False, "after": True} in [c.get("sync.auto_sync") for c in changes]
    assert {"before": 60, "after": 15} in [c.get("sync.interval_minutes") for c in changes]

    empty = problem(await client.patch(_url(device), json={}, headers=operator.headers), 422)
    assert "auto_sync" in str(empty)
    zero = problem(await client.patch(_url(device), json={"sync_interval_minutes": 0},
                                      headers=operator.headers), 422)  # fmt: skip
    assert "sync_interval_minutes" in str(zero["errors"])
    problem(await client.patch(_url(device), json={"auto_sync": True}, headers=viewer.headers),
            403)  # fmt: skip
    other = await factory.user("admin", workspace="elsewhere")
    problem(await client.patch(_url(device), json={"auto_sync": True}, headers=other.headers),
            404)  # fmt: skip
    plain = await create_device(client, operator)
    problem(await client.patch(_url(plain["id"]), json={"auto_sync": True},
                               headers=operator.headers), 409)  # fmt: skip


async def test_reimport_applies_the_settings_it_was_given(client, operator, oura) -> None:
    connection = await connect_as(client, operator, USER)
    device = await import_ring(client, operator, connection, auto_sync=False,
                               sync_interval_minutes=60)  # fmt: skip
    listed = await client.get(f"{API}/oura/devices", params={"connection_id": connection},
                              headers=operator.headers)  # fmt: skip
    ring = listed.json()["items"][0]["vendor_device_id"]
    body = {"connection_id": connection, "devices": [ring],
            "sync_settings": {"auto_sync": True, "sync_interval_minutes": 20}}  # fmt: skip
    again = await client.post(f"{API}/oura/import", json=body, headers=operator.headers)
    assert again.status_code == 201, again.text
    (item,) = again.json()
    assert (item["device_id"], item["created"], item["updated"]) == (device, False, True)
    assert item["next_sync"] is not None
    status = await client.get("/api/v1/sync/status", params={"device_id": device},
                              headers=operator.headers)  # fmt: skip
    (row,) = status.json()["items"]
    assert (row["auto_sync"], row["sync_interval_minutes"]) == (True, 20)

    same = await client.post(f"{API}/oura/import", json={"connection_id": connection,
                                                          "devices": [ring]},
                             headers=operator.headers)  # fmt: skip
    assert (same.json()[0]["created"], same.json()[0]["updated"]) == (False, False)


async def test_a_reauthorised_connection_syncs_automatically_again(
    client, admin, oura, runtime: Runtime
) -> None:
    connection = await connect_as(client, admin, USER)
    device = await import_ring(client, admin, connection, sync_historical_days=1)
    await runtime.sync.run_once()
    gone = await client.delete(f"{API}/connections/{connection}", headers=admin.headers)
    assert gone.status_code == 200, gone.text

    health = (await client.get(f"/api/v1/devices/{device}/health", headers=admin.headers)).json()
    assert (health["sync_status"], health["next_sync"]) == ("revoked", None)
    assert any("revoked" in e for e in health["errors"])
    refused = problem(await client.post(f"/api/v1/devices/{device}/sync",
                                        headers=admin.headers), 409)  # fmt: skip
    assert "POST /api/v1/integrations/oura/auth" in refused["detail"]
    assert "{type}" not in refused["detail"]

    assert await connect_as(client, admin, USER) == connection  # authorised again
    health = (await client.get(f"/api/v1/devices/{device}/health", headers=admin.headers)).json()
    assert health["sync_status"] == "paused"
    assert any("turn automatic sync on" in w for w in health["warnings"])

    listed = await client.get(f"{API}/oura/devices", params={"connection_id": connection},
                              headers=admin.headers)  # fmt: skip
    ring = listed.json()["items"][0]["vendor_device_id"]
    body = {"connection_id": connection, "devices": [ring], "sync_settings": {"auto_sync": True}}
    again = await client.post(f"{API}/oura/import", json=body, headers=admin.headers)
    (item,) = again.json()
    assert (item["created"], item["updated"], item["sync_status"]) == (False, True, "ok")
    assert item["next_sync"] is not None
    health = (await client.get(f"/api/v1/devices/{device}/health", headers=admin.headers)).json()
    assert health["sync_status"] == "ok" and health["next_sync"] is not None
    assert not health["errors"] and not any("paused" in w for w in health["warnings"])
