"""The device page's telemetry section over HTTP: the section, and the series its charts
fetch (raw readings for a short range, averages over a bounded number of buckets for a
long one, wall-clock ranges in a time zone, another workspace's device a 404)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, get_args
from zoneinfo import ZoneInfo

import httpx

from conftest import Actor, Factory, create_device
from console_helpers import sign_in_http as sign_in
from fieldwatch.console import device_charts
from fieldwatch.telemetry.query.chart import MAX_POINTS, fitting_interval
from telemetry_helpers import iso, recent


async def upload(
    client: httpx.AsyncClient,
    actor: Actor,
    device_id: str,
    metric: str,
    points: list[tuple[datetime, float]],
    unit: str | None = None,
) -> None:
    for i in range(0, len(points), 1000):
        chunk = points[i : i + 1000]
        values = [{"timestamp": iso(ts), "value": v, "unit": unit} for ts, v in chunk]
        body = {"data_type": metric, "values": values}
        r = await client.post(f"/api/v1/devices/{device_id}/data", json=body, headers=actor.headers)
        assert r.status_code == 200 and r.json()["accepted"] == len(chunk), r.text


async def text_reading(client: httpx.AsyncClient, actor: Actor, device_id: str) -> None:
    body = {"device_id": device_id, "metrics": {"state": "idle"}}
    r = await client.post("/api/v1/monitoring/data", json=body, headers=actor.headers)
    assert r.status_code == 200, r.text


async def all_series(client: httpx.AsyncClient, device_id: str, **params: Any) -> dict[str, Any]:
    r = await client.get(f"/console/devices/{device_id}/series", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    return dict(r.json())


async def series(client: httpx.AsyncClient, device_id: str, **params: Any) -> dict[str, Any]:
    """The one series asked for, with the range it covers."""
    whole = await all_series(client, device_id, **params)
    [one] = whole.pop("series")
    return {**whole, **one}


async def test_the_section_shows_a_chart_per_numeric_metric_and_the_controls(client, admin: Actor):
    device = await create_device(client, admin)
    now = recent(60)
    await upload(client, admin, device["id"], "temperature", [(now, 21.5)], "°C")
    await upload(client, admin, device["id"], "humidity", [(now, 40.0)])
    await text_reading(client, admin, device["id"])
    await sign_in(client, admin.email)
    r = await client.get(f"/console/devices/{device['id']}/charts")
    assert r.status_code == 200, r.text
    html = r.text
    assert "<html" not in html and 'id="h-charts"' in html  # a fragment, with its heading
    metrics = re.findall(r'data-metric="([^"]+)"', html)
    assert metrics == ["humidity", "temperature"]  # text metrics are not charted…
    assert "Not charted (text values): state." in html  # …and say so
    assert 'data-label="temperature (°C)"' in html and "<h3" in html
    for key in ("1h", "24h", "7d", "30d"):
        assert f'data-range="{key}"' in html
    assert 'data-range="1h" aria-pressed="true"' in html
    for control in ("chart-from", "chart-to", "chart-tz"):  # every control has a label
        assert f'<label for="{control}">' in html and f'id="{control}"' in html
    assert "Pause live updates" in html and "Show as table" in html
    assert "/static/vendor/uplot/uPlot.iife.min.js" in html and "/static/console/charts.js" in html
    assert "/static/vendor/uplot/uPlot.min.css" in html and "/static/console/charts.css" in html
    for path in ("/static/console/charts.js", "/static/console/charts.css"):
        assert (await client.get(path)).status_code == 200


async def test_one_request_fetches_every_chart_of_the_page(client, admin: Actor):
    device = await create_device(client, admin)
    await upload(client, admin, device["id"], "temperature", [(recent(60), 21.5)], "°C")
    await upload(client, admin, device["id"], "humidity", [(recent(60), 40.0)])
    await text_reading(client, admin, device["id"])
    await sign_in(client, admin.email)
    body = await all_series(client, device["id"], last="1h")
    assert [(s["metric"], s["label"], s["v"]) for s in body["series"]] == [
        ("humidity", "humidity", [40.0]),
        ("temperature", "temperature (°C)", [21.5]),
    ]  # every numeric metric; not the text one
    asked = await all_series(client, device["id"], last="1h", metric=["temperature", "gone"])
    assert [s["metric"] for s in asked["series"]] == ["temperature"]


async def test_a_device_without_readings_says_so(client, admin: Actor):
    device = await create_device(client, admin)
    await sign_in(client, admin.email)
    html = (await client.get(f"/console/devices/{device['id']}/charts")).text
    assert "No numeric readings yet" in html and "data-metric=" not in html


async def test_a_short_range_sends_the_raw_readings(client, admin: Actor):
    device = await create_device(client, admin)
    points = [(recent(3000 - 60 * i), float(i)) for i in range(50)]
    points.append((recent(7200), 99.0))  # before the last hour
    await upload(client, admin, device["id"], "t", points)
    await sign_in(client, admin.email)
    body = await series(client, device["id"], metric="t", last="1h")
    assert body["interval"] is None and body["step"] is None and body["sources"] == ["raw"]
    assert body["v"] == [float(i) for i in range(50)]
    assert body["t"] == [ts.timestamp() for ts, _ in points[:50]]
    assert body["points"] == 50 and "lo" not in body
    assert body["to"] - body["from"] == 3600
    assert abs(body["to"] - datetime.now(UTC).timestamp()) < 60


async def test_a_long_range_sends_averages_over_a_bounded_number_of_buckets(client, admin: Actor):
    device = await create_device(client, admin)
    start = recent(86_400).replace(second=0) + timedelta(hours=1)
    # 3,000 readings (more than a chart is sent), six a minute over 8 h 20 min
    points = [(start + timedelta(seconds=10 * i), float(i % 6)) for i in range(3000)]
    await upload(client, admin, device["id"], "t", points)
    await sign_in(client, admin.email)
    body = await series(client, device["id"], metric="t", last="24h")
    assert body["interval"] == "1m" and body["step"] == 60
    assert len(body["t"]) <= MAX_POINTS and len(body["t"]) == len(body["v"]) == len(body["n"])
    assert sum(body["n"]) == 3000
    assert body["points"] == 500  # the minutes that have readings
    first = body["t"].index(start.timestamp())
    assert (body["v"][first], body["lo"][first], body["hi"][first], body["n"][first]) == (
        2.5, 0.0, 5.0, 6,
    )  # fmt: skip
    assert body["t"][first + 1] - body["t"][first] == 60
    # a narrow chart asks for fewer points (one per pixel of its width)
    body = await series(client, device["id"], metric="t", last="24h", points=100)
    assert body["interval"] == "15m" and len(body["t"]) <= 100 and sum(body["n"]) == 3000
    # the same readings over a shorter range: few enough to send raw
    narrow = {"from": iso(start), "to": iso(start + timedelta(minutes=30))}
    body = await series(client, device["id"], metric="t", **narrow)
    assert body["interval"] is None and len(body["v"]) == 180


def test_the_interval_is_the_finest_that_keeps_a_series_within_the_budget():
    end = datetime(2026, 3, 1, tzinfo=UTC)
    chosen = {
        label: fitting_interval(end - span, end).label
        for label, span in device_charts.RANGES.items()
    }
    assert chosen == {"1h": "1m", "24h": "1m", "7d": "10m", "30d": "30m"}
    assert fitting_interval(end - timedelta(days=365), end).label == "6h"
    assert fitting_interval(end - timedelta(days=3650), end).label == "1w"
    for days in (1, 2, 7, 30, 90, 365, 3650):
        interval = fitting_interval(end - timedelta(days=days), end)
        assert days * 86_400 / interval.nominal_seconds <= MAX_POINTS - 2
    # the route accepts exactly the range picker's choices
    assert set(get_args(device_charts.RangeKey)) == set(device_charts.RANGES)


async def test_a_custom_range_is_a_wall_clock_time_in_the_chosen_zone(client, admin: Actor):
    device = await create_device(client, admin)
    berlin = datetime(2026, 7, 1, 10, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    await upload(client, admin, device["id"], "t", [(berlin + timedelta(minutes=5), 1.0)])
    await sign_in(client, admin.email)
    body = await series(client, device["id"], metric="t", tz="Europe/Berlin",
                        **{"from": "2026-07-01T10:00", "to": "2026-07-01T11:00"})  # fmt: skip
    assert body["from"] == berlin.timestamp() and body["to"] == berlin.timestamp() + 3600
    assert body["tz"] == "Europe/Berlin" and body["v"] == [1.0]
    utc = await series(client, device["id"], metric="t",
                       **{"from": "2026-07-01T10:00", "to": "2026-07-01T11:00"})  # fmt: skip
    assert utc["from"] == berlin.timestamp() + 7200 and utc["v"] == []


async def test_booleans_are_charted_as_zero_and_one(client, admin: Actor):
    device = await create_device(client, admin)
    r = await client.post("/api/v1/monitoring/data", headers=admin.headers, json=[
        {"device_id": device["id"], "timestamp": iso(recent(120)), "metrics": {"door": True}},
        {"device_id": device["id"], "timestamp": iso(recent(60)), "metrics": {"door": False}},
    ])  # fmt: skip
    assert r.status_code == 200, r.text
    await sign_in(client, admin.email)
    body = await series(client, device["id"], metric="door", last="1h")
    assert body["kind"] == "bool" and body["v"] == [1.0, 0.0]


async def test_wrong_requests_get_a_readable_message(client, admin: Actor):
    device = await create_device(client, admin)
    await upload(client, admin, device["id"], "t", [(recent(60), 1.0)])
    await text_reading(client, admin, device["id"])
    await sign_in(client, admin.email)
    url = f"/console/devices/{device['id']}/series"
    htmx = {"HX-Request": "true"}  # what charts.js sends: errors come as the problem fragment
    cases = [
        ({"metric": "t", "from": "2026-01-02T00:00Z", "to": "2026-01-01T00:00Z"}, 422,
         "The start of the range must be before its end."),
        ({"metric": "t", "from": "yesterday"}, 422, "not a date and time"),
        ({"metric": "t", "tz": "Mars/Olympus"}, 422, "unknown time zone"),
        ({"metric": "t", "from": "2000-01-01T00:00Z", "to": "2026-01-01T00:00Z"}, 422,
         "The range is too long"),
        ({"metric": "nothing"}, 404, "no numeric readings of &#39;nothing&#39;"),
        ({"metric": "state"}, 404, "no numeric readings of &#39;state&#39;"),
        ({"metric": "t", "last": "2y"}, 422, "Invalid value for: query.last"),
        ({"metric": "t", "points": "5000"}, 422, "Invalid value for: query.points"),
    ]  # fmt: skip
    for params, status, text in cases:
        r = await client.get(url, params=params, headers=htmx)
        assert r.status_code == status, (params, r.text)
        assert r.text.lstrip().startswith('<div class="problem"') and text in r.text, r.text


async def test_a_viewer_reads_and_another_workspaces_device_is_a_404(
    client, admin: Actor, viewer: Actor, factory: Factory
):
    device = await create_device(client, admin)
    await upload(client, admin, device["id"], "t", [(recent(60), 1.0)])
    other = await factory.user("admin", "elsewhere")
    foreign = await create_device(client, other, serial_number="SN-FOREIGN")
    await upload(client, other, foreign["id"], "t", [(recent(60), 7.0)])
    await sign_in(client, viewer.email)
    r = await client.get(f"/console/devices/{device['id']}/charts")
    assert r.status_code == 200 and 'data-metric="t"' in r.text
    assert "csrf_token" not in r.text and 'method="post"' not in r.text  # read-only
    assert (await series(client, device["id"], metric="t", last="1h"))["v"] == [1.0]
    for path in ("charts", "series?metric=t"):
        r = await client.get(f"/console/devices/{foreign['id']}/{path}")
        assert r.status_code == 404 and "7.0" not in r.text and "SN-FOREIGN" not in r.text
    client.cookies.clear()
    r = await client.get(f"/console/devices/{device['id']}/series", params={"metric": "t"})
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    r = await client.get(
        f"/console/devices/{device['id']}/series", params={"metric": "t"},
        headers={"HX-Request": "true"},
    )  # fmt: skip
    assert r.headers["hx-redirect"] == "/console/login"
