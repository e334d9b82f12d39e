"""The alert rules and webhooks pages in a real browser: a refused rule shows its messages
next to the fields, a test delivery's result appears on the webhook's page; axe-core's
checks on each page in both themes."""

from __future__ import annotations

import asyncio
import re

from playwright.async_api import Page, expect

from conftest import Actor, Served
from console_helpers import browser, page, serious_violations, sign_in
from fieldwatch.runtime import Runtime

__all__ = ["browser", "page"]  # the fixtures


async def both_themes_clean(page: Page) -> None:
    """No serious violations in this theme and the other (the toggle switches)."""
    assert await serious_violations(page) == []
    before = await page.locator("html").get_attribute("data-theme") or "light"
    await page.get_by_role("button", name="Dark theme").click()
    after = "light" if before == "dark" else "dark"
    await expect(page.locator("html")).to_have_attribute("data-theme", after)
    assert await serious_violations(page) == []


async def test_a_rule_is_created_after_its_errors_are_fixed(
    page: Page, served: Served, admin: Actor
):
    await sign_in(page, served, admin)
    await page.get_by_role("link", name="Alert rules").click()
    await expect(page.get_by_role("heading", name="Alert rules")).to_be_visible()
    await page.get_by_label("Name").fill("Too hot")
    await page.get_by_label("Metric").fill("temperature")
    await page.get_by_label("Threshold").fill("hot")
    await page.get_by_label("Must hold for (seconds)").fill("60")
    await page.get_by_role("button", name="Create rule").click()
    await expect(page.locator("#e-threshold")).to_contain_text("valid number")
    await expect(page.get_by_label("Threshold")).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_label("Metric")).to_have_value("temperature")  # kept
    await both_themes_clean(page)

    await page.get_by_label("Threshold").fill("30")
    await page.get_by_role("button", name="Create rule").click()
    await expect(page.get_by_role("status").filter(has_text="The rule is created.")).to_be_visible()
    row = page.locator("#rules-table tr", has_text="Too hot")
    await expect(row).to_contain_text("temperature > 30")
    await expect(row).to_contain_text("60 s")
    await row.get_by_role("link", name="Edit Too hot").click()
    await expect(page.get_by_role("heading", name="Too hot", exact=True)).to_be_visible()
    await both_themes_clean(page)


async def _answer_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A webhook receiver that reads the request and answers 200."""
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    await writer.drain()
    writer.close()


async def test_webhook_pages_and_a_test_delivery(
    page: Page, served: Served, admin: Actor, runtime: Runtime
):
    receiver = await asyncio.start_server(_answer_ok, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{receiver.sockets[0].getsockname()[1]}/hook"
    await sign_in(page, served, admin)
    await page.goto(served.base_url + "/console/webhooks")
    await both_themes_clean(page)
    await page.get_by_label("URL").fill(url)  # loopback: refused unless allowed
    await page.get_by_role("button", name="Create webhook").click()
    await expect(page.locator("#e-url")).to_contain_text("loopback")
    runtime.settings.webhook_allow_private = True
    await page.get_by_label("Description").fill("pager")
    await page.get_by_role("button", name="Create webhook").click()
    secret = page.get_by_role("textbox", name="Signing secret")
    await expect(secret).to_have_value(re.compile(r".{40,}"))
    await both_themes_clean(page)
    # A test delivery: pending, then delivered, shown without a reload.
    await page.get_by_role("button", name="Send a test").click()
    row = page.locator("#deliveries-table tbody tr").first
    await expect(row).to_contain_text("webhook.test")
    await expect(row).to_have_attribute("data-status", "pending")
    assert await runtime.webhooks.run_once() == 1  # the worker's pass (tests drive it)
    await expect(row).to_have_attribute("data-status", "delivered", timeout=5000)
    await expect(row.locator("td").nth(3)).to_have_text("200")
    receiver.close()
    await page.get_by_role("button", name="Disable").click()
    await expect(page.locator("#webhook-enabled")).to_have_text("No")
    await page.get_by_role("button", name="Send a test").click()
    await expect(page.locator("[data-error-scope] [data-errors]")).to_contain_text(
        "Enable the webhook first"
    )
