"""The integrations pages in a real browser against a real server, with data from a real
sync against the Oura stand-in: the catalogue's sunset banner for Fitbit (Connect
disabled with the reason), "Sync now" on the connections page, the sync history
following runs live over Socket.IO as the engine runs them, Retry of a failed run (a new
run shows), the disconnect confirm dialog; a viewer sees no buttons. axe-core's checks
and no JavaScript errors."""

from __future__ import annotations

from playwright.async_api import Dialog, Page, expect

from conftest import Actor, Factory, Served
from console_helpers import browser, page, script_errors, serious_violations, sign_in
from console_sync_helpers import failed_run, oura, synced_ring
from fieldwatch.runtime import Runtime
from standins.vendor import Vendor
from sync_helpers import runs

__all__ = ["browser", "oura", "page"]  # the fixtures

LIVE_MS = 5000


async def test_catalogue_sync_now_live_history_and_retry(
    served: Served, page: Page, runtime: Runtime, operator: Actor, oura: Vendor
) -> None:
    errors = script_errors(page)
    synced = await synced_ring(served.http, operator, runtime)
    failed = await failed_run(served.http, operator, runtime, oura, synced.device_id)
    await sign_in(page, served, operator)
    await page.get_by_role("link", name="Integrations", exact=True).first.click()
    await expect(page.get_by_role("heading", name="Integrations", exact=True)).to_be_visible()
    banner = page.locator("#banner-fitbit")
    await expect(banner).to_contain_text(
        "Support for this API ended on 2026-09-30 and it was switched off in early "
        "November 2026 (it answers 410 Gone)."
    )
    await expect(banner).to_contain_text("Its successor is Google Health API")
    await expect(page.locator("#connect-fitbit")).to_be_disabled()
    await expect(page.locator("#why-fitbit")).to_contain_text("sunset; use google_health")
    await expect(page.locator("#connect-oura")).to_be_enabled()
    assert await serious_violations(page) == []

    await page.get_by_role("link", name="Connections").click()
    await page.get_by_role("button", name="Sync Oura ring gen3 now").click()
    await expect(page.locator("#notice")).to_contain_text("A sync of the device is queued.")
    assert "/connections?done=queued&run=" in page.url  # a reload asks for the page again
    assert await serious_violations(page) == []
    manual = (await runs(runtime, synced.device_id))[-1]

    await page.get_by_role("link", name="Sync history", exact=True).click()
    await expect(page.locator("#live")).to_have_text("Live", timeout=LIVE_MS)
    row = page.locator(f"#run-{manual.id}")
    await expect(row).to_have_attribute("data-status", "queued")
    await expect(page.locator(f"#cancel-{manual.id}")).to_be_visible()
    await expect(page.locator(f"#run-{failed.id}")).to_contain_text("the vendor answered HTTP 503")
    assert await serious_violations(page) == []

    await runtime.sync.run_once()  # the engine runs it: the page follows
    await expect(row).to_have_attribute("data-status", "completed", timeout=LIVE_MS)
    await expect(row.locator(".processed")).not_to_have_text("0")  # the overlap, again

    await page.locator(f"#retry-{failed.id}").click()
    await expect(page.locator("#notice")).to_contain_text("A new run is queued as the retry.")
    retry = (await runs(runtime, synced.device_id))[-1]
    assert (retry.retry_of, retry.attempt) == (failed.id, 2)
    fresh = page.locator(f"#run-{retry.id}")
    await expect(fresh).to_have_attribute("data-status", "queued")
    await expect(page.locator("#runs-table tbody tr").first).to_have_id(f"run-{retry.id}")
    await runtime.sync.run_once()
    await expect(fresh).to_have_attribute("data-status", "completed", timeout=LIVE_MS)

    await page.get_by_label("Status").select_option("failed")
    await page.get_by_role("button", name="Show runs").click()
    await expect(page.locator("#runs-table tbody tr")).to_have_count(1)
    await page.get_by_role("link", name="Data quality", exact=True).click()
    await expect(page.locator(f"#q-{synced.device_id}-heart_rate")).to_have_attribute(
        "data-score", "1.0"
    )
    assert await serious_violations(page) == []
    assert errors == []


async def test_a_viewer_sees_no_buttons_and_an_admin_disconnects_after_confirming(
    served: Served, page: Page, runtime: Runtime, operator: Actor, factory: Factory,
    oura: Vendor,
) -> None:  # fmt: skip
    synced = await synced_ring(served.http, operator, runtime)
    failed = await failed_run(served.http, operator, runtime, oura, synced.device_id)
    viewer = await factory.user("viewer")
    await sign_in(page, served, viewer)
    await page.goto(served.base_url + "/console/integrations/sync")
    await expect(page.locator(f"#run-{failed.id}")).to_contain_text("HTTP 503")
    await expect(page.get_by_role("button", name="Retry")).to_have_count(0)
    await page.get_by_role("link", name="Connections").click()
    await expect(page.locator(f"#device-{synced.device_id}")).to_be_visible()
    await expect(page.get_by_role("button", name="Sync Oura ring gen3 now")).to_have_count(0)
    await expect(page.get_by_role("button", name="Disconnect")).to_have_count(0)
    await page.get_by_role("link", name="Integrations", exact=True).first.click()
    await expect(page.get_by_role("button", name="Connect Oura")).to_have_count(0)

    await page.context.clear_cookies()
    admin = await factory.user("admin")
    await sign_in(page, served, admin)
    await page.goto(served.base_url + "/console/integrations/connections")
    asked: list[str] = []

    async def answer(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await (dialog.dismiss() if len(asked) == 1 else dialog.accept())

    page.on("dialog", answer)
    await page.get_by_role("button", name="Disconnect").click()  # dismissed: nothing
    await expect(page.locator(f"#connection-{synced.connection_id}")).to_have_attribute(
        "data-status", "active"
    )
    await page.get_by_label("Also delete the synced data (purge)").check()
    await page.get_by_role("button", name="Disconnect").click()
    await expect(page.locator("#notice")).to_contain_text("synced readings deleted")
    await expect(page.locator(f"#connection-{synced.connection_id}")).to_have_attribute(
        "data-status", "revoked"
    )
    assert len(asked) == 2 and "Disconnect Oura oura-console-1?" in asked[0]
