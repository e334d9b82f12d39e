"""Aggregates against hand-computed values, DST days and calendar months included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from conftest import Actor, problem
from telemetry_helpers import device_with_token, iso

BERLIN = ZoneInfo("Europe/Berlin")


async def _upload(client, device_id: str, token: dict, metric: str, points: list[tuple]) -> None:
    for i in range(0, len(points), 1000):
        chunk = points[i : i + 1000]
        body = {"data_type": metric,
                "values": [{"timestamp": iso(ts), "value": v} for ts, v in chunk]}  # fmt: skip
        r = await client.post(f"/api/v1/devices/{device_id}/data", json=body, headers=token)
        assert r.status_code == 200 and r.json()["accepted"] == len(chunk), r.text


async def _agg(client, actor: Actor, device_id: str, **params) -> dict:
    r = await client.get(f"/api/v1/devices/{device_id}/data/aggregate", params=params,
                         headers=actor.headers)  # fmt: skip
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_autumn_dst_day_has_25_hours(client, operator: Actor):
    device, token = await device_with_token(client, operator)
    day_start = datetime(2026, 10, 25, tzinfo=BERLIN).astimezone(UTC)  # 2026-10-24T22:00Z
    points = [(day_start + timedelta(minutes=15 * i), float(i)) for i in range(100)]
    await _upload(client, device["id"], token, "t", points)
    rng = {"start_time": iso(day_start), "end_time": iso(day_start + timedelta(hours=25))}
    hourly = await _agg(client, operator, device["id"], data_type="t", interval="1h",
                        agg="count", tz="Europe/Berlin", **rng)  # fmt: skip
    assert [b["count"] for b in hourly["buckets"]] == [4] * 25
    assert hourly["buckets"][2]["start"] == "2026-10-25T02:00:00+02:00"
    assert hourly["buckets"][3]["start"] == "2026-10-25T02:00:00+01:00"  # the repeated hour
    assert hourly["sources"] == ["rollup_1h"]
    daily = await _agg(client, operator, device["id"], data_type="t", interval="1d", agg="avg",
                       tz="Europe/Berlin", **rng)  # fmt: skip
    assert len(daily["buckets"]) == 1
    only = daily["buckets"][0]
    assert only["count"] == 100 and only["value"] == 49.5
    assert (
        only["start"] == "2026-10-25T00:00:00+02:00" and only["end"] == "2026-10-26T00:00:00+01:00"
    )
    for agg, expected in (("min", 0.0), ("max", 99.0), ("sum", 4950.0), ("count", 100.0)):
        got = await _agg(client, operator, device["id"], data_type="t", interval="1d", agg=agg,
                         tz="Europe/Berlin", **rng)  # fmt: skip
        assert got["buckets"][0]["value"] == expected, agg


async def test_spring_dst_day_has_23_hours(client, operator: Actor):
    device, token = await device_with_token(client, operator)
    day_start = datetime(2026, 3, 29, tzinfo=BERLIN).astimezone(UTC)  # 2026-03-28T23:00Z
    points = [(day_start + timedelta(hours=h, minutes=30), float(h + 1)) for h in range(23)]
    await _upload(client, device["id"], token, "t", points)
    res = await _agg(client, operator, device["id"], data_type="t", interval="1d", agg="sum",
                     tz="Europe/Berlin", start_time=iso(day_start),
                     end_time=iso(day_start + timedelta(hours=23)))  # fmt: skip
    assert [(b["count"], b["value"]) for b in res["buckets"]] == [(23, 276.0)]
    hourly = await _agg(client, operator, device["id"], data_type="t", interval="1h",
                        agg="max", tz="Europe/Berlin", start_time=iso(day_start),
                        end_time=iso(day_start + timedelta(hours=23)))  # fmt: skip
    assert len(hourly["buckets"]) == 23
    assert [b["start"][11:16] for b in hourly["buckets"][:4]] == [
        "00:00",
        "01:00",
        "03:00",
        "04:00",
    ]


async def test_calendar_months_in_a_time_zone(client, operator: Actor):
    device, token = await device_with_token(client, operator)
    points = [
        (datetime(2026, 1, 31, 22, 59, 59, tzinfo=UTC), 1.0),  # Jan 31, 23:59:59 Berlin
        (datetime(2026, 1, 31, 23, 0, 0, tzinfo=UTC), 2.0),    # Feb 1, 00:00 Berlin
        (datetime(2026, 2, 28, 22, 59, 0, tzinfo=UTC), 3.0),   # Feb 28, 23:59 Berlin
        (datetime(2026, 2, 28, 23, 0, 0, tzinfo=UTC), 4.0),    # Mar 1, 00:00 Berlin
    ]  # fmt: skip
    await _upload(client, device["id"], token, "t", points)
    res = await _agg(client, operator, device["id"], data_type="t", interval="1mo", agg="sum",
                     tz="Europe/Berlin", start_time="2026-01-01T00:00:00+01:00",
                     end_time="2026-04-01T00:00:00+02:00")  # fmt: skip
    assert [(b["start"], b["count"], b["value"]) for b in res["buckets"]] == [
        ("2026-01-01T00:00:00+01:00", 1, 1.0),
        ("2026-02-01T00:00:00+01:00", 2, 5.0),
        ("2026-03-01T00:00:00+01:00", 1, 4.0),
    ]
    utc = await _agg(
        client,
        operator,
        device["id"],
        data_type="t",
        interval="1mo",
        agg="sum",
        tz="UTC",
        start_time="2026-01-01T00:00:00Z",
        end_time="2026-04-01T00:00:00Z",
    )
    assert [b["value"] for b in utc["buckets"]] == [3.0, 7.0, None]  # in UTC all but one shift


def _brute(points, start, end, spans_local):
    out = []
    for a, b in spans_local:
        vals = [v for ts, v in points if max(a, start) <= ts < min(b, end)]
        out.append((len(vals), sum(vals) / len(vals) if vals else None))
    return out


async def test_unaligned_ranges_combine_rollups_and_raw_exactly(client, operator: Actor):
    device, token = await device_with_token(client, operator)
    base = datetime(2026, 11, 2, 9, 50, tzinfo=UTC)
    points = [(base + timedelta(seconds=10 * i), float(i % 37)) for i in range(6 * 140)]
    await _upload(client, device["id"], token, "t", points)
    start = datetime(2026, 11, 2, 10, 0, 35, tzinfo=UTC)
    end = datetime(2026, 11, 2, 12, 7, 25, tzinfo=UTC)
    res = await _agg(client, operator, device["id"], data_type="t", interval="1h", agg="avg",
                     tz="UTC", start_time=iso(start), end_time=iso(end))  # fmt: skip
    assert res["sources"] == ["raw", "rollup_1m", "rollup_1h"]
    spans = [(datetime(2026, 11, 2, h, tzinfo=UTC), datetime(2026, 11, 2, h + 1, tzinfo=UTC))
             for h in (10, 11, 12)]  # fmt: skip
    expected = _brute(points, start, end, spans)
    got = [(b["count"], b["value"]) for b in res["buckets"]]
    assert [c for c, _ in got] == [c for c, _ in expected]
    for (_, g), (_, e) in zip(got, expected, strict=True):
        assert abs(g - e) < 1e-9

    # A half-hour zone cannot use hourly rollups: minute rollups and raw, same exactness.
    kol = await _agg(client, operator, device["id"], data_type="t", interval="1h", agg="avg",
                     tz="Asia/Kolkata", start_time=iso(start), end_time=iso(end))  # fmt: skip
    assert "rollup_1h" not in kol["sources"]
    half = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
    spans = [(half + timedelta(hours=i), half + timedelta(hours=i + 1)) for i in range(3)]
    expected = _brute(points, start, end, spans)
    got = [(b["count"], b["value"]) for b in kol["buckets"]]
    assert [c for c, _ in got] == [c for c, _ in expected]
    assert all(abs(g - e) < 1e-9 for (_, g), (_, e) in zip(got, expected, strict=True))


async def test_aggregate_errors(client, operator: Actor):
    device, token = await device_with_token(client, operator)
    await client.post(f"/api/v1/devices/{device['id']}/data",
                      json={"data_type": "note", "value": "hello"}, headers=token)  # fmt: skip
    url = f"/api/v1/devices/{device['id']}/data/aggregate"
    h = operator.headers
    problem(await client.get(url, params={"data_type": "note"}, headers=h), 422)
    problem(await client.get(url, params={"data_type": "missing"}, headers=h), 404)
    body = problem(
        await client.get(url, params={"data_type": "note", "interval": "7m"}, headers=h), 422
    )
    assert "accepted" in body["detail"]
    problem(
        await client.get(url, params={"data_type": "note", "tz": "Mars/Olympus"}, headers=h), 422
    )
    problem(await client.get(url, params={"data_type": "note", "agg": "median"}, headers=h), 422)
    problem(
        await client.get(
            url,
            params={
                "data_type": "note",
                "interval": "1m",
                "start_time": "2026-01-01T00:00:00Z",
                "end_time": "2026-11-01T00:00:00Z",
            },
            headers=h,
        ),
        422,
    )
