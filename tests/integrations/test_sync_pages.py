"""A stored page: recorded on its run only while the run is the process's (counts, a
segment, the cursor moved forward only) in one statement or transaction; the vendor's
session reusing its access token; Oura's heart-rate pages decoded fast or explained."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update

from fieldwatch.core.clock import utcnow
from fieldwatch.integrations.connectors.base import Sample, VendorError
from fieldwatch.integrations.connectors.oura import OuraConnector, _heart_rate_samples
from fieldwatch.integrations.models import SyncRun
from fieldwatch.integrations.sync.pages import store_page
from fieldwatch.integrations.sync.vendor import VendorSession
from fieldwatch.runtime import Runtime
from integration_helpers import connect_as, import_ring, refreshes
from sync_helpers import cursor, device_sync, readings, runs, segments_of

USER = "oura-pages"
STANDIN_USERS = [USER]
T0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=6)


def _minutes(start: int, count: int, value: float | None = 60.0) -> list[Sample]:
    return [Sample(T0 + timedelta(minutes=start + i), value) for i in range(count)]


async def _held_run(client, operator, runtime: Runtime, owner: str) -> tuple[str, uuid.UUID]:
    connection = await connect_as(client, operator, USER)
    device = await import_ring(client, operator, connection, auto_sync=False,
                               sync_historical_days=1)  # fmt: skip
    asked = await client.post(f"/api/v1/devices/{device}/sync", headers=operator.headers)
    run_id = uuid.UUID(asked.json()["sync_id"])
    async with runtime.uow() as uow:
        await uow.session.execute(
            update(SyncRun).where(SyncRun.id == run_id)
            .values(status="running", claimed_by=owner, start_time=utcnow(),
                    claimed_until=utcnow() + timedelta(minutes=1))
        )  # fmt: skip
        await uow.commit()
    return device, run_id


async def test_a_page_is_recorded_only_while_the_run_is_held(
    client, operator, oura, runtime: Runtime
) -> None:
    device, run_id = await _held_run(client, operator, runtime, "p1")
    sync = await device_sync(runtime, device)

    async def store(owner: str, samples: list[Sample]):
        return await store_page(runtime.uow, runtime.ingest, run_id, owner, sync,
                                "heart_rate", samples)  # fmt: skip

    page = [*_minutes(60, 10), Sample(T0 + timedelta(minutes=70), None)]
    first = await store("p1", page)
    assert (first.synced, first.held) == (10, True)
    assert await cursor(runtime, device, "heart_rate") == T0 + timedelta(minutes=70)
    # An older page (a resumed run) is stored and counted; the cursor stays where it was.
    older = await store("p1", _minutes(0, 5))
    assert (older.synced, older.held) == (5, True)
    assert await cursor(runtime, device, "heart_rate") == T0 + timedelta(minutes=70)
    # The page again: nothing stored twice, its records processed all the same.
    again = await store("p1", _minutes(0, 5))
    assert (again.synced, again.held) == (0, True)
    (run,) = await runs(runtime, device)
    assert (run.records_processed, run.records_synced, run.records_failed) == (21, 15, 1)
    segments = sorted(await segments_of(runtime, run_id), key=lambda s: (s.ts_from, s.count))
    assert [(s.count, s.ts_from, s.ts_to) for s in segments] == [
        (5, T0, T0 + timedelta(minutes=4)), (5, T0, T0 + timedelta(minutes=4)),
        (11, T0 + timedelta(minutes=60), T0 + timedelta(minutes=70)),
    ]  # fmt: skip
    assert segments[-1].quality_parts["completeness"] == round(10 / 11, 4)

    # Another process holds the run now: the readings are stored (idempotent), but
    # nothing is recorded on the run, no segment, no cursor moved.
    lost = await store("p2", _minutes(100, 3))
    assert (lost.synced, lost.held) == (3, False)
    assert await cursor(runtime, device, "heart_rate") == T0 + timedelta(minutes=70)
    (run,) = await runs(runtime, device)
    assert (run.records_processed, run.records_synced) == (21, 15)
    assert len(await segments_of(runtime, run_id)) == 3
    assert len(await readings(runtime, device, "heart_rate")) == 18


async def test_the_session_reuses_its_token_and_takes_a_newer_one_after_a_401(
    client, operator, oura, runtime: Runtime
) -> None:
    connection = uuid.UUID(await connect_as(client, operator, USER))
    tokens = runtime.sync.tokens
    used: list[str] = []

    async def call(_http: httpx.AsyncClient, token: str) -> str:
        used.append(token)
        if token not in oura.grants:
            raise VendorError(401)
        return token

    async with VendorSession(tokens, runtime.settings, OuraConnector(), connection) as vendor:
        first = await vendor.call(call)
        assert await vendor.call(call) == first  # read once, used again
        # Another process refreshes and the vendor stops taking the old token.
        await tokens.invalidate(connection)
        newer = str((await tokens.access_token(connection))["access_token"])
        oura.grants.pop(first, None)
        assert refreshes(oura) == 1 and first not in oura.grants
        assert await vendor.call(call) == newer != first
    assert used == [first, first, first, newer]
    assert refreshes(oura) == 1  # the stored newer token was taken, no refresh of its own


def _answer(body: str) -> httpx.Response:
    return httpx.Response(200, content=body.encode())


def test_a_heart_rate_page_is_decoded_with_its_offsets() -> None:
    page = _heart_rate_samples(_answer(
        '{"data": [{"bpm": 61, "source": "awake", "timestamp": "2026-11-30T08:00:00+02:00"},'
        ' {"bpm": 62.5, "timestamp": "2026-11-30T06:01:00Z"}], "next_token": "t2"}'
    ))  # fmt: skip
    assert page.next_token == "t2"
    assert [(s.ts, s.value) for s in page.samples] == [
        (datetime(2026, 11, 30, 6, 0, tzinfo=UTC), 61.0),
        (datetime(2026, 11, 30, 6, 1, tzinfo=UTC), 62.5),
    ]
    assert page.samples[0].ts.utcoffset() == timedelta(hours=2)


def test_an_unusual_heart_rate_page_takes_the_general_path() -> None:
    page = _heart_rate_samples(_answer(
        '{"data": [{"bpm": "high", "timestamp": "2026-11-30T08:00:00+02:00"},'
        ' {"bpm": true, "timestamp": "2026-11-30T08:01:00+02:00"}]}'
    ))  # fmt: skip
    assert [s.value for s in page.samples] == [None, None]  # no value: rejected later
    with pytest.raises(VendorError) as naive:
        _heart_rate_samples(_answer('{"data": [{"bpm": 60, "timestamp": "2026-11-30T08:00:00"}]}'))
    assert naive.value.status == 502
    with pytest.raises(VendorError) as refused:
        _heart_rate_samples(httpx.Response(429, headers={"retry-after": "7"}, content=b"{}"))
    assert (refused.value.status, refused.value.retry_after) == (429, 7.0)
