"""The console's integrations pages over HTTP with real data from a real sync against the
Oura stand-in: the catalogue (fitbit's sunset banner and its successor, connect buttons
or why not), connecting through the vendor's consent page, the connections with their
devices and "Sync now", the sync history with retry and cancel, data quality;
viewers read without buttons and are refused every change, admins disconnect."""

from __future__ import annotations

import html as html_lib
import re
import uuid

import httpx

from conftest import Actor, Factory
from console_helpers import plain, section
from console_sync_helpers import BASE, USER, console_as, failed_run, oura, synced_ring
from fieldwatch.core.settings import Settings
from fieldwatch.runtime import Runtime
from integration_helpers import consent
from standins.vendor import Vendor
from sync_helpers import readings, runs

__all__ = ["oura"]  # the fixture


async def test_the_catalogue_warns_of_fitbit_and_connects_oura_through_the_vendor(
    client: httpx.AsyncClient, operator: Actor, oura: Vendor, settings: Settings
) -> None:
    csrf = await console_as(client, operator)
    page = await client.get(BASE)
    assert '<a href="/console/integrations" aria-current="page">Integrations</a>' in page.text
    fitbit = section(page.text, "integration-fitbit")
    banner = plain(section(fitbit, "banner-fitbit"))
    assert (
        "Support for this API ended on 2026-09-30 and it was switched off in early "
        "November 2026 (it answers 410 Gone)." in banner
    )
    assert "Its successor is Google Health API" in banner
    assert 'id="connect-fitbit" disabled' in fitbit
    assert "Cannot be connected: Fitbit Web API (legacy) is sunset; use google_health." in plain(
        fitbit
    )
    google_fit = section(page.text, "integration-google_fit")
    assert "This API is deprecated." in plain(section(google_fit, "banner-google_fit"))
    apple = plain(section(page.text, "integration-apple_health"))
    assert "Cannot be connected: no cloud API" in apple
    oura_card = section(page.text, "integration-oura")
    assert 'data-lifecycle="active"' in oura_card and "banner-oura" not in oura_card
    assert "5000 requests per 300 s per user" in plain(oura_card)
    assert "push or polling" in plain(oura_card) and "heart rate steps" in plain(oura_card)
    assert "body temperature" not in plain(oura_card) and "spo2" not in plain(oura_card)
    assert "OAuth 2 with PKCE" in plain(oura_card)
    assert re.search(r'id="connect-oura"\s*>', oura_card)  # enabled

    started = await client.post(f"{BASE}/oura/connect", data={"csrf_token": csrf})
    assert started.status_code == 303
    location = started.headers["location"]
    assert location.startswith(f"{settings.oura.auth_url}/oauth/authorize?")
    assert "code_challenge_method=S256" in location
    back = await consent(location)  # the account holder consents at the vendor
    returned = await client.get("/api/v1/integrations/oura/callback", params=back)
    assert returned.status_code == 303
    assert returned.headers["location"].startswith(f"{BASE}/connections?connection=")
    shown = await client.get(returned.headers["location"])
    notice = plain(section(shown.text, "notice"))
    assert notice == f"Oura {USER} is connected (active): import its devices to start syncing."
    listed = await client.get("/api/v1/integrations/connections", headers=operator.headers)
    assert [c["status"] for c in listed.json()["items"]] == ["active"]
    connection = listed.json()["items"][0]["id"]

    imported = await client.post(f"{BASE}/connections/{connection}/import",
                                 data={"csrf_token": csrf, "connector": "oura"})  # fmt: skip
    assert imported.status_code == 303, imported.text  # post, redirect, get
    assert imported.headers["location"] == f"{BASE}/connections?done=imported&count=1"
    imported = await client.get(imported.headers["location"])
    notice = plain(section(imported.text, "notice"))
    assert notice == "1 device imported: the first sync is due now."
    card = section(imported.text, f"connection-{connection}")
    assert "Oura ring gen3" in card and 'data-sync-status="pending"' in card
    again = await client.post(f"{BASE}/connections/{connection}/import",
                              data={"csrf_token": csrf, "connector": "oura"})  # fmt: skip
    assert again.status_code == 303
    again = await client.get(again.headers["location"])
    assert "Every device of this account is imported already." in again.text
    sunset = await client.post(f"{BASE}/fitbit/connect", data={"csrf_token": csrf})
    assert sunset.status_code == 409
    assert "Fitbit Web API (legacy) cannot be connected" in html_lib.unescape(sunset.text)


async def test_pages_show_a_real_sync(
    client: httpx.AsyncClient, operator: Actor, oura: Vendor, runtime: Runtime
) -> None:
    synced = await synced_ring(client, operator, runtime)
    await console_as(client, operator)
    page = await client.get(f"{BASE}/connections")
    card = section(page.text, f"connection-{synced.connection_id}")
    assert 'data-status="active"' in card
    assert "heart rate, steps" in plain(card) and "spo2" not in plain(card)
    row = section(card, f"device-{synced.device_id}")
    assert 'data-sync-status="ok"' in row and "never" not in plain(row)
    assert f'id="sync-{synced.device_id}"' in row and "Disconnect" not in card  # not an admin

    history = await client.get(f"{BASE}/sync")
    run = section(history.text, f"run-{synced.run.id}")
    assert 'data-status="completed"' in run
    assert plain(run).count("backfill") == 1
    processed = re.search(r'class="num processed">(\d+)<', run)
    assert processed and int(processed.group(1)) == synced.run.records_processed
    synced_count = re.search(r'class="num synced">(\d+)<', run)
    assert synced_count and int(synced_count.group(1)) == synced.run.records_synced
    assert "retry-" not in run and "cancel-" not in run  # completed: nothing to do

    quality = await client.get(f"{BASE}/quality")
    hr = section(quality.text, f"q-{synced.device_id}-heart_rate")
    stored = await readings(runtime, synced.device_id, "heart_rate")
    assert f'<td class="num">{len(stored)}</td>' in hr
    assert 'data-score="1.0"' in hr and "none" in plain(hr)
    assert plain(section(quality.text, "mean-quality")) == "1.00"
    other = await client.get(f"{BASE}/quality", params={"connector": "withings"})
    assert "no-quality" in other.text


async def test_sync_now_then_retry_a_failed_run_and_cancel_an_open_one(
    client: httpx.AsyncClient, operator: Actor, oura: Vendor, runtime: Runtime
) -> None:
    synced = await synced_ring(client, operator, runtime)
    failed = await failed_run(client, operator, runtime, oura, synced.device_id)
    csrf = await console_as(client, operator)
    history = await client.get(f"{BASE}/sync", params={"status": "failed"})
    row = section(history.text, f"run-{failed.id}")
    assert "the vendor answered HTTP 503" in plain(row)
    assert f"run-{synced.run.id}" not in history.text  # filtered out

    answer = await client.post(
        f"{BASE}/sync/{failed.id}/retry", data={"csrf_token": csrf},
        headers={"HX-Request": "true"},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    after = await runs(runtime, synced.device_id)
    retry = after[-1]
    assert len(after) == 3 and (retry.retry_of, retry.status, retry.attempt) == (
        failed.id, "queued", 2)  # fmt: skip
    assert 'id="notice"' in answer.text and f'id="cancel-{retry.id}"' in answer.text
    assert f'id="run-{retry.id}"' in section(answer.text, "runs-table")

    again = await client.post(f"{BASE}/sync/{failed.id}/retry", data={"csrf_token": csrf},
                              headers={"HX-Request": "true"})  # fmt: skip
    assert again.status_code == 409 and "has a sync queued already" in again.text

    cancelled = await client.post(f"{BASE}/sync/{retry.id}/cancel", data={"csrf_token": csrf})
    assert cancelled.status_code == 303
    assert (await runs(runtime, synced.device_id))[-1].status == "cancelled"

    now = await client.post(f"{BASE}/connections/devices/{synced.device_id}/sync",
                            data={"csrf_token": csrf})  # fmt: skip
    assert now.status_code == 303
    manual = (await runs(runtime, synced.device_id))[-1]
    assert now.headers["location"] == f"{BASE}/connections?done=queued&run={manual.id}"
    shown = await client.get(now.headers["location"])
    assert "A sync of the device is queued." in plain(section(shown.text, "notice"))
    assert (manual.sync_type, manual.status, manual.requested_by) == (
        "manual", "queued", f"user:{operator.email}")  # fmt: skip
    twice = await client.post(f"{BASE}/connections/devices/{synced.device_id}/sync",
                              data={"csrf_token": csrf})  # fmt: skip
    assert twice.status_code == 303
    shown = await client.get(twice.headers["location"])
    row = plain(section(shown.text, f"device-{synced.device_id}"))
    assert "A sync of this device is queued or running already" in row
    await runtime.sync.run_once()
    types = await client.get(f"{BASE}/sync", params={"type": "manual", "status": "completed"})
    assert f"run-{manual.id}" in types.text and f"run-{failed.id}" not in types.text
    by_device = await client.get(f"{BASE}/sync/runs", params={"device": str(uuid.uuid4())})
    assert "no-runs" in by_device.text
    api = await client.get(
        "/api/v1/sync/history",
        headers=operator.headers,
        params={"sync_type": "manual", "connection_id": synced.connection_id},
    )
    assert [r["sync_id"] for r in api.json()["items"]] == [
        str(manual.id),
        str(retry.id),
        str(failed.id),
    ]  # a retry keeps the type
    other = await client.get(
        "/api/v1/sync/history",
        headers=operator.headers,
        params={"connection_id": str(uuid.uuid4())},
    )
    assert other.json()["total"] == 0


async def test_viewers_read_without_buttons_and_are_refused_changes(
    client: httpx.AsyncClient, operator: Actor, factory: Factory, oura: Vendor, runtime: Runtime
) -> None:
    synced = await synced_ring(client, operator, runtime)
    failed = await failed_run(client, operator, runtime, oura, synced.device_id)
    viewer = await factory.user("viewer")
    csrf = await console_as(client, viewer)
    for path in ("", "/connections", "/sync", "/quality"):
        page = await client.get(BASE + path)
        assert page.status_code == 200, path
        main = page.text.split('<main id="main">')[1]
        assert 'method="post"' not in main and "hx-post" not in main, path  # no actions
    history = await client.get(f"{BASE}/sync")
    assert "the vendor answered HTTP 503" in history.text and "retry-" not in history.text
    before = len(await runs(runtime, synced.device_id))
    for path in ("/oura/connect", f"/sync/{failed.id}/retry", f"/sync/{failed.id}/cancel",
                 f"/connections/devices/{synced.device_id}/sync",
                 f"/connections/{synced.connection_id}/import",
                 f"/connections/{synced.connection_id}/disconnect"):  # fmt: skip
        refused = await client.post(BASE + path, data={"csrf_token": csrf, "connector": "oura"})
        assert refused.status_code == 403, path
    assert len(await runs(runtime, synced.device_id)) == before
    forged = await client.post(f"{BASE}/sync/{failed.id}/retry", data={"csrf_token": "x"})
    assert forged.status_code == 403


async def test_admins_disconnect_and_purge(
    client: httpx.AsyncClient, operator: Actor, admin: Actor, oura: Vendor, runtime: Runtime
) -> None:
    synced = await synced_ring(client, operator, runtime)
    csrf = await console_as(client, operator)
    path = f"{BASE}/connections/{synced.connection_id}/disconnect"
    assert (await client.post(path, data={"csrf_token": csrf})).status_code == 403
    client.cookies.clear()
    csrf = await console_as(client, admin)
    card = section((await client.get(f"{BASE}/connections")).text,
                   f"connection-{synced.connection_id}")  # fmt: skip
    assert "data-confirm=" in card and f'id="purge-{synced.connection_id}"' in card
    done = await client.post(path, data={"csrf_token": csrf, "purge": "on"})
    assert done.status_code == 303 and "?done=purged&" in done.headers["location"]
    assert oura.revocations == [USER]
    assert await readings(runtime, synced.device_id, "heart_rate") == []
    shown = await client.get(done.headers["location"])
    card = section(shown.text, f"connection-{synced.connection_id}")
    assert 'data-status="revoked"' in card and f"disconnected by user:{admin.email}" in card
    said = plain(section(shown.text, "notice"))
    assert "The grant was revoked at Oura." in said
    assert f"{synced.run.records_synced:,} synced readings deleted." in said
    row = plain(section(card, f"device-{synced.device_id}"))
    assert "the connection needs authorising again" in row and "manual only" not in row
    assert f'id="reauth-{synced.connection_id}"' in card
    assert "Disconnect</button>" not in card and "Sync now" not in card


async def test_another_workspace_sees_none_of_it(
    client: httpx.AsyncClient, operator: Actor, factory: Factory, oura: Vendor, runtime: Runtime
) -> None:
    synced = await synced_ring(client, operator, runtime)
    stranger = await factory.user("admin", workspace="elsewhere")
    csrf = await console_as(client, stranger)
    assert "no-connections" in (await client.get(f"{BASE}/connections")).text
    assert "no-runs" in (await client.get(f"{BASE}/sync")).text
    assert "no-quality" in (await client.get(f"{BASE}/quality")).text
    retry = await client.post(f"{BASE}/sync/{synced.run.id}/retry", data={"csrf_token": csrf})
    assert retry.status_code == 404
    gone = await client.post(f"{BASE}/connections/{synced.connection_id}/disconnect",
                             data={"csrf_token": csrf, "purge": "on"})  # fmt: skip
    assert gone.status_code == 404
    assert len(await readings(runtime, synced.device_id, "heart_rate")) > 1000
