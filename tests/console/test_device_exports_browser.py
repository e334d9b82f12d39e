"""The health export part in a real browser against a real server: uploading an Apple
Health export from the device page, the run followed until it completed, a refused
file's reason in the form, and axe-core's checks."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from playwright.async_api import Page, expect

from conftest import Actor, Served, create_device
from console_helpers import browser, page, serious_violations, sign_in
from export_helpers import BILLION_LAUGHS, apple_xml, record
from fieldwatch.runtime import Runtime

WHEN = datetime.now(timezone(timedelta(hours=2))).replace(microsecond=0) - timedelta(days=1)
EXPORT = apple_xml([record("HKQuantityTypeIdentifierHeartRate", WHEN, "61", "count/min")])

__all__ = ["browser", "page"]  # the fixtures


async def test_upload_an_export_and_follow_its_run(
    served: Served, page: Page, operator: Actor, runtime: Runtime, tmp_path
) -> None:
    phone = await create_device(served.http, operator, name="Ana's iPhone",
                                type="apple_health_iphone")  # fmt: skip
    good = tmp_path / "export.xml"
    good.write_bytes(EXPORT)
    bad = tmp_path / "bomb.xml"
    bad.write_bytes(apple_xml([record("HKQuantityTypeIdentifierHeartRate", WHEN, "1")],
                              dtd=BILLION_LAUGHS))  # fmt: skip
    await sign_in(page, served, operator)
    await page.goto(f"{served.base_url}/console/devices/{phone['id']}")
    part = page.locator("#health-export")
    await expect(part.locator("caption")).to_have_text("No export uploaded yet")
    assert await serious_violations(page) == []

    await part.get_by_label("Apple Health export (export.zip or export.xml)").set_input_files(bad)
    await part.get_by_role("button", name="Upload export").click()
    await expect(part.locator("[data-errors]")).to_contain_text("declares entities")

    await part.get_by_label("Apple Health export (export.zip or export.xml)").set_input_files(good)
    await part.get_by_role("button", name="Upload export").click()
    await expect(part.get_by_role("status")).to_contain_text("Export export.xml uploaded")
    row = part.locator("#export-runs tbody tr").first
    await expect(row).to_have_attribute("data-status", "queued")
    await runtime.sync.run_once()
    await expect(row).to_have_attribute("data-status", "completed", timeout=10_000)
    await expect(row).to_contain_text("bulk")
    assert await serious_violations(page) == []
