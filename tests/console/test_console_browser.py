"""The console in a real browser (Debian's headless Chromium, driven by Playwright) against
a real server: signing in and out, a figure that changes live, and axe-core's checks."""

from __future__ import annotations

import asyncio

from playwright.async_api import Page, expect

from conftest import Actor, Served, create_device
from console_helpers import browser, page, serious_violations, sign_in

__all__ = ["browser", "page"]  # the fixtures


async def test_sign_in_and_out_with_no_serious_accessibility_violations(
    page: Page, served: Served, admin: Actor
):
    await page.goto(served.base_url + "/console/login")
    assert await serious_violations(page) == []
    await sign_in(page, served, admin)
    await expect(page.locator("#live")).to_have_text("Live")
    assert await serious_violations(page) == []
    await page.get_by_role("button", name="Dark theme").click()  # the other theme too
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    assert await serious_violations(page) == []
    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(served.base_url + "/console/login?m=signed-out")
    await expect(page.get_by_role("status")).to_have_text("You have signed out.")
    await page.goto(served.base_url + "/console/")
    await expect(page).to_have_url(served.base_url + "/console/login")


async def test_a_wrong_password_shows_a_message(page: Page, served: Served, admin: Actor):
    await page.goto(served.base_url + "/console/login")
    await page.get_by_label("E-mail").fill(admin.email)
    await page.get_by_label("Password").fill("not-the-password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")


async def test_the_overview_follows_the_fleet_live(page: Page, served: Served, admin: Actor):
    device = await create_device(served.http, admin, serial_number="SN-LIVE")
    await sign_in(page, served, admin)
    await expect(page.locator("#live")).to_have_text("Live")
    await expect(page.locator("#status-reserved")).to_have_text("0")
    await expect(page.locator("#status-in_stock")).to_have_text("1")
    await asyncio.sleep(1)  # the refresh the page makes once connected is over
    r = await served.http.put(f"/api/v1/devices/{device['id']}/reserve", headers=admin.headers)
    assert r.status_code == 200, r.text
    # No reload: the page hears the change over Socket.IO and fetches its figures.
    await expect(page.locator("#status-reserved")).to_have_text("1", timeout=2000)
    await expect(page.locator("#status-in_stock")).to_have_text("0", timeout=2000)


async def test_the_connection_state_is_shown_and_the_page_reconnects_by_itself(
    page: Page, served: Served, admin: Actor
):
    device = await create_device(served.http, admin, serial_number="SN-BACK")
    await sign_in(page, served, admin)
    live = page.locator("#live")
    await expect(live).to_have_text("Live")
    await expect(live).to_have_attribute("data-connects", "1")
    assert served.realtime.connected == 1, served.realtime.connected
    await served.realtime.disconnect_all()  # the server drops every dashboard
    await expect(live).to_have_attribute("data-connects", "2", timeout=15000)  # by itself
    await expect(live).to_have_text("Live")
    r = await served.http.put(f"/api/v1/devices/{device['id']}/reserve", headers=admin.headers)
    assert r.status_code == 200, r.text
    await expect(page.locator("#status-reserved")).to_have_text("1", timeout=3000)
