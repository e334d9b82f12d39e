"""Garmin from its stand-in over real HTTP: connect through Fieldwatch's OAuth
endpoints (PKCE), the first sync asks Garmin for a backfill, pushes land normalised
once, a ping is pulled (only from the configured host), deregistrations revoke, and
each workspace sees only its own."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import select

from conftest import problem
from fieldwatch.core.redact import RedactSecrets
from fieldwatch.core.settings import Settings, VendorApp
from fieldwatch.integrations.models import Connection, SyncRun
from fieldwatch.runtime import Runtime
from integration_helpers import API, connect_as, import_device
from standins.garmin import (
    OFFSET_S,
    Garmin,
    body_comp,
    daily,
    days_back,
    garmin_app,
    pulse_ox,
    push,
    respiration,
    sleep,
)
from standins.server import serve
from sync_helpers import device_sync, readings, runs, segments_of

USER = "garmin-user-1"
KIND = "garmin"
PUSH, PING = f"{API}/garmin/push", f"{API}/garmin/ping"

pytestmark = pytest.mark.usefixtures("fresh_budgets")


@pytest.fixture
async def garmin(settings: Settings) -> AsyncIterator[Garmin]:
    vendor = Garmin(users=[USER])
    async with serve(garmin_app(vendor)) as base:
        vendor.base_url = base
        settings.garmin = VendorApp(client_id=vendor.client_id,
                                    client_secret=vendor.client_secret,
                                    auth_url=base, api_url=base)  # fmt: skip
        yield vendor


async def _connected(client, actor, user: str = USER, **sync_settings: object) -> tuple[str, str]:
    """Connect ``user`` and import the account; (connection, device)."""
    connection = await connect_as(client, actor, user, KIND)
    listed = await client.get(f"{API}/{KIND}/devices", params={"connection_id": connection},
                              headers=actor.headers)  # fmt: skip
    assert listed.status_code == 200, listed.text
    (account,) = listed.json()["items"]
    assert (account["vendor_device_id"], account["title"]) == (user, "Garmin account")
    settings = {"auto_sync": False, **sync_settings}
    return connection, await import_device(client, actor, connection, user, KIND, **settings)


async def _values(client, actor, device: str, metric: str) -> list[tuple[str, float, str]]:
    answer = await client.get(f"/api/v1/devices/{device}/data", headers=actor.headers,
                              params={"data_type": metric, "limit": 500})  # fmt: skip
    assert answer.status_code == 200, answer.text
    return sorted((i["timestamp"], i["value"], i["unit"]) for i in answer.json()["items"])


async def test_connect_with_pkce_and_the_first_sync_asks_for_a_backfill(
    client, operator, garmin, runtime: Runtime
) -> None:
    started = await client.post(f"{API}/{KIND}/auth", json={}, headers=operator.headers)
    assert started.status_code == 200, started.text
    url = urlparse(started.json()["authorization_url"])
    query = parse_qs(url.query)
    assert url.path == "/oauth2Confirm" and query["code_challenge_method"] == ["S256"]
    connection, device = await _connected(client, operator, auto_sync=True,
                                          sync_historical_days=120)  # fmt: skip
    (call,) = garmin.token_calls
    assert call["grant_type"] == "authorization_code" and call["code_verifier"]
    assert call["client_secret"] == garmin.client_secret  # in the body (client_secret_post)
    async with runtime.uow() as uow:
        row = await uow.session.get(Connection, uuid.UUID(connection))
    assert row is not None and (row.status, row.external_user_id) == ("active", USER)
    got = await client.get(f"/api/v1/devices/{device}", headers=operator.headers)
    assert (got.json()["type"], got.json()["manufacturer"]) == ("garmin_wearable", "Garmin")

    before = datetime.now(UTC)
    await runtime.sync.run_once()
    (backfill,) = await runs(runtime, device)
    assert (backfill.sync_type, backfill.status) == ("backfill", "completed")
    kinds = {k for _, k, _, _ in garmin.backfills}
    assert kinds == {"dailies", "sleeps", "pulseOx", "respiration", "bodyComps"}
    assert len(garmin.backfills) == 10  # 120 days: 90 + 30 for each of the five types
    first = min(s for _, _, s, _ in garmin.backfills)
    assert abs(first - (before - timedelta(days=120)).timestamp()) < 60
    assert all(e - s <= 90 * 86_400 for _, _, s, e in garmin.backfills)
    assert (await device_sync(runtime, device)).next_sync_at is None  # pushed from now on
    await runtime.sync.run_once()
    assert len(await runs(runtime, device)) == 1  # nothing more is scheduled


async def test_a_push_lands_normalised_once(client, operator, garmin, runtime: Runtime) -> None:
    _, device = await _connected(client, operator)
    yesterday, today = days_back(3)[:2]  # "today": a day Garmin sends while it goes on
    body = push(dailies=[daily(USER, yesterday), daily(USER, today, complete=False)],
                sleeps=[sleep(USER, yesterday)], pulseox=[pulse_ox(USER, yesterday)],
                allDayRespiration=[respiration(USER, yesterday)],
                bodyComps=[body_comp(USER, yesterday)])  # fmt: skip
    answer = await client.post(PUSH, json=body)
    assert answer.status_code == 200, answer.text

    (run,) = await runs(runtime, device)
    assert (run.sync_type, run.status, run.requested_by) == ("webhook", "completed", "garmin:push")
    assert len(await readings(runtime, device, "heart_rate")) == 96 + 48
    steps = await _values(client, operator, device, "steps")
    assert [(v, u) for _, v, u in steps] == [(8000 + yesterday.toordinal() % 1000, "{steps}")]
    assert datetime.fromisoformat(steps[0][0]) == datetime.combine(
        yesterday, datetime.min.time(), UTC
    ) - timedelta(seconds=OFFSET_S)  # local midnight
    assert [(v, u) for _, v, u in await _values(client, operator, device, "distance")] == \
        [(6100.5, "m")]  # fmt: skip
    resting = await _values(client, operator, device, "resting_heart_rate")
    assert [(v, u) for _, v, u in resting] == [(54.0, "/min")]
    assert [(v, u) for _, v, u in await _values(client, operator, device, "sleep_duration")] == \
        [(420.0, "min")]  # fmt: skip
    assert [v for _, v, _ in await _values(client, operator, device, "spo2")] == [96, 95, 97]
    breaths = await _values(client, operator, device, "respiratory_rate")
    assert [v for _, v, _ in breaths] == [14.5, 14.25, 15.0]
    assert [(v, u) for _, v, u in await _values(client, operator, device, "body_weight")] == \
        [(72.35, "kg")]  # fmt: skip
    stored = 96 + 48 + 3 + 1 + 3 + 3 + 1
    assert run.records_synced == run.records_processed == stored
    assert {s.tz_offset_min for s in await segments_of(runtime, run.id)} == {60}
    history = await client.get("/api/v1/sync/history", params={"device_id": device},
                               headers=operator.headers)  # fmt: skip
    assert [i["sync_type"] for i in history.json()["items"]] == ["webhook"]

    again = await client.post(PUSH, json=body)  # Garmin sends the same again
    assert again.status_code == 200
    assert len(await runs(runtime, device)) == 1
    assert len(await readings(runtime, device, "heart_rate")) == 96 + 48

    later = await client.post(PUSH, json=push(dailies=[daily(USER, today)]))  # the day is over
    assert later.status_code == 200
    (_, second) = await runs(runtime, device)
    assert second.status == "completed"
    assert (second.records_processed, second.records_synced) == (96 + 3, 48 + 3)
    assert len(await _values(client, operator, device, "steps")) == 2


async def test_a_ping_is_pulled(client, operator, garmin, runtime: Runtime, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.handler.addFilter(RedactSecrets())  # as the server's handler writes them
    _, device = await _connected(client, operator)
    day = days_back(1)[0]
    answer = await client.post(PING, json=garmin.ping(USER, "dailies", [daily(USER, day)]))
    assert answer.status_code == 200, answer.text
    assert garmin.pulls == [(USER, "dailies")]
    (run,) = await runs(runtime, device)
    assert (run.sync_type, run.status, run.requested_by) == ("webhook", "completed", "garmin:ping")
    assert run.records_synced == 96 + 3
    assert len(await readings(runtime, device, "heart_rate")) == 96

    garmin.fail("/wellness-api/rest/sleeps", 500)
    failed = await client.post(PING, json=garmin.ping(USER, "sleeps", [sleep(USER, day)]))
    assert failed.status_code == 200
    (_, broken) = await runs(runtime, device)
    assert (broken.status, broken.error_message) == ("failed", "the pull from Garmin failed "
                                                     "(HTTP 500)")  # fmt: skip
    assert await readings(runtime, device, "sleep_duration") == []
    for token in garmin.uploads:
        assert token not in caplog.text
    for grant in garmin.grants.values():
        assert grant.access_token not in caplog.text


async def test_a_ping_to_another_host_is_refused(client, operator, garmin, runtime) -> None:
    _, device = await _connected(client, operator)
    other = Garmin(users=[USER])
    async with serve(garmin_app(other)) as foreign:  # same address, another port
        for base in (foreign, "http://169.254.169.254", garmin.base_url.replace("http:", "ftp:")):
            body = garmin.ping(USER, "dailies", [daily(USER, days_back(1)[0])], base=base)
            answer = await client.post(PING, json=body)
            assert problem(answer, 400)["detail"] == \
                "A callbackURL is not on the configured Garmin API host."  # fmt: skip
    assert other.calls == [] and garmin.pulls == []
    assert await runs(runtime, device) == []


async def test_unknown_users_and_other_apps(client, operator, garmin, runtime, caplog) -> None:
    caplog.set_level(logging.INFO)
    _, device = await _connected(client, operator)
    body = push(dailies=[daily("nobody", days_back(1)[0])])
    body["dailies"][0]["userAccessToken"] = "legacy-secret-token"
    answer = await client.post(PUSH, json=body)
    assert answer.status_code == 200
    assert "a user nobody connected" in caplog.text and "legacy-secret-token" not in caplog.text
    assert await runs(runtime, device) == []
    wrong = await client.post(PUSH, json=push(dailies=[daily(USER, days_back(1)[0])]),
                              headers={"garmin-client-id": "another-app"})  # fmt: skip
    problem(wrong, 403)
    assert await runs(runtime, device) == []


async def test_deregistration_revokes(client, operator, garmin, runtime: Runtime) -> None:
    connection, device = await _connected(client, operator)
    answer = await client.post(f"{API}/garmin/deregistration",
                               json={"deregistrations": [{"userId": USER}]})  # fmt: skip
    assert answer.status_code == 200
    async with runtime.uow() as uow:
        row = await uow.session.get(Connection, uuid.UUID(connection))
    assert row is not None and (row.status, row.credentials) == ("revoked", None)
    listed = await client.get(f"{API}/connections", headers=operator.headers)
    assert [c["status"] for c in listed.json()["items"]] == ["revoked"]
    await client.post(PUSH, json=push(dailies=[daily(USER, days_back(1)[0])]))
    assert await runs(runtime, device) == []  # a revoked connection takes nothing in


async def test_each_workspace_gets_only_its_users_data(
    client, operator, garmin, runtime: Runtime, factory
) -> None:
    garmin.users.append("garmin-user-2")
    _, ours = await _connected(client, operator)
    stranger = await factory.user("operator", workspace="elsewhere")
    _, theirs = await _connected(client, stranger, "garmin-user-2")
    day = days_back(1)[0]
    answer = await client.post(PUSH, json=push(dailies=[daily(USER, day)]))
    assert answer.status_code == 200
    assert len(await readings(runtime, ours, "heart_rate")) == 96
    assert await readings(runtime, theirs, "heart_rate") == []
    history = await client.get("/api/v1/sync/history", headers=stranger.headers)
    assert history.json()["total"] == 0
    problem(await client.get(f"/api/v1/devices/{ours}/data", headers=stranger.headers), 404)
    async with runtime.uow() as uow:
        owners = set((await uow.session.scalars(select(SyncRun.workspace_id))).all())
    assert owners == {operator.workspace_id}
