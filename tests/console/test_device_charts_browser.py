"""The device page's charts in a real browser against a real server: a WebSocket device's
reading drawn live, the range picker, zoom, the time zone, the pause, the table, and
axe-core's checks in both themes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote
from zoneinfo import ZoneInfo

from playwright.async_api import Page, expect
from websockets.asyncio.client import ClientConnection

from conftest import Actor, Served
from console_helpers import browser, page, serious_violations, sign_in
from telemetry_helpers import iso, recent
from ws_helpers import Device, connected, make_device, recv

__all__ = ["browser", "page"]  # the fixtures

TEHRAN = ZoneInfo("Asia/Tehran")
TEMPERATURE = 'figure[data-metric="temperature"]'


async def send(ws: ClientConnection, frame_id: str, **metrics: Any) -> None:
    """A telemetry frame from the device, stamped now unless ``at`` is given; acked means
    committed."""
    at = metrics.pop("at", None) or datetime.now(UTC)
    frame = {"type": "telemetry", "id": frame_id, "timestamp": iso(at), "metrics": metrics}
    await ws.send(json.dumps(frame))
    ack = await recv(ws)
    assert ack["ref"] == frame_id and ack["accepted"] == len(metrics), ack


async def open_device_page(page: Page, served: Served, actor: Actor, device: Device) -> None:
    await sign_in(page, served, actor)
    await page.goto(f"{served.base_url}/console/devices/{device.id}")
    await expect(page.locator("#live")).to_have_text("Live")
    await expect(page.locator("[data-charts]")).to_have_attribute("data-drawn", "1")
    # count the live events the page hears, to tell "not drawn" from "not heard yet"
    await page.evaluate(
        "window.heard = 0; document.addEventListener('fw:telemetry', () => { window.heard += 1; })"
    )


async def test_a_websocket_devices_reading_appears_on_the_open_chart_within_2_s(
    served: Served, page: Page, admin: Actor
):
    device = await make_device(served, admin)
    ws = await connected(served, device)
    await send(ws, "first", temperature=20.0, humidity=40.0, at=recent(120))
    await open_device_page(page, served, admin, device)
    chart = page.locator(TEMPERATURE)
    await expect(chart).to_have_attribute("data-points", "1")
    await expect(chart).to_have_attribute("data-interval", "raw")
    await expect(page.locator("section#charts")).to_have_attribute("aria-busy", "false")
    await expect(chart.locator("h3")).to_have_text("temperature")
    await send(ws, "live", temperature=23.5)
    # no reload: the reading arrives over Socket.IO and is appended to the chart
    await expect(chart).to_have_attribute("data-last-value", "23.5", timeout=2000)
    await expect(chart).to_have_attribute("data-points", "2")
    await expect(page.locator('figure[data-metric="humidity"]')).to_have_attribute(
        "data-points", "1"
    )  # the other metric did not change
    assert await page.evaluate("performance.getEntriesByName('fieldwatch:charts-drawn').length")
    # the same points as a table, newest first
    await page.get_by_role("button", name="Show as table").click()
    table = chart.get_by_role("table")
    await expect(table.locator("caption")).to_contain_text("temperature: last hour")
    await expect(table.locator("tbody tr")).to_have_count(2)
    await expect(table.locator("tbody tr").first.locator("td")).to_have_text("23.5")
    await send(ws, "more", temperature=24.25)
    await expect(table.locator("tbody tr").first.locator("td")).to_have_text("24.25", timeout=2000)
    # a metric the page has no chart for yet: the section gains one
    await send(ws, "new", pressure=1013.0)
    await expect(page.locator('figure[data-metric="pressure"]')).to_have_attribute(
        "data-points", "1", timeout=3000
    )
    await ws.close()


async def test_a_live_reading_is_folded_into_the_averages_of_a_long_range(
    served: Served, page: Page, admin: Actor
):
    device = await make_device(served, admin)
    end = recent(600)  # 2,000 readings every 30 s up to 10 minutes ago: too many to send raw
    values = [{"timestamp": iso(end - timedelta(seconds=30 * i)), "value": 1} for i in range(2000)]
    r = await served.http.post(f"/api/v1/devices/{device.id}/data", headers=device.headers,
                               json={"data_type": "temperature", "values": values})  # fmt: skip
    assert r.status_code == 200 and r.json()["accepted"] == 2000, r.text
    ws = await connected(served, device)
    await open_device_page(page, served, admin, device)
    await page.get_by_role("button", name="Last 24 hours").click()
    chart = page.locator(TEMPERATURE)
    await expect(chart).to_have_attribute("data-interval", "2m")  # ≈ one point per pixel
    points = int(await chart.get_attribute("data-points") or 0)
    bucket = datetime.fromtimestamp(int(recent().timestamp()) // 120 * 120 - 120, UTC)
    await send(ws, "a", temperature=100.0, at=bucket + timedelta(seconds=10))
    await expect(chart).to_have_attribute("data-last-value", "100", timeout=2000)
    await expect(chart).to_have_attribute("data-points", str(points + 1))  # a new bucket
    await send(ws, "b", temperature=50.0, at=bucket + timedelta(seconds=30))
    await expect(chart).to_have_attribute("data-last-value", "75", timeout=2000)  # same bucket
    await expect(chart).to_have_attribute("data-points", str(points + 1))
    await ws.close()


async def test_pausing_stops_live_appends_and_resuming_fetches_what_was_missed(
    served: Served, page: Page, admin: Actor
):
    device = await make_device(served, admin)
    ws = await connected(served, device)
    await send(ws, "first", temperature=20.0, at=recent(120))
    await open_device_page(page, served, admin, device)
    chart = page.locator(TEMPERATURE)
    pause = page.get_by_role("button", name="Pause live updates")
    await pause.click()
    await expect(pause).to_have_attribute("aria-pressed", "true")
    await expect(page.get_by_role("status").filter(has_text="paused")).to_be_visible()
    await send(ws, "while-paused", temperature=30.0)
    await page.wait_for_function("window.heard >= 1", timeout=2000)  # heard, not drawn
    await expect(chart).to_have_attribute("data-points", "1")
    await expect(chart).to_have_attribute("data-last-value", "20")
    await pause.click()  # resume: what was missed is fetched
    await expect(pause).to_have_attribute("aria-pressed", "false")
    await expect(chart).to_have_attribute("data-last-value", "30", timeout=2000)
    await expect(chart).to_have_attribute("data-points", "2")
    await send(ws, "after", temperature=31.0)
    await expect(chart).to_have_attribute("data-last-value", "31", timeout=2000)
    await ws.close()


async def test_the_range_picker_zoom_and_time_zone_change_what_is_fetched(
    served: Served, page: Page, admin: Actor
):
    device = await make_device(served, admin)
    ws = await connected(served, device)
    for i, age in enumerate((timedelta(days=3), timedelta(hours=5), timedelta(minutes=10))):
        await send(ws, f"r{i}", temperature=float(i), at=recent(age.total_seconds()))
    await open_device_page(page, served, admin, device)
    section, chart = page.locator("[data-charts]"), page.locator(TEMPERATURE)
    await expect(section).to_have_attribute("data-range", "1h")  # the default
    await expect(chart).to_have_attribute("data-points", "1")  # 10 min ago
    await page.get_by_role("button", name="Last 24 hours").click()
    await expect(section).to_have_attribute("data-range", "24h")
    await expect(chart).to_have_attribute("data-points", "2")  # 5 h and 10 min ago

    async with page.expect_request(lambda r: "/series?" in r.url and "last=7d" in r.url):
        await page.get_by_role("button", name="Last 7 days").click()
    await expect(section).to_have_attribute("data-span", "604800")
    await expect(chart).to_have_attribute("data-points", "3")
    await expect(page.get_by_role("button", name="Last 7 days")).to_have_attribute(
        "aria-pressed", "true"
    )
    assert "range=7d" in page.url  # a reload or a shared link keeps the range

    async with page.expect_request(lambda r: "last=1h" in r.url):
        await page.get_by_role("button", name="Last hour").click()
    await expect(chart).to_have_attribute("data-points", "1")

    # a custom range, in the chosen time zone (UTC+03:30)
    await page.get_by_label("Time zone").select_option("Asia/Tehran")
    await expect(page).to_have_url(re.compile(r"[?&]tz=Asia%2FTehran"))  # fetched again
    start = recent(6 * 3600).astimezone(TEHRAN)
    await page.get_by_label("From", exact=True).fill(start.strftime("%Y-%m-%dT%H:%M"))
    await page.get_by_label("To", exact=True).fill(
        (start + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    )
    async with page.expect_request(lambda r: "Tehran" in r.url and "from=" in r.url) as req:
        await page.get_by_role("button", name="Show this range").click()
    assert "from=" + start.strftime("%Y-%m-%dT%H") in unquote((await req.value).url)
    await expect(section).to_have_attribute("data-range", "custom")
    await expect(section).to_have_attribute("data-span", "7200")
    await expect(chart).to_have_attribute("data-points", "1")  # the one 5 h ago
    # a range that ends before it starts: the message next to the form
    await page.get_by_label("To", exact=True).fill(
        (start - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    )
    await page.get_by_role("button", name="Show this range").click()
    await expect(page.locator("[data-custom-range] [data-errors]")).to_contain_text(
        "The start of the range must be before its end."
    )

    # drag to zoom fetches the narrower range; a double-click goes back
    await page.get_by_role("button", name="Last 7 days").click()
    await expect(section).to_have_attribute("data-span", "604800")
    box = await chart.locator(".u-over").bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    await page.mouse.move(box["x"] + box["width"] * 0.5, y)
    await page.mouse.down()
    await page.mouse.move(box["x"] + box["width"] * 0.75, y, steps=5)
    async with page.expect_request(lambda r: "from=" in r.url and "last=" not in r.url):
        await page.mouse.up()
    await expect(section).to_have_attribute("data-range", "zoom")
    span = int(await section.get_attribute("data-span") or 0)
    assert 0.2 * 604800 < span < 0.3 * 604800, span
    await expect(page.get_by_role("button", name="Reset zoom")).to_be_visible()
    await chart.locator(".u-over").dblclick()
    await expect(section).to_have_attribute("data-range", "7d")
    await expect(page.get_by_role("button", name="Reset zoom")).to_be_hidden()
    await ws.close()


async def test_no_serious_accessibility_violations_in_either_theme(
    served: Served, page: Page, admin: Actor
):
    device = await make_device(served, admin)
    ws = await connected(served, device)
    await send(ws, "first", temperature=20.0, humidity=40.0, at=recent(60))
    await open_device_page(page, served, admin, device)
    assert await serious_violations(page) == []
    # a resize may draw once more by itself: wait for a draw after the theme changed
    before = int(await page.locator(TEMPERATURE).get_attribute("data-drawn") or 0)
    await page.get_by_role("button", name="Dark theme").click()
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    await page.wait_for_function(
        f"Number(document.querySelector({TEMPERATURE!r}).dataset.drawn) > {before}"
    )  # redrawn in the dark colours
    assert await serious_violations(page) == []
    await page.get_by_role("button", name="Show as table").click()
    await expect(page.locator(TEMPERATURE).get_by_role("table")).to_be_visible()
    assert await serious_violations(page) == []
    await page.get_by_role("button", name="Dark theme").click()
    assert await serious_violations(page) == []
    await ws.close()
