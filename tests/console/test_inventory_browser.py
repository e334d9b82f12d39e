"""The inventory page in a real browser (Debian's headless Chromium, driven by Playwright)
against a real server: filtering and paging, a bulk recall with a refused device, the CSV
import's dry run then commit, a viewer's page, live cells, axe-core and a phone's width.

Each test asks for ``served`` before ``page``: the page (and its live connection) is
closed before the server stops, which otherwise waits for the connection to end."""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.async_api import Browser, Page, expect

from conftest import Actor, Served, create_device
from console_helpers import browser, page, serious_violations, sign_in

__all__ = ["browser", "page"]  # the fixtures

ROWS = "#inventory-table tbody tr[data-device-id]"


async def import_devices(http: httpx.AsyncClient, who: Actor, count: int) -> None:
    """``count`` devices in one API import: "Unit 00" … deployed at Site A or B, every
    third one in stock at Warehouse A."""
    lines = ["name,type,serial_number,location,status"]
    for i in range(count):
        stock = i % 3 == 0
        place = "Warehouse A" if stock else f"Site {'AB'[i % 2]}"
        lines.append(f"Unit {i:02d},{'meter' if i % 2 else 'pump'},SN-{i:03d},{place},"
                     f"{'in_stock' if stock else 'deployed'}")  # fmt: skip
    r = await http.post("/api/v1/devices/import", content="\n".join(lines) + "\n",
                        headers={**who.headers, "content-type": "text/csv"})  # fmt: skip
    assert r.status_code == 200 and r.json()["created"] == count, r.text


async def act(http: httpx.AsyncClient, who: Actor, device: dict[str, Any], action: str,
              **body: Any) -> None:  # fmt: skip
    r = await http.put(f"/api/v1/devices/{device['id']}/{action}", json=body, headers=who.headers)
    assert r.status_code == 200, r.text


async def open_inventory(page: Page, served: Served, actor: Actor, query: str = "") -> None:
    await sign_in(page, served, actor)
    await page.goto(served.base_url + "/console/inventory" + query)
    await expect(page.get_by_role("heading", name="Inventory", exact=True)).to_be_visible()


async def row_names(page: Page) -> list[str]:
    return await page.locator(f"{ROWS} th[scope=row]").all_inner_texts()


async def test_filter_and_page_the_inventory(served: Served, page: Page, operator: Actor):
    await import_devices(served.http, operator, 60)
    await open_inventory(page, served, operator)
    await expect(page.locator("#inventory-total")).to_have_text("60")
    await expect(page.locator(ROWS)).to_have_count(50)
    await expect(page.locator("#live")).to_have_text("Live")

    # Filters swap the table in place and the URL holds them.
    await page.get_by_label("Status").select_option("deployed")
    await expect(page.locator("#inventory-total")).to_have_text("40")
    await expect(page).to_have_url(re.compile(r"status=deployed"))
    await page.get_by_label("Location").fill("Site B")
    await page.get_by_role("button", name="Apply filters").click()
    await expect(page.locator("#inventory-total")).to_have_text("20")
    await page.get_by_label("Rows per page").select_option("25")
    await expect(page).to_have_url(re.compile(r"limit=25"))
    await page.get_by_role("link", name="Name").click()  # sort by name
    await expect(page.locator("#inventory-table th[aria-sort=ascending]")).to_have_text("Name ▲")
    assert (await row_names(page))[:2] == ["Unit 01", "Unit 05"]
    await page.get_by_role("link", name="Name").click()
    await expect(page.locator("#inventory-table th[aria-sort=descending]")).to_have_text("Name ▼")
    assert (await row_names(page))[0] == "Unit 59"

    # Pages of ten rows.
    await page.goto(served.base_url + "/console/inventory?status=deployed&sort=name&limit=10")
    await expect(page.locator(ROWS)).to_have_count(10)
    await expect(page.locator(".pager .where")).to_have_text("Page 1 of 4")
    await page.get_by_role("link", name="Next").click()
    await expect(page.locator(".pager .where")).to_have_text("Page 2 of 4")
    await expect(page).to_have_url(re.compile(r"offset=10"))
    assert (await row_names(page))[0] == "Unit 16"
    await page.get_by_role("link", name="Last").click()
    await expect(page.locator(".pager .where")).to_have_text("Page 4 of 4")
    await expect(page.locator(ROWS)).to_have_count(10)
    await page.get_by_label("Name or serial contains").fill("sn-005")
    await expect(page.locator(ROWS)).to_have_count(1)  # searched as it is typed
    await expect(page.locator(f"{ROWS} th[scope=row]")).to_have_text("Unit 05")
    await expect(page).to_have_url(re.compile(r"q=sn-005"))

    # A bookmark of that URL shows the same table, and so does going back.
    await page.reload()
    await expect(page.locator(f"{ROWS} th[scope=row]")).to_have_text("Unit 05")
    await expect(page.get_by_label("Name or serial contains")).to_have_value("sn-005")
    await page.go_back()
    await expect(page.locator(".pager .where")).to_have_text("Page 4 of 4")


async def test_the_table_and_a_bulk_action_work_without_javascript(
    browser: Browser, served: Served, operator: Actor
):
    await import_devices(served.http, operator, 12)
    context = await browser.new_context(java_script_enabled=False)
    try:
        page = await context.new_page()
        await open_inventory(page, served, operator)
        await page.get_by_label("Status").select_option("in_stock")
        await page.get_by_role("button", name="Apply filters").click()
        await expect(page).to_have_url(re.compile(r"status=in_stock"))
        await expect(page.locator("#inventory-total")).to_have_text("4")
        await page.get_by_role("link", name="Name").click()
        await expect(page).to_have_url(re.compile(r"sort=name"))
        assert await row_names(page) == ["Unit 00", "Unit 03", "Unit 06", "Unit 09"]
        await page.get_by_label("Select Unit 03").check()
        await page.get_by_label("Select Unit 06").check()
        await page.get_by_label("Action").select_option(label="Send to maintenance")
        await page.get_by_role("button", name="Apply to the selected devices").click()
        await expect(page.locator("#h-outcomes")).to_have_text(
            "Send to maintenance: 2 of 2 devices changed"
        )
        assert await row_names(page) == ["Unit 00", "Unit 09"]  # still in stock, by name
    finally:
        await context.close()


async def test_the_visible_rows_follow_the_devices_live(
    served: Served, page: Page, operator: Actor
):
    device = await create_device(served.http, operator, name="Chatty", serial_number="SN-LIVE")
    r = await served.http.post(f"/api/v1/devices/{device['id']}/tokens", headers=operator.headers)
    token = {"Authorization": f"Bearer {r.json()['token']}"}
    await open_inventory(page, served, operator)
    row = page.locator(f'tr[data-device-id="{device["id"]}"]')
    await expect(row.locator("[data-cell=connectivity]")).to_have_text("offline")
    await expect(page.locator("#live")).to_have_text("Live")
    r = await served.http.post(f"/api/v1/devices/{device['id']}/heartbeat", json={}, headers=token)
    assert r.status_code == 200, r.text
    # No reload: the page hears the device's presence and its lifecycle change.
    await expect(row.locator("[data-cell=connectivity]")).to_have_text("online", timeout=2000)
    await expect(row.locator("[data-cell=last-seen] time")).to_have_attribute(
        "title", re.compile("UTC")
    )
    await act(served.http, operator, device, "deploy", location="Roof 3")
    await expect(row.locator("[data-cell=status]")).to_have_text("deployed", timeout=2000)
    await expect(row.locator("[data-cell=location]")).to_have_text("Roof 3", timeout=2000)


async def test_bulk_recall_with_one_refused_device_reported(
    served: Served, page: Page, operator: Actor
):
    made = [await create_device(served.http, operator, name=n, serial_number=f"SN-{n}")
            for n in ("Ant", "Bee", "Cat")]  # fmt: skip
    await act(served.http, operator, made[0], "deploy", location="Site 1")
    await act(served.http, operator, made[1], "deploy", location="Site 2")
    await act(served.http, operator, made[2], "retire")
    await open_inventory(page, served, operator)
    await page.get_by_label("Select all devices on this page").check()
    for name in ("Ant", "Bee", "Cat"):
        await expect(page.get_by_label(f"Select {name}")).to_be_checked()
    await page.get_by_label("Action").select_option(label="Recall to a warehouse")
    await page.get_by_label("Destination").fill("Warehouse A")
    await page.get_by_role("button", name="Apply to the selected devices").click()

    outcomes = page.locator("#bulk-outcomes")
    await expect(page.locator("#h-outcomes")).to_have_text(
        "Recall to a warehouse: 2 of 3 devices changed, 1 refused"
    )
    refused = outcomes.locator("tr[data-outcome=refused]")
    await expect(refused).to_have_count(1)
    await expect(refused.locator("th")).to_have_text("Cat (SN-Cat)")
    await expect(refused).to_contain_text("A device that is retired cannot become in_stock")
    await expect(refused).to_contain_text("Allowed from retired: none.")
    await expect(outcomes.locator("tr[data-outcome=done]")).to_have_count(2)
    # The table shows the new statuses, and the selection is cleared with the reload.
    for device, status in zip(made, ("in stock", "in stock", "retired"), strict=True):
        row = page.locator(f'#inventory-table tr[data-device-id="{device["id"]}"]')
        await expect(row.locator("[data-cell=status]")).to_have_text(status)
    await expect(page.get_by_label("Select Ant")).not_to_be_checked()
    r = await served.http.get(f"/api/v1/devices/{made[0]['id']}", headers=operator.headers)
    assert (r.json()["status"], r.json()["location"]) == ("in_stock", "Warehouse A")

    # A refusal of the whole request is shown next to the form.
    await page.get_by_label("Select Ant").check()
    await page.get_by_label("Action").select_option(label="Deploy")
    await page.get_by_label("Destination").fill("")
    await page.get_by_role("button", name="Apply to the selected devices").click()
    await expect(page.locator("#bulk [data-errors]")).to_contain_text(
        "Deploying needs the location"
    )


IMPORT = (
    "name,type,serial_number,location,status\n"
    "Gauge 1,meter,SN-G1,Warehouse B,in_stock\n"
    "Gauge 2,meter,SN-G2,Site 4,deployed\n"
    "Gauge 3,meter,SN-G3,,deployed\n"
)


async def test_csv_import_dry_run_then_commit(served: Served, page: Page, operator: Actor):
    await open_inventory(page, served, operator)
    await page.get_by_role("link", name="Import devices from a CSV file").click()
    await page.get_by_label("CSV file").set_input_files(
        files=[{"name": "gauges.csv", "mimeType": "text/csv", "buffer": IMPORT.encode()}]
    )
    await page.get_by_role("button", name="Check the file (dry run)").click()
    await expect(page.get_by_role("heading", name="Dry run of gauges.csv")).to_be_visible()
    await expect(page.locator("#import-counts")).to_contain_text(
        "3 rows: 2 would be created, 0 would be updated, 0 unchanged, 1 with errors"
    )
    rows = page.locator("#import-rows tbody tr")
    await expect(rows.nth(0)).to_contain_text("would create")
    await expect(rows.nth(2)).to_contain_text("location: required for a deployed device")
    r = await served.http.get("/api/v1/devices", headers=operator.headers)
    assert r.json()["total"] == 0  # a dry run saves nothing

    await page.get_by_role("button", name="Commit import").click()
    await expect(page.get_by_role("heading", name="Imported gauges.csv")).to_be_visible()
    await expect(page.locator("#import-counts")).to_contain_text(
        "3 rows: 2 created, 0 updated, 0 unchanged, 1 with errors (not imported)"
    )
    await page.get_by_role("link", name="See the inventory").click()
    await expect(page.locator("#inventory-total")).to_have_text("2")
    assert sorted(await row_names(page)) == ["Gauge 1", "Gauge 2"]


async def test_a_viewer_sees_no_write_controls_and_a_forged_write_is_refused(
    served: Served, page: Page, operator: Actor, viewer: Actor
):
    device = await create_device(served.http, operator, name="Keep", serial_number="SN-K")
    await open_inventory(page, served, viewer)
    await expect(page.locator(ROWS)).to_have_count(1)
    await expect(page.get_by_role("checkbox")).to_have_count(0)
    await expect(page.locator("#bulk")).to_have_count(0)
    await expect(page.get_by_role("link", name="Import devices from a CSV file")).to_have_count(0)
    await expect(page.get_by_role("button", name="Apply to the selected devices")).to_have_count(0)
    status = await page.evaluate(
        """async (id) => {
            const body = new URLSearchParams({action: "retired", device: id,
              csrf_token: document.querySelector('meta[name="csrf-token"]').content});
            const r = await fetch("/console/inventory/bulk", {method: "POST", body});
            return r.status;
        }""",
        device["id"],
    )
    assert status == 403
    r = await served.http.get(f"/api/v1/devices/{device['id']}", headers=operator.headers)
    assert r.json()["status"] == "in_stock"


async def test_no_serious_accessibility_violations_in_either_theme(
    served: Served, page: Page, operator: Actor
):
    await import_devices(served.http, operator, 6)
    await open_inventory(page, served, operator)
    await expect(page.locator("#stock-by-location")).to_be_visible()  # the summary is in
    await expect(page.locator("#stock-status-deployed")).to_have_text("4")
    await page.get_by_label("Select Unit 00").check()
    await page.get_by_label("Action").select_option(label="Retire")
    await page.get_by_role("button", name="Apply to the selected devices").click()
    await expect(page.locator("#bulk-outcomes")).to_be_visible()
    assert await serious_violations(page) == []
    await page.get_by_role("button", name="Dark theme").click()
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    assert await serious_violations(page) == []

    await page.goto(served.base_url + "/console/inventory/import")
    await page.get_by_label("CSV file").set_input_files(
        files=[{"name": "gauges.csv", "mimeType": "text/csv", "buffer": IMPORT.encode()}]
    )
    await page.get_by_role("button", name="Check the file (dry run)").click()
    await expect(page.locator("#import-rows")).to_be_visible()
    assert await serious_violations(page) == []  # dark, as chosen
    await page.get_by_role("button", name="Dark theme").click()
    await expect(page.locator("html")).to_have_attribute("data-theme", "light")
    assert await serious_violations(page) == []


async def test_on_a_phone_the_table_scrolls_inside_its_frame(
    browser: Browser, served: Served, operator: Actor
):
    await import_devices(served.http, operator, 6)
    context = await browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = await context.new_page()
        await open_inventory(page, served, operator)
        await expect(page.locator(ROWS)).to_have_count(6)
        frame = page.locator("#inventory-results .table-wrap")
        sizes = await frame.evaluate("e => [e.scrollWidth, e.clientWidth]")
        assert sizes[0] > sizes[1]  # the table is wider than its frame, which scrolls
        assert await frame.evaluate("e => getComputedStyle(e).overflowX") == "auto"
        page_width = await page.evaluate("document.documentElement.scrollWidth")
        assert page_width <= 390  # the page itself does not scroll sideways
    finally:
        await context.close()
