"""The device page's vendor sync part: its status and the sync settings form (operators),
posted then redirected back to the page with the outcome; a revoked connection's device
says it needs authorising again."""

from __future__ import annotations

import httpx

from conftest import Actor
from console_helpers import csrf_of, plain, section
from console_sync_helpers import USER, console_as, oura
from integration_helpers import API, connect_as, import_ring
from standins.vendor import Vendor

__all__ = ["oura"]  # the fixture


async def test_an_operator_changes_the_sync_settings_on_the_device_page(
    client: httpx.AsyncClient, admin: Actor, oura: Vendor
) -> None:
    connection = await connect_as(client, admin, USER)
    device = await import_ring(client, admin, connection, auto_sync=False,
                               sync_interval_minutes=60, sync_historical_days=2)  # fmt: skip
    await console_as(client, admin)
    page = await client.get(f"/console/devices/{device}")
    part = section(page.text, "sync-settings")
    assert "Automatic sync is off: manual syncs only." in plain(part)
    assert 'id="auto-sync"' in part and 'id="auto-sync" checked' not in part
    csrf = csrf_of(page.text)

    saved = await client.post(f"/console/devices/{device}/sync-settings", data={
        "csrf_token": csrf, "auto_sync": "on", "sync_interval_minutes": "15",
        "sync_historical_days": "2"})  # fmt: skip
    assert saved.status_code == 303
    assert (
        saved.headers["location"] == f"/console/devices/{device}?sync_settings=saved#sync-settings"
    )
    shown = await client.get(saved.headers["location"])
    part = section(shown.text, "sync-settings")
    assert plain(section(part, "sync-settings-saved")) == "The sync settings are saved."
    assert 'id="auto-sync" checked' in part and 'value="15"' in part
    assert "Next sync" in plain(part)
    status = await client.get("/api/v1/sync/status", params={"device_id": device},
                              headers=admin.headers)  # fmt: skip
    (row,) = status.json()["items"]
    assert (row["auto_sync"], row["sync_interval_minutes"]) == (True, 15)

    bad = await client.post(f"/console/devices/{device}/sync-settings", data={
        "csrf_token": csrf, "sync_interval_minutes": "0", "sync_historical_days": "2"})  # fmt: skip
    assert bad.status_code == 422 and "sync_interval_minutes" in bad.text
    forged = await client.post(f"/console/devices/{device}/sync-settings",
                               data={"sync_interval_minutes": "5"})  # fmt: skip
    assert forged.status_code == 403

    gone = await client.delete(f"{API}/connections/{connection}", headers=admin.headers)
    assert gone.status_code == 200
    after = plain(section((await client.get(f"/console/devices/{device}")).text, "sync-settings"))
    assert "Its connection is revoked: it needs authorising again" in after
