"""The fleet overview in a real browser against a real server: the status ×
connectivity table, the offline list and the lifecycle changes following the fleet
live (a real WebSocket device), axe-core's checks in both themes, a phone-width screen."""

from __future__ import annotations

import asyncio

from playwright.async_api import Page, expect

from conftest import Actor, Served
from console_helpers import browser, page, serious_violations, sign_in
from ws_helpers import connected, make_device

__all__ = ["browser", "page"]  # the fixtures

LIVE_S = 3000  # ms: a change reaches the page well within this


async def test_the_cross_table_and_the_lists_follow_the_fleet_live(
    page: Page, served: Served, admin: Actor
):
    device = await make_device(served, admin)
    r = await served.http.patch(
        f"/api/v1/devices/{device.id}", json={"name": "Boiler 3"}, headers=admin.headers
    )
    assert r.status_code == 200, r.text
    await sign_in(page, served, admin)
    await expect(page.locator("#live")).to_have_text("Live")
    await expect(page.locator("#status-in_stock-offline")).to_have_text("1")
    await expect(page.locator("#status-deployed")).to_have_text("0")
    await expect(page.locator("#status-changes-none")).to_be_visible()
    await asyncio.sleep(1)  # the refresh the page makes once connected is over

    # A lifecycle change: the cell moves, the change is listed. No reload.
    r = await served.http.put(
        f"/api/v1/devices/{device.id}/deploy", json={"location": "Hall 2"}, headers=admin.headers
    )
    assert r.status_code == 200, r.text
    await expect(page.locator("#status-deployed-offline")).to_have_text("1", timeout=LIVE_S)
    await expect(page.locator("#status-deployed")).to_have_text("1", timeout=LIVE_S)
    await expect(page.locator("#status-in_stock")).to_have_text("0", timeout=LIVE_S)
    change = page.locator("#status-changes tbody tr").first
    await expect(change).to_contain_text("Boiler 3", timeout=LIVE_S)
    await expect(change).to_contain_text("in stock")
    await expect(change).to_contain_text("deployed")
    await expect(change).to_contain_text(admin.email)

    # The device connects over WebSocket: online; it goes away: listed as gone offline.
    ws = await connected(served, device)
    await expect(page.locator("#status-deployed-online")).to_have_text("1", timeout=LIVE_S)
    await expect(page.locator("#status-deployed-offline")).to_have_text("0")
    await expect(page.locator("#devices-online")).to_have_text("1")
    await ws.close()
    await expect(page.locator("#status-deployed-offline")).to_have_text("1", timeout=LIVE_S)
    gone = page.locator("#went-offline tbody tr")
    await expect(gone).to_have_count(1, timeout=LIVE_S)
    link = gone.get_by_role("link", name="Boiler 3")
    await expect(link).to_have_attribute("href", f"/console/devices/{device.id}")
    await expect(page.locator("#went-offline-total")).to_have_text("1")


async def test_the_overview_has_no_serious_accessibility_violations_in_either_theme(
    page: Page, served: Served, admin: Actor
):
    device = await make_device(served, admin)
    r = await served.http.put(f"/api/v1/devices/{device.id}/reserve", headers=admin.headers)
    assert r.status_code == 200, r.text
    ws = await connected(served, device)
    await ws.close()  # so the offline list has a row
    await sign_in(page, served, admin)
    await expect(page.locator("#live")).to_have_text("Live")
    await expect(page.locator("#went-offline tbody tr")).to_have_count(1)
    await expect(page.locator("#status-changes tbody tr")).to_have_count(1)
    assert await serious_violations(page) == []
    await page.get_by_role("button", name="Dark theme").click()
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    assert await serious_violations(page) == []


async def test_on_a_phone_the_overview_does_not_overflow_sideways(
    page: Page, served: Served, admin: Actor
):
    device = await make_device(served, admin)
    await served.http.put(f"/api/v1/devices/{device.id}/reserve", headers=admin.headers)
    ws = await connected(served, device)
    await ws.close()
    await page.set_viewport_size({"width": 390, "height": 844})
    await sign_in(page, served, admin)
    await expect(page.locator("#went-offline tbody tr")).to_have_count(1)
    widths = await page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], widths
    # Every card fits the screen (a wide table scrolls inside its own box).
    cards = await page.evaluate(
        "() => [...document.querySelectorAll('.card')].map(c => c.getBoundingClientRect().right)"
    )
    assert cards and max(cards) <= 390, cards
    await expect(page.locator("#status-deployed-online")).to_be_visible()
