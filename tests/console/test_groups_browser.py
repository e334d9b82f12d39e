"""The device groups pages in a real browser against a real server: a dynamic group made
with the form shows the devices matching its filter, and the inventory filtered by that
group shows them too (and keeps the filter in the URL)."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from conftest import Actor, Served, create_device
from console_helpers import browser, page, serious_violations, sign_in

__all__ = ["browser", "page"]  # the fixtures

CHOSEN = re.compile(r"[?&]group=[0-9a-f-]{36}")


async def test_a_dynamic_group_then_the_inventory_filtered_by_it(
    served: Served, page: Page, operator: Actor
):
    http = served.http
    for name, type_, tags in [("Roof pump 1", "pump", ["roof"]), ("Roof pump 2", "pump", ["roof"]),
                              ("Cellar pump", "pump", ["cellar"]),
                              ("Roof meter", "meter", ["roof"])]:  # fmt: skip
        await create_device(http, operator, name=name, type=type_, tags=tags)
    await sign_in(page, served, operator)
    await page.get_by_role("navigation", name="Sections").get_by_role("link", name="Groups").click()
    await expect(page.get_by_role("heading", name="Device groups")).to_be_visible()
    await page.get_by_label("Name", exact=True).fill("Roof pumps")
    await page.get_by_label("Dynamic: the devices matching the filter below").check()
    await page.get_by_label("Type").fill("pump")
    await page.get_by_label("Tags (all of)").fill("roof")
    await page.get_by_label("in stock").check()
    await page.get_by_role("button", name="Create group").click()
    await expect(page.get_by_role("heading", name="Roof pumps")).to_be_visible()
    await expect(page.get_by_role("status")).to_have_text("The group is created.")
    await expect(page.locator("#group-filter")).to_have_text(
        "type pump · status in stock · tags roof"
    )
    devices = page.locator("#group-devices-table tbody th[scope=row]")
    await expect(devices).to_have_text(["Roof pump 1", "Roof pump 2"])
    assert await serious_violations(page) == []

    await page.get_by_role("link", name="Show these devices in the inventory").click()
    await expect(page.get_by_role("heading", name="Inventory", exact=True)).to_be_visible()
    rows = page.locator("#inventory-table tbody tr[data-device-id] th[scope=row]")
    await expect(rows).to_have_count(2)
    assert sorted(await rows.all_inner_texts()) == ["Roof pump 1", "Roof pump 2"]
    await expect(page.get_by_label("Group")).to_have_value(page.url.split("group=")[1])
    await page.get_by_label("Group").select_option(label="Any group")  # htmx: the table alone
    await expect(rows).to_have_count(4)
    assert not CHOSEN.search(page.url)
    await page.get_by_label("Group").select_option(label="Roof pumps")
    await expect(rows).to_have_count(2)
    await expect(page).to_have_url(CHOSEN)
