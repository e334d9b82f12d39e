"""The device page's firmware part in a real browser against a real server: an operator
starts an update from the page, and when the update changes elsewhere (cancelled over
the API) the part follows from the ``firmware`` event without a reload."""

from __future__ import annotations

from playwright.async_api import Page, expect

from conftest import Actor, Served, create_device
from console_helpers import browser, page, sign_in
from fieldwatch.runtime import Runtime
from firmware_helpers import add_artifact

__all__ = ["browser", "page"]  # the fixtures

LIVE_MS = 5000


async def test_an_update_started_on_the_page_follows_live(
    served: Served, page: Page, runtime: Runtime, operator: Actor
):
    await add_artifact(runtime, operator.workspace_id, "1.5.0")
    device = await create_device(served.http, operator, type="sensor")
    await sign_in(page, served, operator)
    await page.goto(f"{served.base_url}/console/devices/{device['id']}")
    await page.get_by_label("Firmware for sensor").select_option(label="1.5.0")
    await page.get_by_role("button", name="Update firmware").click()
    await expect(page.locator("#firmware-part [role=status]")).to_contain_text(
        "The update is started"
    )
    row = page.locator("#firmware-updates tbody tr")
    await expect(row).to_have_count(1)
    await expect(row).to_have_attribute("data-state", "pending")
    await expect(page.locator("#live")).to_have_text("Live")

    await page.evaluate("window.notReloaded = true")
    update_id = await row.get_attribute("data-update-id")
    r = await served.http.post(
        f"/api/v1/firmware/updates/{update_id}/cancel", headers=operator.headers
    )
    assert r.status_code == 200, r.text
    await expect(row).to_have_attribute("data-state", "cancelled", timeout=LIVE_MS)
    await expect(row.get_by_role("button", name="Cancel the update to 1.5.0")).to_have_count(0)
    assert await page.evaluate("window.notReloaded === true")
