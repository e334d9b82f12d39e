"""Syncs that go wrong: a page failing mid-sync, a rate limit, a revoked grant, a run
too long; what was committed stays, retries resume from the cursors."""

from __future__ import annotations

import logging
from datetime import timedelta

from conftest import problem
from fieldwatch.core.clock import utcnow
from fieldwatch.runtime import Runtime
from integration_helpers import connect_as, import_ring
from standins.oura import PAGE
from sync_helpers import count_runs, cursor, device_sync, make_due, readings, runs

USER = "oura-user-9"
HR = "/v2/usercollection/heartrate"
STANDIN_USERS = [USER]


async def _ring(client, operator, **settings: object) -> str:
    connection = await connect_as(client, operator, USER)
    return await import_ring(client, operator, connection, sync_historical_days=1, **settings)


async def test_a_page_failing_mid_sync_keeps_what_was_committed(
    client, operator, oura, runtime: Runtime
) -> None:
    device = await _ring(client, operator)
    oura.fail(HR, 500, after=2)  # the third page of heart rate fails
    await runtime.sync.run_once()
    (first, retry) = await runs(runtime, device)
    assert (first.status, first.records_synced) == ("partial", 2 * PAGE)
    assert first.error_message == "the vendor answered HTTP 500"
    assert first.error_details == {"data_type": "heart_rate", "page": 2, "error": "VendorError",
                                   "http_status": 500, "retry_after": None}  # fmt: skip
    stored = await readings(runtime, device, "heart_rate")
    assert len(stored) == 2 * PAGE and await cursor(runtime, device, "heart_rate") == stored[-1]
    assert (retry.status, retry.retry_of, retry.attempt) == ("retry_wait", first.id, 2)
    assert retry.not_before is not None and first.end_time is not None
    assert retry.not_before - first.end_time >= timedelta(seconds=60)  # the backoff's base
    sync = await device_sync(runtime, device)
    assert (sync.sync_status, sync.failures) == ("error", 1)

    await runtime.sync.run_once()  # not due yet: nothing happens
    assert (await runs(runtime, device))[1].status == "retry_wait"
    await make_due(runtime, retry.id)
    await runtime.sync.run_once()
    (_, retry) = await runs(runtime, device)
    assert retry.status == "completed"
    after = await readings(runtime, device, "heart_rate")
    assert len(after) == len(set(after)) and 24 * 60 - 1 <= len(after) <= 24 * 60 + 2
    assert after[:PAGE * 2] == stored  # fmt: skip
    # It started an hour before the cursor, not from the beginning.
    assert retry.records_processed < len(after) - 2 * PAGE + 2 * 60 + 10
    assert (await device_sync(runtime, device)).failures == 0


async def test_a_rate_limit_waits_for_retry_after(client, operator, oura, runtime) -> None:
    device = await _ring(client, operator)
    oura.fail(HR, 429, retry_after=600)
    await runtime.sync.run_once()
    (first, retry) = await runs(runtime, device)
    assert first.status == "failed" and first.error_details["http_status"] == 429
    assert retry.status == "retry_wait" and retry.not_before is not None
    assert retry.not_before - first.end_time >= timedelta(seconds=600)
    await runtime.sync.run_once()
    assert [r.status for r in await runs(runtime, device)] == ["failed", "retry_wait"]


async def test_retries_stop_at_the_maximum(client, operator, oura, runtime) -> None:
    runtime.settings.max_sync_retries = 1
    device = await _ring(client, operator)
    oura.fail(HR, 503, times=5)
    await runtime.sync.run_once()
    (_first, retry) = await runs(runtime, device)
    await make_due(runtime, retry.id)
    await runtime.sync.run_once()
    assert [(r.status, r.attempt) for r in await runs(runtime, device)] == [
        ("failed", 1), ("failed", 2)]  # fmt: skip
    manual = await client.post(f"/api/v1/sync/retry/{retry.id}", headers=operator.headers)
    assert manual.status_code == 202 and manual.json()["retry_of"] == str(retry.id)


async def test_a_revoked_grant_needs_authorising_again_without_retries(
    client, operator, oura, runtime, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    device = await _ring(client, operator)
    oura.revoke(USER)
    await runtime.sync.run_once()
    (run,) = await runs(runtime, device)
    assert run.status == "auth_required" and "authorising again" in (run.error_message or "")
    assert (await device_sync(runtime, device)).sync_status == "auth_required"
    await runtime.sync.run_once()
    assert await count_runs(runtime) == 1  # no retry loop, no new automatic run
    refused = await client.post(f"/api/v1/devices/{device}/sync", headers=operator.headers)
    assert problem(refused, 409)["connection_status"] == "auth_required"
    retry = await client.post(f"/api/v1/sync/retry/{run.id}", headers=operator.headers)
    assert problem(retry, 409)["connection_status"] == "auth_required"

    waited = await device_sync(runtime, device)
    await connect_as(client, operator, USER)  # authorised again: the same connection
    again = await device_sync(runtime, device)  # no longer waiting for it
    assert again.sync_status == "pending"
    assert waited.auto_sync  # imported with automatic sync on: its missed syncs are due at once
    assert again.next_sync_at is not None and again.next_sync_at <= utcnow()
    retry = await client.post(f"/api/v1/sync/retry/{run.id}", headers=operator.headers)
    assert retry.status_code == 202
    await runtime.sync.run_once()
    assert [r.status for r in await runs(runtime, device)] == ["auth_required", "completed"]
    assert (await device_sync(runtime, device)).sync_status == "ok"
    secrets = {*oura.grants, *oura.refresh}
    assert secrets and not any(s in caplog.text for s in secrets)


async def test_a_run_over_the_timeout_fails_as_such(client, operator, oura, runtime) -> None:
    runtime.settings.sync_timeout_s = 0.5
    device = await _ring(client, operator)
    oura.fail(HR, delay_s=3)
    await runtime.sync.run_once()
    (run, retry) = await runs(runtime, device)
    assert run.status == "failed" and (run.error_message or "").startswith("timeout")
    assert retry.status == "retry_wait"


async def test_a_token_refused_before_its_expiry_is_refreshed_once(
    client, operator, oura, runtime
) -> None:
    device = await _ring(client, operator)
    (token,) = list(oura.grants)
    oura.grants.pop(token)  # the vendor no longer takes it (the grant itself is fine)
    await runtime.sync.run_once()
    (run,) = await runs(runtime, device)
    assert run.status == "completed" and run.records_synced > 0
    assert [c["grant_type"] for c in oura.token_calls].count("refresh_token") == 1
