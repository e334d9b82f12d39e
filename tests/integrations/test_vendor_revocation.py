"""Ending grants at the vendor and permissions withdrawn there, against the stand-ins
over real HTTP: disconnecting a Garmin connection deletes the user's registration at
Garmin (once more with a refreshed token when the access token has expired), a Google
Health one is revoked at Google's revocation endpoint; Garmin's userPermissionsChange
narrows the consent, so pushes, pings and backfills of what was withdrawn stop, and an
admin cannot share it again until the permission is granted again at Garmin."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest

from conftest import problem
from fieldwatch.core.settings import Settings
from fieldwatch.integrations.models import Connection
from fieldwatch.runtime import Runtime
from integration_helpers import (
    API,
    connect_as,
    garmin_standin,
    google_health_standin,
    import_device,
)
from standins.garmin import Garmin, daily, days_back, permissions_change, push, sleep
from standins.google_health import GoogleHealth
from sync_helpers import readings, runs

GARMIN_USER = "garmin-revoke-1"
GOOGLE_USER = "ghu-revoke-1"
PUSH, PING = f"{API}/garmin/push", f"{API}/garmin/ping"
PERMS = f"{API}/garmin/permissions"

pytestmark = pytest.mark.usefixtures("fresh_budgets")


@pytest.fixture
async def garmin(settings: Settings) -> AsyncIterator[Garmin]:
    async with garmin_standin(settings, users=[GARMIN_USER]) as vendor:
        yield vendor


@pytest.fixture
async def google(settings: Settings) -> AsyncIterator[GoogleHealth]:
    async with google_health_standin(settings, users=[GOOGLE_USER]) as vendor:
        yield vendor


async def _garmin(client, actor, **sync_settings: object) -> tuple[str, str]:
    connection = await connect_as(client, actor, GARMIN_USER, "garmin")
    settings = {"auto_sync": False, **sync_settings}
    device = await import_device(client, actor, connection, GARMIN_USER, "garmin", **settings)
    return connection, device


async def _row(runtime: Runtime, connection: str) -> Connection:
    async with runtime.uow() as uow:
        row = await uow.session.get(Connection, uuid.UUID(connection))
    assert row is not None
    return row


async def test_disconnecting_garmin_deletes_the_registration(
    client, admin, garmin, runtime: Runtime
) -> None:
    connection, device = await _garmin(client, admin)
    gone = await client.delete(f"{API}/connections/{connection}", headers=admin.headers)
    assert gone.status_code == 200, gone.text
    assert (gone.json()["status"], gone.json()["revoked_at_vendor"]) == ("revoked", True)
    assert garmin.revocations == [GARMIN_USER]
    assert all(g.revoked for g in garmin.grants.values())
    row = await _row(runtime, connection)
    assert (row.status, row.credentials) == ("revoked", None)
    await client.post(PUSH, json=push(dailies=[daily(GARMIN_USER, days_back(1)[0])]))
    assert await runs(runtime, device) == []


async def test_an_expired_garmin_token_is_refreshed_to_deregister(
    client, admin, garmin, runtime: Runtime
) -> None:
    connection, _ = await _garmin(client, admin)
    for grant in garmin.grants.values():
        grant.expires_at = time.time() - 1  # the access token Fieldwatch holds is stale
    gone = await client.delete(f"{API}/connections/{connection}", headers=admin.headers)
    assert gone.json()["revoked_at_vendor"] is True, gone.text
    assert garmin.revocations == [GARMIN_USER]
    assert [c["grant_type"] for c in garmin.token_calls] == ["authorization_code",
                                                             "refresh_token"]  # fmt: skip


async def test_garmin_unreachable_still_disconnects_here(
    client, admin, garmin, runtime: Runtime
) -> None:
    connection, _ = await _garmin(client, admin)
    garmin.fail("/wellness-api/rest/user/registration", 503)
    gone = await client.delete(f"{API}/connections/{connection}", headers=admin.headers)
    assert (gone.json()["status"], gone.json()["revoked_at_vendor"]) == ("revoked", False)
    assert garmin.revocations == []
    assert (await _row(runtime, connection)).credentials is None


async def test_disconnecting_google_health_revokes_at_google(
    client, admin, google, runtime: Runtime
) -> None:
    connection = await connect_as(client, admin, GOOGLE_USER, "google_health")
    gone = await client.delete(f"{API}/connections/{connection}", headers=admin.headers)
    assert (gone.json()["status"], gone.json()["revoked_at_vendor"]) == ("revoked", True)
    assert google.revocations == [GOOGLE_USER]
    assert all(g.revoked for g in google.refresh.values())  # the refresh token is dead
    refresh = [c for c in google.token_calls if c.get("grant_type") == "refresh_token"]
    assert refresh == []


async def test_withdrawn_permissions_narrow_the_consent_and_stop_the_data(
    client, admin, garmin, runtime: Runtime
) -> None:
    connection, device = await _garmin(client, admin)
    day = days_back(1)[0]
    answer = await client.post(PERMS, json=permissions_change(GARMIN_USER, ["ACTIVITY_EXPORT"]))
    assert answer.status_code == 200, answer.text
    row = await _row(runtime, connection)
    assert (row.scopes, row.consent) == (["ACTIVITY_EXPORT"], [])
    consent = await client.get(f"{API}/connections/{connection}/consent", headers=admin.headers)
    assert consent.json()["data_types"] == []

    await client.post(PUSH, json=push(dailies=[daily(GARMIN_USER, day)]))
    pinged = await client.post(PING, json=garmin.ping(GARMIN_USER, "sleeps",
                                                      [sleep(GARMIN_USER, day)]))  # fmt: skip
    assert pinged.status_code == 200
    assert garmin.pulls == []  # not pulled: nothing of it may be stored
    assert await readings(runtime, device, "heart_rate") == []
    assert all(r.records_synced == 0 for r in await runs(runtime, device))

    url = f"{API}/connections/{connection}/consent"
    refused = await client.put(url, json={"data_types": ["heart_rate"]}, headers=admin.headers)
    assert "withdrew heart_rate at Garmin" in problem(refused, 422)["detail"]

    regranted = permissions_change(GARMIN_USER, ["ACTIVITY_EXPORT", "HEALTH_EXPORT"])
    assert (await client.post(PERMS, json=regranted)).status_code == 200
    assert (await _row(runtime, connection)).consent == []  # an admin shares it again
    given = await client.put(url, json={"data_types": ["heart_rate", "sleep_duration"]},
                             headers=admin.headers)  # fmt: skip
    assert given.status_code == 200, given.text
    await client.post(PUSH, json=push(dailies=[daily(GARMIN_USER, day)]))
    assert len(await readings(runtime, device, "heart_rate")) == 96
    assert await readings(runtime, device, "steps") == []  # not consented


async def test_a_backfill_asks_only_for_consented_summaries(
    client, admin, garmin, runtime: Runtime
) -> None:
    connection = await connect_as(client, admin, GARMIN_USER, "garmin")
    url = f"{API}/connections/{connection}/consent"
    given = await client.put(url, json={"data_types": ["sleep_duration", "body_weight"]},
                             headers=admin.headers)  # fmt: skip
    assert given.status_code == 200, given.text
    await import_device(client, admin, connection, GARMIN_USER, "garmin", auto_sync=True,
                        sync_historical_days=10)  # fmt: skip
    await runtime.sync.run_once()
    assert sorted(k for _, k, _, _ in garmin.backfills) == ["bodyComps", "sleeps"]


async def test_a_permissions_change_for_another_app_or_a_bad_body(client, garmin) -> None:
    wrong = await client.post(PERMS, json=permissions_change(GARMIN_USER, []),
                              headers={"garmin-client-id": "another-app"})  # fmt: skip
    problem(wrong, 403)
    bad = {"userPermissionsChange": [{"userId": GARMIN_USER, "permissions": "HEALTH_EXPORT"}]}
    problem(await client.post(PERMS, json=bad), 400)
    nobody = await client.post(PERMS, json=permissions_change("nobody", []))
    assert nobody.status_code == 200
