"""The alerts page in a real browser against a real server: an alert raised by a reading
appears live and is acknowledged from the page; axe-core's checks in both themes."""

from __future__ import annotations

import asyncio

from playwright.async_api import Page, Route, expect

from conftest import Actor, Served
from console_helpers import browser, page, serious_violations, sign_in
from telemetry_helpers import device_with_token, iso, recent

__all__ = ["browser", "page"]  # the fixtures


async def test_an_alert_raised_by_a_reading_appears_live_and_is_acknowledged(
    page: Page, served: Served, operator: Actor
):
    http = served.http
    body = {"name": "Too hot", "metric": "temperature", "operator": ">", "threshold": 30,
            "severity": "critical"}  # fmt: skip
    r = await http.post("/api/v1/alert-rules", json=body, headers=operator.headers)
    assert r.status_code == 201, r.text
    device, token = await device_with_token(http, operator, name="Boiler 3")
    r = await http.put(
        f"/api/v1/devices/{device['id']}/deploy", json={"location": "Plant"},
        headers=operator.headers,
    )  # fmt: skip
    assert r.status_code == 200, r.text

    await sign_in(page, served, operator)
    await page.get_by_role("link", name="Alerts", exact=True).click()
    await expect(page.get_by_role("heading", name="Alerts")).to_be_visible()
    await expect(page.locator("#live")).to_have_text("Live")
    await expect(page.locator("#alerts-count")).to_have_text("No alerts match these filters.")
    await page.evaluate("window.notReloaded = true")

    reading = {"data_type": "temperature", "values": [{"timestamp": iso(recent(2)), "value": 42}]}
    r = await http.post(f"/api/v1/devices/{device['id']}/data", json=reading, headers=token)
    assert r.status_code == 200, r.text

    row = page.locator("#alerts-table tbody tr")
    await expect(row).to_have_count(1, timeout=5000)  # live, without a reload
    await expect(row).to_contain_text("temperature = 42 > 30")
    await expect(row.get_by_role("link", name="Boiler 3")).to_have_attribute(
        "href", f"/console/devices/{device['id']}"
    )
    await expect(row).to_have_attribute("data-acknowledged", "no")
    assert await page.evaluate("window.notReloaded") is True
    assert await serious_violations(page) == []

    await row.get_by_role("button", name="Acknowledge Too hot on Boiler 3").click()
    await expect(page.locator("#action-results")).to_have_text("Too hot on Boiler 3: acknowledged")
    await expect(row).to_have_attribute("data-acknowledged", "yes")
    await expect(row).to_contain_text(f"Acknowledged by {operator.email}")
    r = await http.get("/api/v1/alerts", headers=operator.headers)
    [alert] = r.json()["items"]
    assert alert["acknowledged"] is True and alert["device_id"] == device["id"]
    assert await page.evaluate("window.notReloaded") is True

    # Cleared elsewhere (the API): the shown row follows live.
    r = await http.post(f"/api/v1/alerts/{alert['id']}/clear", headers=operator.headers)
    assert r.status_code == 200, r.text
    await expect(page.locator("#alerts-count")).to_have_text(
        "No alerts match these filters.", timeout=5000
    )

    await page.get_by_role("button", name="Dark theme").click()
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    await page.get_by_label("State").select_option("all")
    await page.get_by_role("button", name="Apply filters").click()
    await expect(row).to_have_attribute("data-status", "cleared")
    assert await serious_violations(page) == []


async def test_selecting_rows_and_acting_on_them(page: Page, served: Served, operator: Actor):
    http = served.http
    body = {"name": "Too hot", "metric": "temperature", "operator": ">", "threshold": 30}
    r = await http.post("/api/v1/alert-rules", json=body, headers=operator.headers)
    assert r.status_code == 201, r.text
    for name in ("North", "South"):
        device, token = await device_with_token(http, operator, name=name)
        r = await http.put(
            f"/api/v1/devices/{device['id']}/deploy", json={"location": "Field"},
            headers=operator.headers,
        )  # fmt: skip
        assert r.status_code == 200, r.text
        reading = {"data_type": "temperature", "values": [{"timestamp": iso(recent(2)),
                                                           "value": 50}]}  # fmt: skip
        r = await http.post(f"/api/v1/devices/{device['id']}/data", json=reading, headers=token)
        assert r.status_code == 200, r.text
    await sign_in(page, served, operator)
    await page.goto(served.base_url + "/console/alerts")
    await expect(page.locator("#alerts-table tbody tr")).to_have_count(2)
    await page.get_by_label("Select Too hot on North").check()
    await page.get_by_role("button", name="Clear selected").click()
    await expect(page.locator("#action-results")).to_have_text("Too hot on North: cleared")
    await expect(page.locator("#alerts-table tbody tr")).to_have_count(1)
    await expect(page.locator("#alerts-table tbody tr")).to_contain_text("South")
    # Select all, then nothing selected: the message shows next to the buttons.
    await page.get_by_label("Select all alerts shown").check()
    await expect(page.get_by_label("Select Too hot on South")).to_be_checked()
    await page.get_by_label("Select all alerts shown").uncheck()
    await page.get_by_role("button", name="Acknowledge selected").click()
    await expect(page.locator("#alerts-form [data-errors]")).to_have_text(
        "Select at least one alert."
    )


async def test_a_live_refresh_keeps_what_is_ticked(page: Page, served: Served, operator: Actor):
    """A new alert refreshes the list: the boxes ticked before it, and one ticked while
    the refresh was on its way (the list answered slowly), are still ticked after it."""
    http = served.http
    body = {"name": "Too hot", "metric": "temperature", "operator": ">", "threshold": 30}
    r = await http.post("/api/v1/alert-rules", json=body, headers=operator.headers)
    assert r.status_code == 201, r.text
    tokens = {}
    for name in ("North", "South", "East"):
        device, tokens[name] = await device_with_token(http, operator, name=name)
        r = await http.put(
            f"/api/v1/devices/{device['id']}/deploy", json={"location": "Field"},
            headers=operator.headers,
        )  # fmt: skip
        assert r.status_code == 200, r.text
        tokens[name] = (device["id"], tokens[name])

    async def too_hot(name: str) -> None:
        device_id, token = tokens[name]
        reading = {"data_type": "temperature",
                   "values": [{"timestamp": iso(recent(2)), "value": 50}]}  # fmt: skip
        r = await http.post(f"/api/v1/devices/{device_id}/data", json=reading, headers=token)
        assert r.status_code == 200, r.text

    await too_hot("North")
    await too_hot("South")
    await sign_in(page, served, operator)
    await page.goto(served.base_url + "/console/alerts")
    await expect(page.locator("#live")).to_have_text("Live")
    rows = page.locator("#alerts-table tbody tr")
    await expect(rows).to_have_count(2)
    await page.get_by_label("Select Too hot on North").check()

    # The refresh's answer is held back until South is ticked.
    asked, ticked = asyncio.Event(), asyncio.Event()

    async def slow_list(route: Route) -> None:
        asked.set()
        await ticked.wait()
        await route.continue_()

    await page.route("**/console/alerts/list*", slow_list)
    await too_hot("East")
    await asyncio.wait_for(asked.wait(), 5)
    await page.get_by_label("Select Too hot on South").check()
    ticked.set()
    await expect(rows).to_have_count(3, timeout=5000)
    await expect(page.get_by_label("Select Too hot on North")).to_be_checked()
    await expect(page.get_by_label("Select Too hot on South")).to_be_checked()
    await expect(page.get_by_label("Select Too hot on East")).not_to_be_checked()
