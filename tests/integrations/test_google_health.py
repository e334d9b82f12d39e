"""Google Health from its stand-in over real HTTP: connect through Fieldwatch's OAuth
endpoints (PKCE, offline access, the refresh token kept across refreshes), import the
account, backfill and incremental sync of every data type with overlap and no
duplicates, paging, 429 and 500 retried, a revoked grant, credentials sealed; the
legacy Fitbit connector refused in favour of Google Health."""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import select

from conftest import problem
from fieldwatch.core.clock import utcnow
from fieldwatch.core.settings import Settings, VendorApp
from fieldwatch.integrations.connections.tokens import TokenSource
from fieldwatch.integrations.connectors.base import endpoints
from fieldwatch.integrations.connectors.google_health import DATA_TYPES, GoogleHealthConnector
from fieldwatch.integrations.models import Connection, VendorRecord
from fieldwatch.integrations.sync.budget import BUDGETS
from fieldwatch.integrations.sync.runner import OVERLAP
from fieldwatch.runtime import Runtime
from integration_helpers import API, connect_as, import_device, refreshes
from standins.google_health import GoogleHealth, google_health_app, heart_rate, weight_g
from standins.server import serve
from standins.vendor import Grant
from sync_helpers import cursor, make_due, readings, runs, segments_of

USER = "ghu-31"
KIND = "google_health"
HR = "/v4/users/me/dataTypes/heart-rate/dataPoints"

pytestmark = pytest.mark.usefixtures("fresh_budgets")


@contextlib.asynccontextmanager
async def google_standin(settings: Settings, **kw: object) -> AsyncIterator[GoogleHealth]:
    """The stand-in, served, and Fieldwatch configured to use it (one base address for
    the consent page, the token endpoint and the API)."""
    vendor = GoogleHealth(users=[USER], **kw)  # type: ignore[arg-type]
    async with serve(google_health_app(vendor)) as base:
        settings.google_health = VendorApp(client_id=vendor.client_id,
                                           client_secret=vendor.client_secret,
                                           auth_url=base, api_url=base, token_url=base)  # fmt: skip
        yield vendor


@pytest.fixture
async def google(settings: Settings) -> AsyncIterator[GoogleHealth]:
    async with google_standin(settings) as vendor:
        yield vendor


async def _values(client, operator, device: str, metric: str) -> list[tuple[str, float, str]]:
    answer = await client.get(f"/api/v1/devices/{device}/data", headers=operator.headers,
                              params={"data_type": metric, "limit": 5000})  # fmt: skip
    assert answer.status_code == 200, answer.text
    return [(i["timestamp"], i["value"], i["unit"]) for i in answer.json()["items"]]


async def _account(client, operator, connection: str, **sync_settings: object) -> str:
    return await import_device(client, operator, connection, USER, KIND, **sync_settings)


def _filters(vendor: GoogleHealth, path: str) -> list[dict[str, str]]:
    return [{k: v[0] for k, v in parse_qs(q).items()} for p, q in vendor.calls if p == path]


def test_the_default_endpoints_are_googles_and_the_token_host_is_configurable() -> None:
    connector = GoogleHealthConnector()
    default = endpoints(connector, VendorApp())
    assert default.authorize == "https://accounts.google.com/o/oauth2/v2/auth"
    assert default.token == "https://oauth2.googleapis.com/token"
    assert default.revoke == "https://oauth2.googleapis.com/revoke"
    assert default.api == "https://health.googleapis.com"
    moved = endpoints(connector, VendorApp(api_url="http://proxy", token_url="http://tok/"))
    assert (moved.token, moved.api) == ("http://tok/token", "http://proxy")
    assert endpoints(connector, VendorApp(api_url="http://proxy")).token == "http://proxy/token"


def test_filters_follow_the_record_kind() -> None:
    start = datetime(2026, 12, 1, 10, 30, tzinfo=UTC)
    end = start + timedelta(days=1)
    assert DATA_TYPES["heart_rate"].filter(start, end) == (
        'heart_rate.sample_time.physical_time >= "2026-12-01T10:30:00Z" AND '
        'heart_rate.sample_time.physical_time < "2026-12-02T10:30:00Z"'
    )
    assert DATA_TYPES["steps"].filter(start, end).startswith('steps.interval.start_time >= "')
    assert DATA_TYPES["resting_heart_rate"].filter(start, end) == (
        'daily_resting_heart_rate.date >= "2026-12-01" AND '
        'daily_resting_heart_rate.date < "2026-12-02"'
    )


async def test_oauth_round_trip_with_pkce_and_offline_access(
    client, operator, google, runtime: Runtime, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    started = await client.post(f"{API}/{KIND}/auth", json={}, headers=operator.headers)
    assert started.status_code == 200, started.text
    query = parse_qs(urlparse(started.json()["authorization_url"]).query)
    assert (query["access_type"], query["prompt"]) == (["offline"], ["consent"])
    assert query["code_challenge_method"] == ["S256"] and query["state"][0]
    assert set(query["scope"][0].split(" ")) == set(GoogleHealthConnector.scopes)
    connection = await connect_as(client, operator, USER, KIND)
    assert google.consents[-1]["access_type"] == "offline"
    (call,) = google.token_calls
    assert call["grant_type"] == "authorization_code" and call["code_verifier"]
    assert call["client_secret"] == google.client_secret  # in the body, Google's way
    (grant,) = {id(g): g for g in google.grants.values()}.values()
    async with runtime.uow() as uow:
        row = await uow.session.get(Connection, uuid.UUID(connection))
    assert row is not None and (row.status, row.external_user_id) == ("active", USER)
    raw = row.credentials  # as stored: sealed
    assert raw is not None and raw.startswith("fw1.")
    for secret in (grant.access_token, grant.refresh_token):
        assert secret not in raw and secret not in caplog.text
    opened = json.loads(runtime.key_ring.open(raw, f"{row.workspace_id}:{row.id}:credentials"))
    assert opened["refresh_token"] == grant.refresh_token  # offline access: a refresh token
    listed = await client.get(f"{API}/{KIND}/devices", params={"connection_id": connection},
                              headers=operator.headers)  # fmt: skip
    assert listed.status_code == 200, listed.text
    assert [d["vendor_device_id"] for d in listed.json()["items"]] == [USER]
    assert "access_token" not in listed.text and grant.access_token not in listed.text
    device = await _account(client, operator, connection)
    got = await client.get(f"/api/v1/devices/{device}", headers=operator.headers)
    assert got.json()["type"] == "google_health_account"


async def test_google_keeps_the_refresh_token_across_refreshes(
    client, operator, google, runtime: Runtime
) -> None:
    cid = uuid.UUID(await connect_as(client, operator, USER, KIND))
    (grant,) = {id(g): g for g in google.grants.values()}.values()
    first_refresh = grant.refresh_token
    tokens = TokenSource(runtime.uow, runtime.settings, runtime.key_ring, owner="p1")
    seen = []
    for _ in range(2):
        async with runtime.uow() as uow:
            row = await uow.session.get(Connection, cid)
            assert row is not None
            row.token_expires_at = utcnow() - timedelta(minutes=1)
            await uow.commit()
        seen.append((await tokens.access_token(cid))["access_token"])
    assert refreshes(google) == 2 and len(set(seen)) == 2
    calls = [c for c in google.token_calls if c.get("grant_type") == "refresh_token"]
    assert [c["refresh_token"] for c in calls] == [first_refresh, first_refresh]
    assert all(token in google.grants for token in seen[-1:])


async def test_a_rotated_refresh_token_is_stored_and_used_next(
    client, operator, runtime: Runtime, settings
) -> None:
    async with google_standin(settings, rotate_refresh=True) as google:
        cid = uuid.UUID(await connect_as(client, operator, USER, KIND))
        tokens = TokenSource(runtime.uow, runtime.settings, runtime.key_ring, owner="p1")
        for _ in range(2):
            async with runtime.uow() as uow:
                row = await uow.session.get(Connection, cid)
                assert row is not None
                row.token_expires_at = utcnow() - timedelta(minutes=1)
                await uow.commit()
            await tokens.access_token(cid)
        calls = [c for c in google.token_calls if c.get("grant_type") == "refresh_token"]
        (grant,) = {id(g): g for g in google.grants.values()}.values()
    assert len(calls) == 2 and calls[0]["refresh_token"] != calls[1]["refresh_token"]
    assert calls[1]["refresh_token"] not in google.refresh  # single-use: spent
    assert grant.refresh_token in google.refresh  # the newest is the live one


async def test_backfill_then_incremental_with_overlap_and_no_duplicates(
    client, operator, google, runtime: Runtime
) -> None:
    connection = await connect_as(client, operator, USER, KIND)
    device = await _account(client, operator, connection, sync_historical_days=2)
    before = utcnow()
    await runtime.sync.run_once()
    (backfill,) = await runs(runtime, device)
    assert (backfill.sync_type, backfill.status) == ("backfill", "completed"), \
        backfill.error_message  # fmt: skip
    hr = await _values(client, operator, device, "heart_rate")
    assert 2 * 1440 - 2 <= len(hr) <= 2 * 1440 + 1
    for ts, value, unit in hr[:50]:
        assert (value, unit) == (heart_rate(USER, datetime.fromisoformat(ts)), "/min")
    weights = await _values(client, operator, device, "body_weight")
    assert 2 <= len(weights) <= 3
    for ts, value, unit in weights:
        day = datetime.fromisoformat(ts).astimezone(UTC).date()
        assert (value, unit) == (weight_g(day) / 1000, "kg")
    steps = await _values(client, operator, device, "steps")
    assert 2 * 96 - 1 <= len(steps) <= 2 * 96 + 1 and {u for *_, u in steps} == {"{steps}"}
    distance = await _values(client, operator, device, "distance")
    assert len(distance) == len(steps) and {u for *_, u in distance} == {"m"}
    assert {round(d[1] / s[1], 3) for d, s in zip(distance, steps, strict=True) if s[1]} == {0.7}
    sleep = await _values(client, operator, device, "sleep_duration")
    assert sleep and all(420 <= v < 450 and u == "min" for _, v, u in sleep)
    spo2 = await _values(client, operator, device, "spo2")
    assert spo2 and all(96 <= v <= 98 and u == "%" for _, v, u in spo2)
    resting = await _values(client, operator, device, "resting_heart_rate")
    assert len(resting) == 2 and all(58 <= v <= 61 for _, v, _u in resting)  # days over
    breathing = await _values(client, operator, device, "respiratory_rate")
    assert {(v, u) for _, v, u in breathing} == {(14.5, "/min")}
    segments = await segments_of(runtime, backfill.id)
    by_metric = {s.metric: s.tz_offset_min for s in segments}
    assert by_metric["heart_rate"] == by_metric["steps"] == 60  # the user's +01:00 kept
    assert by_metric["resting_heart_rate"] == 0  # a civil day, stamped at UTC midnight
    assert backfill.records_synced == backfill.records_processed > 2 * 1440
    async with runtime.uow() as uow:
        records = (await uow.session.scalars(select(VendorRecord))).all()
    named = {(r.metric, r.vendor_id) for r in records}
    assert {m for m, _ in named} == {"body_weight", "spo2", "sleep_duration"}
    assert any(v.startswith(f"users/{USER}/dataTypes/weight/dataPoints/") for _, v in named)

    stamps = {m: await readings(runtime, device, m) for m in ("heart_rate", "body_weight")}
    hr_cursor = await cursor(runtime, device, "heart_rate")
    assert hr_cursor is not None and hr_cursor >= before - timedelta(minutes=2)
    google.calls.clear()
    asked = await client.post(f"/api/v1/devices/{device}/sync", headers=operator.headers)
    assert asked.status_code == 202
    await runtime.sync.run_once()
    (_, incremental) = await runs(runtime, device)
    assert incremental.status == "completed", incremental.error_message
    (again,) = _filters(google, HR)  # the overlap: one page from the cursor less an hour
    low = again["filter"].split('"')[1]
    assert datetime.fromisoformat(low.replace("Z", "+00:00")) == hr_cursor - OVERLAP
    assert incremental.records_processed > 50 and incremental.records_synced < 10
    for metric, before_stamps in stamps.items():
        after = await readings(runtime, device, metric)
        assert len(after) == len(set(after))  # nothing twice
        assert after[: len(before_stamps)] == before_stamps
    async with runtime.uow() as uow:
        assert len((await uow.session.scalars(select(VendorRecord))).all()) == len(records)


async def test_paging_with_page_size_and_page_token(client, operator, runtime, settings) -> None:
    async with google_standin(settings, max_page=200) as google:
        connection = await connect_as(client, operator, USER, KIND)
        device = await _account(client, operator, connection, sync_historical_days=1)
        await runtime.sync.run_once()
        (run,) = await runs(runtime, device)
        assert run.status == "completed", run.error_message
        pages = _filters(google, HR)
    assert len(pages) == 8  # 1440 minutes (and the odd one) in pages of 200
    assert "pageToken" not in pages[0] and all(p.get("pageToken") for p in pages[1:])
    assert {p["pageSize"] for p in pages} == {"1440"}  # asked for; the vendor caps it
    assert len({p["filter"] for p in pages}) == 1  # the same query on every page
    hr = await readings(runtime, device, "heart_rate")
    assert 1439 <= len(hr) <= 1441 and len(hr) == len(set(hr))
    sleeps = [p for p, _ in google.calls if p.endswith("/sleep/dataPoints")]
    assert sleeps and all("pageSize=25" in q for p, q in google.calls if p in sleeps)


@pytest.mark.parametrize(("status", "retry_after"), [(429, 120), (500, None)])
async def test_vendor_trouble_waits_for_a_retry_that_completes(
    client, operator, google, runtime: Runtime, status, retry_after
) -> None:
    connection = await connect_as(client, operator, USER, KIND)
    device = await _account(client, operator, connection, sync_historical_days=1)
    body = {"error": {"code": status, "message": "scripted", "status": "RESOURCE_EXHAUSTED"}}
    google.fail(HR, status, retry_after=retry_after, body=body)
    await runtime.sync.run_once()
    (first, retry) = await runs(runtime, device)
    assert first.status == "failed" and first.error_details["http_status"] == status
    assert first.error_details["data_type"] == "heart_rate"
    assert (retry.status, retry.retry_of) == ("retry_wait", first.id)
    assert retry.not_before is not None and first.end_time is not None
    if retry_after:
        assert first.error_details["retry_after"] == float(retry_after)
        assert retry.not_before - first.end_time >= timedelta(seconds=retry_after)
    async with runtime.uow() as uow:
        row = await uow.session.get(Connection, uuid.UUID(connection))
    assert row is not None and row.status == "active"  # trouble, not a lost grant
    await make_due(runtime, retry.id)
    BUDGETS.reset()  # the vendor's pause is over (instead of waiting for it)
    await runtime.sync.run_once()
    (_, done) = await runs(runtime, device)
    assert done.status == "completed", done.error_message
    assert 1439 <= len(await readings(runtime, device, "heart_rate")) <= 1441


async def test_a_revoked_grant_ends_in_auth_required(client, operator, google, runtime) -> None:
    connection = await connect_as(client, operator, USER, KIND)
    device = await _account(client, operator, connection, sync_historical_days=1)
    google.revoke(USER)
    await runtime.sync.run_once()
    (run,) = await runs(runtime, device)
    assert run.status == "auth_required"
    assert refreshes(google) == 1  # the 401 forced one refresh, refused: invalid_grant
    async with runtime.uow() as uow:
        row = await uow.session.get(Connection, uuid.UUID(connection))
    assert row is not None and row.status == "auth_required" and row.credentials is None
    assert "invalid_grant" in (row.status_reason or "")
    assert not await readings(runtime, device, "heart_rate")


async def test_legacy_fitbit_is_refused_in_favour_of_google_health(client, operator) -> None:
    listed = await client.get(API, headers=operator.headers)
    by_type = {i["type"]: i for i in listed.json()["items"]}
    fitbit = by_type["fitbit"]
    assert (fitbit["lifecycle"], fitbit["connectable"], fitbit["successor"]) == (
        "sunset", False, "google_health")  # fmt: skip
    assert fitbit["support_ended"] == date(2026, 9, 30).isoformat()
    assert (fitbit["sunset"], fitbit["sunset_text"]) == ("2026-11-01", "early November 2026")
    refused = problem(await client.post(f"{API}/fitbit/auth", json={}, headers=operator.headers),
                      409)  # fmt: skip
    assert refused["successor"] == "google_health" and refused["integration"] == "fitbit"
    assert "sunset" in refused["detail"] and "google_health" in refused["detail"]
    assert by_type["google_health"]["lifecycle"] == "active"


async def test_registration_with_tokens_picks_google_health_by_device_type(
    client, operator, google, runtime: Runtime
) -> None:
    issued = google.issue(Grant(USER, " ".join(GoogleHealthConnector.scopes)))
    expires = utcnow() + timedelta(seconds=issued["expires_in"])
    body = {"device_type": "google_health_account", "device_name": "My Google Health",
            "integration_type": "api", "sync_settings": {"sync_historical_days": 1},
            "credentials": {"access_token": issued["access_token"],
                            "refresh_token": issued["refresh_token"],
                            "expires_at": expires.isoformat()}}  # fmt: skip
    answer = await client.post("/api/v1/devices", json=body, headers=operator.headers)
    assert answer.status_code == 201, answer.text
    assert answer.json()["connector"] == KIND and issued["access_token"] not in answer.text
    await runtime.sync.run_once()
    (run,) = await runs(runtime, answer.json()["device_id"])
    assert run.status == "completed", run.error_message
    assert 1439 <= len(await readings(runtime, answer.json()["device_id"], "heart_rate")) <= 1441
