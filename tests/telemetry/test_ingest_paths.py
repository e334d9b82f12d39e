"""The writer's two ways in agree: in-order uploads take the fast path (plain COPY on
PostgreSQL), anything that may repeat stored readings the careful one, and a wrong
"fresh" hint is caught by the primary key without losing or doubling anything."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from conftest import Actor
from fieldwatch.telemetry.ingest.store import PostgresReadingStore
from fieldwatch.telemetry.models import Rollup1h, Rollup1m, Series
from telemetry_helpers import device_with_token, iso, recent


def body(points: list[tuple[datetime, float]], unit: str | None = "celsius") -> dict:
    return {
        "data_type": "temperature",
        "values": [{"timestamp": iso(ts), "value": v, "unit": unit} for ts, v in points],
    }


def minute(ts: datetime) -> datetime:
    return ts.replace(second=0, microsecond=0)


async def rollups(runtime, model) -> dict[datetime, tuple[int, float, float, float]]:
    async with runtime.uow() as uow:
        rows = await uow.session.execute(select(model.bucket, model.count, model.sum, model.min,
                                                model.max))  # fmt: skip
        return {b: (c, s, lo, hi) for b, c, s, lo, hi in rows.tuples()}


def expected(points: list[tuple[datetime, float]], floor) -> dict:
    out: dict[datetime, list[float]] = {}
    for ts, v in points:
        out.setdefault(floor(ts), []).append(v)
    return {b: (len(vs), sum(vs), min(vs), max(vs)) for b, vs in out.items()}


def paths(runtime) -> tuple[int, int] | None:
    store = runtime.telemetry.store
    if isinstance(store, PostgresReadingStore):
        return store.fast_writes, store.careful_writes
    return None


async def test_in_order_uploads_and_retries_keep_rollups_and_latest_exact(
    client, operator: Actor, runtime, backend
):
    device, token = await device_with_token(client, operator)
    url = f"/api/v1/devices/{device['id']}/data"
    start = minute(recent(3600))
    points = [(start + timedelta(seconds=7 * i), float(i % 13) - 4.5) for i in range(400)]
    first, second, third = points[:100], points[100:250], points[250:]
    for part in (first, second, third):  # in time order: the first makes the series
        r = await client.post(url, json=body(part), headers=token)
        assert r.json() == {"accepted": len(part), "duplicates": 0, "rejected": []}
    if backend.name == "postgres":
        assert paths(runtime) == (3, 0)  # all three are newer than what is stored
    # A retry of the middle upload, and one that overlaps the newest readings.
    again = await client.post(url, json=body(second), headers=token)
    assert again.json() == {"accepted": 0, "duplicates": 150, "rejected": []}
    later = [(points[-1][0] + timedelta(seconds=5), 99.0)]
    overlap = await client.post(url, json=body(third[-10:] + later), headers=token)
    assert overlap.json() == {"accepted": 1, "duplicates": 10, "rejected": []}
    if backend.name == "postgres":
        assert paths(runtime) == (3, 2)  # both may repeat stored readings
    stored = points + later
    assert await rollups(runtime, Rollup1m) == expected(stored, minute)
    hour = lambda ts: ts.replace(minute=0, second=0, microsecond=0)  # noqa: E731
    assert await rollups(runtime, Rollup1h) == expected(stored, hour)
    async with runtime.uow() as uow:
        series = (await uow.session.scalars(select(Series))).one()
    assert (series.last_ts, series.last_value) == (later[0][0], 99.0)
    latest = await client.get(f"/api/v1/devices/{device['id']}/data/latest",
                              headers=operator.headers)  # fmt: skip
    metrics = latest.json()["metrics"]
    assert list(metrics) == ["temperature"] and metrics["temperature"]["value"] == 99.0


async def test_a_wrong_fresh_hint_is_caught_by_the_primary_key(
    client, operator: Actor, runtime, backend
):
    """Another process stored these readings: this one still believes the series ends
    earlier, tries the fast path, and the database refuses the COPY whole."""
    device, token = await device_with_token(client, operator)
    url = f"/api/v1/devices/{device['id']}/data"
    start = minute(recent(600))
    points = [(start + timedelta(seconds=i), float(i)) for i in range(120)]
    await client.post(url, json=body(points[:10]), headers=token)
    r = await client.post(url, json=body(points[10:]), headers=token)
    assert r.json()["accepted"] == 110
    (info,) = runtime.telemetry.series.values()
    info.newest = points[9][0]  # as if the last upload had been written by someone else
    before = paths(runtime)
    newer = (points[-1][0] + timedelta(seconds=1), 7.0)
    retry = await client.post(url, json=body([*points[60:], newer]), headers=token)
    assert retry.json() == {"accepted": 1, "duplicates": 60, "rejected": []}
    if backend.name == "postgres":
        assert before is not None
        assert paths(runtime) == (before[0], before[1] + 1)  # fast refused, careful ran
    stored = [*points, newer]
    assert await rollups(runtime, Rollup1m) == expected(stored, minute)
    page = await client.get(url, params={"limit": 1000}, headers=operator.headers)
    assert len(page.json()["items"]) == 121


async def test_concurrent_overlapping_uploads_store_each_reading_once(
    client, operator: Actor, runtime
):
    """Requests that land in one group-commit batch and repeat each other's readings."""
    device, token = await device_with_token(client, operator)
    url = f"/api/v1/devices/{device['id']}/data"
    start = minute(recent(900))
    await client.post(url, json=body([(start, 0.0)]), headers=token)  # the series exists
    points = [(start + timedelta(seconds=1 + i), float(i)) for i in range(300)]
    windows = [points[i : i + 100] for i in range(0, 201, 50)]  # each overlaps the next
    answers = await asyncio.gather(
        *(client.post(url, json=body(w), headers=token) for w in windows)
    )
    results = [a.json() for a in answers]
    assert sum(r["accepted"] for r in results) == 300
    assert sum(r["accepted"] + r["duplicates"] for r in results) == 500
    stored = [(start, 0.0), *points]
    assert await rollups(runtime, Rollup1m) == expected(stored, minute)


async def test_uploads_with_offsets_and_mixed_units(client, operator: Actor):
    """Timestamps with a UTC offset are stored as the same instants; an upload whose
    readings name different units is checked reading by reading."""
    device, token = await device_with_token(client, operator)
    url = f"/api/v1/devices/{device['id']}/data"
    t0 = minute(recent(300))
    await client.post(url, json=body([(t0, 1.0)]), headers=token)
    berlin = (t0 + timedelta(seconds=30)).astimezone().isoformat()
    shifted = t0 + timedelta(seconds=60)
    offset = shifted.astimezone(timezone(timedelta(hours=5, minutes=30)))
    r = await client.post(url, json={"data_type": "temperature", "values": [
        {"timestamp": berlin, "value": 2.0, "unit": "celsius"},
        {"timestamp": offset.isoformat(), "value": 3.0, "unit": "celsius"},
    ]}, headers=token)  # fmt: skip
    assert r.json() == {"accepted": 2, "duplicates": 0, "rejected": []}
    mixed = await client.post(url, json={"data_type": "temperature", "values": [
        {"timestamp": iso(t0 + timedelta(seconds=90)), "value": 4.0, "unit": "celsius"},
        {"timestamp": iso(t0 + timedelta(seconds=91)), "value": 5.0, "unit": "fahrenheit"},
        {"timestamp": iso(t0 + timedelta(seconds=92)), "value": 6.0},
    ]}, headers=token)  # fmt: skip
    assert mixed.json()["accepted"] == 2
    assert [x["index"] for x in mixed.json()["rejected"]] == [1]
    page = await client.get(url, params={"order": "asc"}, headers=operator.headers)
    got = [(x["timestamp"], x["value"]) for x in page.json()["items"]]
    assert [v for _ts, v in got] == [1.0, 2.0, 3.0, 4.0, 6.0]
    assert datetime.fromisoformat(got[2][0].replace("Z", "+00:00")) == shifted
