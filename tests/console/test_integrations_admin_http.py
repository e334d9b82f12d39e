"""The console's integrations pages for admins over HTTP, with a real sync against the
Oura stand-in: the consent form on the connections page (htmx answers the form as
saved; a plain form is redirected; a data type the connector does not share is
refused), the access log with its device and actor filters and paging, the
subscriptions page; operators and viewers get none of it."""

from __future__ import annotations

import re
import uuid

import httpx
from sqlalchemy import func, select

from conftest import Actor, Factory
from console_sync_helpers import BASE, console_as, oura, synced_ring
from fieldwatch.core.settings import Settings
from fieldwatch.integrations.models import Connection, HealthAccess
from fieldwatch.runtime import Runtime
from standins.vendor import Vendor

__all__ = ["oura"]  # the fixture

HTMX = {"hx-request": "true"}


def checked(text: str, connection: str) -> list[str]:
    form = text[text.index(f'id="consent-{connection}"') :]
    form = form[: form.index("</form>")]
    return re.findall(r'value="(\w+)" id="consent-[^"]+"[^>]*\bchecked', form)


async def test_an_admin_edits_the_consent(
    client: httpx.AsyncClient, admin: Actor, oura: Vendor, runtime: Runtime
) -> None:
    synced = await synced_ring(client, admin, runtime)
    csrf = await console_as(client, admin)
    page = await client.get(f"{BASE}/connections")
    assert checked(page.text, synced.connection_id) == ["heart_rate", "steps"]
    url = f"{BASE}/connections/{synced.connection_id}/consent"
    saved = await client.post(url, data={"csrf_token": csrf, "data_types": ["steps"]},
                              headers=HTMX)  # fmt: skip
    assert saved.status_code == 200, saved.text
    assert "Consent saved: steps." in saved.text
    assert checked(saved.text, synced.connection_id) == ["steps"]
    async with runtime.uow() as uow:
        row = await uow.session.get(Connection, uuid.UUID(synced.connection_id))
    assert row is not None and row.consent == ["steps"]
    api = await client.get(f"/api/v1/integrations/connections/{synced.connection_id}/consent",
                           headers=admin.headers)  # fmt: skip
    assert api.json()["data_types"] == ["steps"]

    plain = await client.post(url, data={"csrf_token": csrf})  # nothing shared, no htmx
    assert plain.status_code == 303
    assert plain.headers["location"].startswith(f"{BASE}/connections?done=consent")
    again = await client.get(plain.headers["location"])
    assert "The consent is saved" in again.text
    assert checked(again.text, synced.connection_id) == []

    bad = await client.post(url, data={"csrf_token": csrf, "data_types": ["blood_glucose"]},
                            headers=HTMX)  # fmt: skip
    assert bad.status_code == 422 and "shares no blood_glucose" in bad.text
    unsynced = await client.post(url, data={"csrf_token": csrf, "data_types": ["spo2"]},
                                 headers=HTMX)  # fmt: skip
    assert unsynced.status_code == 422 and "shares no spo2" in unsynced.text
    forged = await client.post(url, data={"data_types": ["steps"]}, headers=HTMX)
    assert forged.status_code == 403


async def test_the_access_log_filters_and_pages(
    client: httpx.AsyncClient, admin: Actor, factory: Factory, oura: Vendor, runtime: Runtime
) -> None:
    synced = await synced_ring(client, admin, runtime)
    analyst = await factory.user("viewer", email="analyst@example.com")
    for _ in range(3):
        await client.get(f"/api/v1/devices/{synced.device_id}/data", headers=admin.headers,
                         params={"data_type": "heart_rate", "limit": 1})  # fmt: skip
    for _ in range(52):
        await client.get(f"/api/v1/devices/{synced.device_id}/data/latest",
                         headers=analyst.headers)  # fmt: skip
    async with runtime.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(HealthAccess)) == 55
    await console_as(client, admin)
    page = await client.get(f"{BASE}/access-log")
    assert page.status_code == 200
    assert "55 entries, newest first (showing 1–50)" in page.text
    assert page.text.count('data-action="read"') == 50
    assert 'rel="next"' in page.text and 'href="/console/integrations/access-log?offset=50"' \
        in page.text  # fmt: skip
    second = await client.get(f"{BASE}/access-log", params={"offset": "50"})
    assert "(showing 51–55)" in second.text
    mine = await client.get(f"{BASE}/access-log", params={"actor": admin.email.upper()})
    assert "3 entries" in mine.text and "analyst@example.com" not in mine.text
    theirs = await client.get(f"{BASE}/access-log",
                              params={"actor": "analyst", "device": synced.device_id})  # fmt: skip
    assert "52 entries" in theirs.text
    paged = re.search(r'href="([^"]*offset=50)"', theirs.text)
    assert paged and "actor=analyst" in paged.group(1) and synced.device_id in paged.group(1)
    none = await client.get(f"{BASE}/access-log", params={"actor": "%_nobody"})
    assert 'id="no-entries"' in none.text
    api = await client.get("/api/v1/integrations/access-log", params={"actor": "analyst"},
                           headers=admin.headers)  # fmt: skip
    assert api.json()["total"] == 52


async def test_the_subscriptions_page_and_who_sees_these_pages(
    client: httpx.AsyncClient, admin: Actor, factory: Factory, oura: Vendor, runtime: Runtime,
    settings: Settings,
) -> None:  # fmt: skip
    settings.vendor_webhooks = True
    settings.public_url = "http://fieldwatch.test"
    oura.callback = client  # type: ignore[attr-defined]
    await synced_ring(client, admin, runtime)  # its engine run made the subscriptions
    await console_as(client, admin)
    page = await client.get(f"{BASE}/subscriptions")
    assert page.status_code == 200
    assert "6 subscriptions" in page.text and page.text.count('data-renewal="scheduled"') == 6
    assert "create:heartrate" in page.text and 'id="webhooks-off"' not in page.text
    tabs = await client.get(f"{BASE}/connections")
    assert 'href="/console/integrations/access-log"' in tabs.text

    for role in ("operator", "viewer"):
        client.cookies.clear()
        other = await factory.user(role)
        await console_as(client, other)
        assert 'href="/console/integrations/access-log"' not in (await client.get(BASE)).text
        for path in ("subscriptions", "access-log"):
            assert (await client.get(f"{BASE}/{path}")).status_code == 403
        listed = await client.get(f"{BASE}/connections")
        assert 'class="consent-form"' not in listed.text
