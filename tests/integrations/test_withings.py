"""Withings from its stand-in over real HTTP: connect through Fieldwatch's OAuth
endpoints (errors in 200 bodies, rotating refresh tokens), import the scale and the
blood-pressure monitor, backfill and incremental sync with the units right, a revoked
grant, a 601, a refresh raced by two processes."""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select

from fieldwatch.core.clock import utcnow
from fieldwatch.core.settings import Settings
from fieldwatch.integrations.connections.tokens import RefreshFailed, TokenSource
from fieldwatch.integrations.connectors.withings import WithingsConnector
from fieldwatch.integrations.models import Connection
from fieldwatch.integrations.sync.runner import _fetch
from fieldwatch.integrations.sync.vendor import VendorSession
from fieldwatch.runtime import Runtime
from integration_helpers import API, connect_as, days_ahead, import_device, refreshes
from standins.vendor import Grant
from standins.withings import PAGE, ZONE, weight_g
from sync_helpers import cursor, device_sync, readings, runs, segments_of

USER = "4242"
KIND = "withings"
STANDIN_USERS = [USER]

pytestmark = pytest.mark.usefixtures("fresh_budgets")


async def _values(client, operator, device: str, metric: str) -> list[tuple[str, float, str]]:
    answer = await client.get(f"/api/v1/devices/{device}/data", headers=operator.headers,
                              params={"data_type": metric, "limit": 500})  # fmt: skip
    assert answer.status_code == 200, answer.text
    return [(i["timestamp"], i["value"], i["unit"]) for i in answer.json()["items"]]


async def test_connect_import_backfill_and_incremental(
    client, operator, withings, runtime: Runtime, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    started = await client.post(f"{API}/{KIND}/auth", json={}, headers=operator.headers)
    assert "scope=user.info%2Cuser.metrics%2Cuser.activity" in started.json()["authorization_url"]
    connection = await connect_as(client, operator, USER, KIND)
    async with runtime.uow() as uow:
        row = await uow.session.get(Connection, uuid.UUID(connection))
    assert row is not None and row.scopes == ["user.info", "user.metrics", "user.activity"]
    (call,) = withings.token_calls
    assert (call["action"], call["grant_type"]) == ("requesttoken", "authorization_code")
    listed = await client.get(f"{API}/{KIND}/devices", params={"connection_id": connection},
                              headers=operator.headers)  # fmt: skip
    assert listed.status_code == 200, listed.text
    assert "access_token" not in listed.text and "refresh_token" not in listed.text
    vendor_ids = {d["vendor_device_id"] for d in listed.json()["items"]}
    assert vendor_ids == {f"scale-{USER}", f"bpm-{USER}"}
    device = await import_device(client, operator, connection, f"scale-{USER}", KIND,
                                 sync_historical_days=3)  # fmt: skip
    got = await client.get(f"/api/v1/devices/{device}", headers=operator.headers)
    assert (got.json()["type"], got.json()["manufacturer"]) == ("withings_scale", "Withings")

    await runtime.sync.run_once()
    (backfill,) = await runs(runtime, device)
    assert backfill.status == "completed", backfill.error_message
    weights = await _values(client, operator, device, "body_weight")
    assert 3 <= len(weights) <= 4  # a weigh-in a day, three days back
    for ts, value, unit in weights:
        day = datetime.fromisoformat(ts).astimezone(UTC).date()
        assert (value, unit) == (weight_g(USER, day) / 1000, "kg")
    systolic = await _values(client, operator, device, "systolic_bp")
    assert systolic and all(u == "mm[Hg]" and 120 <= v <= 126 for _, v, u in systolic)
    spo2 = await _values(client, operator, device, "spo2")
    assert spo2 and {(v, u) for _, v, u in spo2} == {(97.5, "%")}
    temps = await _values(client, operator, device, "body_temperature")
    assert {(v, u) for _, v, u in temps} == {(36.65, "Cel")}
    step_days = await _values(client, operator, device, "steps")
    # the three days that are over (Paris time; late in a UTC day, one more is over there)
    assert len(step_days) == 3 + days_ahead(ZoneInfo(ZONE))
    segments = await segments_of(runtime, backfill.id)
    assert {s.tz_offset_min for s in segments} == {60}  # Paris in December
    assert backfill.records_synced == backfill.records_processed > 0

    before = {m: await readings(runtime, device, m) for m in ("body_weight", "steps")}
    asked = await client.post(f"/api/v1/devices/{device}/sync", headers=operator.headers)
    assert asked.status_code == 202
    await runtime.sync.run_once()
    (_, incremental) = await runs(runtime, device)
    assert incremental.status == "completed"
    for metric, stamps in before.items():
        after = await readings(runtime, device, metric)
        assert after == stamps and len(after) == len(set(after))  # nothing twice
    assert await cursor(runtime, device, "body_weight") == before["body_weight"][-1]
    text = caplog.text
    for grant in withings.grants.values():
        assert grant.access_token not in text and grant.refresh_token not in text


async def test_values_are_value_times_ten_to_the_unit(
    client, operator, withings, runtime: Runtime
) -> None:
    connection = await connect_as(client, operator, USER, KIND)
    day = next(d for d in (date(2026, 11, 1) + timedelta(days=i) for i in range(5))
               if weight_g(USER, d) == 72500)  # fmt: skip
    start = datetime.combine(day, time(), ZoneInfo(ZONE))
    tokens = TokenSource(runtime.uow, runtime.settings, runtime.key_ring, owner="p1")
    connector = WithingsConnector()
    async with VendorSession(tokens, runtime.settings, connector, uuid.UUID(connection)) as v:
        page = await v.call(functools.partial(_fetch, connector, "body_weight", start,
                                              start + timedelta(days=1), None))  # fmt: skip
    (sample,) = page.samples
    assert sample.value == 72.5 and page.next_token is None  # 72500 × 10^-3 kg
    assert sample.ts.isoformat() == f"{day.isoformat()}T07:30:00+01:00"  # Paris time kept
    assert sample.vendor_id == str(day.toordinal() * 10 + 1)  # the group's grpid
    raw = [q for p, q in withings.calls if p == "/measure"]
    assert len(raw) == 1


async def test_paging_with_offset_and_more(client, operator, withings, runtime) -> None:
    connection = await connect_as(client, operator, USER, KIND)
    device = await import_device(client, operator, connection, f"bpm-{USER}", KIND,
                                 sync_historical_days=25)  # fmt: skip
    await runtime.sync.run_once()
    (run,) = await runs(runtime, device)
    assert run.status == "completed", run.error_message
    pages = [q for p, q in withings.calls if p == "/measure"]
    assert len(pages) > 6  # several metrics, the longer ones in more than one page
    assert 25 <= len(await readings(runtime, device, "systolic_bp")) <= 26 > PAGE
    got = await client.get(f"/api/v1/devices/{device}", headers=operator.headers)
    assert got.json()["type"] == "withings_blood_pressure_monitor"


async def test_a_revoked_grant_ends_in_auth_required(client, operator, withings, runtime) -> None:
    connection = await connect_as(client, operator, USER, KIND)
    device = await import_device(client, operator, connection, f"scale-{USER}", KIND,
                                 sync_historical_days=1)  # fmt: skip
    withings.revoke(USER)
    await runtime.sync.run_once()
    (run,) = await runs(runtime, device)
    assert run.status == "auth_required"
    assert refreshes(withings) == 1  # the 200-body 401 forced one refresh, refused
    async with runtime.uow() as uow:
        row = await uow.session.get(Connection, uuid.UUID(connection))
    assert row is not None and row.status == "auth_required" and row.credentials is None
    assert "invalid_grant" in (row.status_reason or "")


async def test_a_601_waits_for_a_retry(client, operator, withings, runtime) -> None:
    connection = await connect_as(client, operator, USER, KIND)
    device = await import_device(client, operator, connection, f"scale-{USER}", KIND,
                                 sync_historical_days=1)  # fmt: skip
    withings.fail("/measure", 200, body={"status": 601, "error": "Too many requests"})
    await runtime.sync.run_once()
    (first, retry) = await runs(runtime, device)
    assert first.status == "failed" and first.error_details["http_status"] == 429
    assert first.error_details["retry_after"] == 60.0
    assert (retry.status, retry.retry_of) == ("retry_wait", first.id)
    assert retry.not_before is not None and first.end_time is not None
    assert retry.not_before - first.end_time >= timedelta(seconds=60)
    async with runtime.uow() as uow:
        row = await uow.session.scalar(select(Connection))
    assert row is not None and row.status == "active"
    sync = await device_sync(runtime, device)
    assert sync.sync_status == "error"


async def test_token_rotation_raced_by_two_processes(client, operator, withings, runtime) -> None:
    cid = uuid.UUID(await connect_as(client, operator, USER, KIND))
    first = withings.token_calls[-1]
    assert first["grant_type"] == "authorization_code"
    async with runtime.uow() as uow:
        row = await uow.session.get(Connection, cid)
        assert row is not None and row.token_expires_at is not None
        left = row.token_expires_at - utcnow()
        assert timedelta(hours=2, minutes=58) < left <= timedelta(hours=3)  # 3 h tokens
        row.token_expires_at = utcnow() - timedelta(minutes=1)
        await uow.commit()
    (grant,) = {id(g): g for g in withings.grants.values()}.values()
    old_refresh = grant.refresh_token
    one, two = (TokenSource(runtime.uow, runtime.settings, runtime.key_ring, owner=o)
                for o in ("process-1", "process-2"))  # fmt: skip
    tokens = await asyncio.gather(*(s.access_token(cid) for s in (one, two, one, two)))
    assert refreshes(withings) == 1 and len({t["access_token"] for t in tokens}) == 1
    (call,) = [c for c in withings.token_calls if c.get("grant_type") == "refresh_token"]
    assert (call["action"], call["refresh_token"]) == ("requesttoken", old_refresh)
    assert tokens[0]["refresh_token"] != old_refresh  # rotated, and stored
    assert old_refresh in withings.old_refresh  # the old one has its 8 h of grace


@pytest.mark.parametrize("status", [601, 2555, 522])
async def test_a_refresh_refused_for_now_keeps_the_grant(
    client, operator, withings, runtime, status
) -> None:
    cid = uuid.UUID(await connect_as(client, operator, USER, KIND))
    async with runtime.uow() as uow:
        row = await uow.session.get(Connection, cid)
        assert row is not None
        row.token_expires_at = utcnow() - timedelta(minutes=1)
        await uow.commit()
    withings.fail("/v2/oauth2", 200, body={"status": status, "error": "scripted"})
    tokens = TokenSource(runtime.uow, runtime.settings, runtime.key_ring, owner="p1")
    with pytest.raises(RefreshFailed):
        await tokens.access_token(cid)
    async with runtime.uow() as uow:
        row = await uow.session.get(Connection, cid)
    assert row is not None and (row.status, row.refreshing_by) == ("active", None)
    token = await tokens.access_token(cid)  # the next try succeeds
    assert token["access_token"] in withings.grants


async def test_the_standin_keeps_an_old_refresh_token_until_the_new_access_token_is_used(
    withings, settings: Settings
) -> None:
    grant = Grant(USER, "user.metrics")
    withings.issue(grant)
    old = grant.refresh_token
    base = str(settings.withings.api_url)
    form = {"action": "requesttoken", "grant_type": "refresh_token", "refresh_token": old,
            "client_id": withings.client_id, "client_secret": withings.client_secret}  # fmt: skip
    async with httpx.AsyncClient(base_url=base) as http:
        first = (await http.post("/v2/oauth2", data=form)).json()
        again = (await http.post("/v2/oauth2", data=form)).json()  # within the 8 h
        assert first["status"] == again["status"] == 0
        assert first["body"]["expires_in"] == 10800
        new = again["body"]["access_token"]
        used = await http.post("/measure", data={"action": "getmeas"},
                               headers={"Authorization": f"Bearer {new}"})  # fmt: skip
        assert used.json()["status"] == 0
        dead = (await http.post("/v2/oauth2", data=form)).json()
    assert (dead["status"], dead["error"]) == (503, "Invalid Params: invalid refresh_token")
