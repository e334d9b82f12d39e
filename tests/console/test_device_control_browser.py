"""The device page's control section in a real browser against a real server, with a
real WebSocket device: a command sent from the page reaches the device, which answers,
and its row turns completed without a reload; the desired configuration edited on the
page (a wrong JSON explained next to it), its difference shown, and the device's report
of it applied arriving live. axe-core in the light and the dark theme."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from playwright.async_api import Page, expect
from websockets.asyncio.client import ClientConnection

from conftest import Actor, Factory, Served
from console_helpers import browser, page, serious_violations, sign_in
from ws_helpers import connected, make_device

__all__ = ["browser", "page"]  # the fixtures

LIVE_MS = 5000


async def device_answers(
    ws: ClientConnection, seen: list[dict[str, Any]], go: asyncio.Event | None = None
) -> None:
    """A device that acknowledges every command (once ``go`` is set), then completes it
    with a result (``{"pong": <echo parameter>}``), and reports every configuration
    applied."""
    async for raw in ws:
        frame = json.loads(raw)
        seen.append(frame)
        if frame.get("type") == "command":
            if go is not None:
                await go.wait()
            ref = frame["command_id"]
            await ws.send(json.dumps({"type": "command_ack", "command_id": ref}))
            result = {"pong": frame["params"].get("echo")}
            await ws.send(
                json.dumps({"type": "command_result", "command_id": ref,
                            "status": "completed", "result": result})
            )  # fmt: skip
        elif frame.get("type") == "config":
            await ws.send(json.dumps({"type": "config_applied", "version": frame["version"]}))


async def open_device_page(page: Page, served: Served, actor: Actor, device_id: str) -> None:
    await sign_in(page, served, actor)
    await page.goto(f"{served.base_url}/console/devices/{device_id}")
    await expect(page.locator("#live")).to_have_text("Live")
    await expect(page.get_by_role("heading", name="Configuration", exact=True)).to_be_visible()
    await expect(page.locator("#control")).not_to_have_attribute("aria-busy", "true")
    # Settled: the section's catch-up fetches after connecting are over, and the live
    # connection has left long-polling for its WebSocket.
    await expect(page.locator("#control [aria-busy]")).to_have_count(0)
    await page.wait_for_function(
        "window.Fieldwatch.device.live.socket.io.engine.transport.name === 'websocket'"
    )
    await page.evaluate("window.notReloaded = true")


async def test_a_command_sent_from_the_device_page_completes_live(
    served: Served, page: Page, factory: Factory
):
    operator = await factory.user("operator")
    device = await make_device(served, operator)
    ws = await connected(served, device)
    seen: list[dict[str, Any]] = []
    go = asyncio.Event()
    answering = asyncio.create_task(device_answers(ws, seen, go))
    try:
        await open_device_page(page, served, operator, device.id)
        await page.get_by_label("Command", exact=True).fill("ping")
        await page.get_by_label("Parameters (a JSON object)").fill('{"echo": 7}')
        await page.get_by_role("button", name="Send command").click()
        await expect(page.locator("#control-sent")).to_contain_text("Command ping was sent")

        row = page.locator("#control-commands tbody tr")
        await expect(row).to_have_count(1)
        # Sent to the connected device, which holds its answer until the page shows so.
        await expect(row.locator("[data-state]")).to_have_text("sent")
        await expect(row.get_by_role("button", name="Cancel")).to_be_visible()
        go.set()
        await expect(row.locator("[data-state]")).to_have_text("completed", timeout=LIVE_MS)
        await expect(row.locator(".outcome")).to_have_text('{"pong": 7}')
        await expect(row.get_by_role("button", name="Cancel")).to_have_count(0)
        assert await page.evaluate("window.notReloaded") is True
        commands = [f for f in seen if f.get("type") == "command"]
        assert [(f["command"], f["params"]) for f in commands] == [("ping", {"echo": 7})]
        # Local times, with the UTC value on hover.
        created = row.locator("time").first
        await expect(created).to_have_attribute("title", re.compile(r"^\d{4}-\d\d-\d\dT.*Z UTC$"))
    finally:
        answering.cancel()
        await ws.close()


async def test_the_configuration_is_edited_on_the_page_and_applied_live(
    served: Served, page: Page, factory: Factory
):
    operator = await factory.user("operator")
    device = await make_device(served, operator)
    await open_device_page(page, served, operator, device.id)
    state = page.locator("#control-config-state")
    await expect(state).to_have_text("No desired configuration has been set for this device.")

    desired = page.get_by_label("Desired configuration (a JSON object)")
    await desired.fill('{"interval": 30 "mode": "eco"}')
    await page.get_by_role("button", name="Save desired configuration").click()
    error = page.locator("#control-desired-error")
    await expect(error).to_have_text("Not valid JSON: Expecting ',' delimiter (line 1, column 17).")
    await expect(desired).to_have_attribute("aria-invalid", "true")
    await expect(desired).to_have_accessible_description(
        "The whole document: a key left out is removed from the desired configuration. "
        "Not valid JSON: Expecting ',' delimiter (line 1, column 17)."
    )
    await expect(page.locator("#control-config-form [data-errors]")).to_contain_text(
        "The desired configuration was not saved"
    )

    await desired.fill('{"interval": 30, "led": {"on": true}}')
    await page.get_by_role("button", name="Save desired configuration").click()
    await expect(page.locator("#control-config-saved")).to_contain_text("Saved as version 1")
    await expect(error).to_have_count(0)
    await expect(state).to_contain_text("Pending: version 1 is desired")
    rows = page.locator("#control-config tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0)).to_have_attribute("data-change", "added")
    await expect(rows.nth(0)).to_contain_text("interval")
    await expect(rows.nth(0)).to_contain_text("added: not on the device yet")
    assert await serious_violations(page) == []
    await page.get_by_role("button", name="Dark theme").click()
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    assert await serious_violations(page) == []

    # A refused draft replaces the last answer's notice; the same document again is no change.
    await desired.fill('{"interval": 30, "led": {"on": true},}')
    await page.get_by_role("button", name="Save desired configuration").click()
    await expect(error).to_contain_text("Not valid JSON")
    await expect(page.locator("#control-config-saved")).to_have_count(0)
    await desired.fill('{"interval": 30, "led": {"on": true}}')
    await page.get_by_role("button", name="Save desired configuration").click()
    await expect(page.locator("#control-config-saved")).to_contain_text("No change")

    # The device connects, gets the configuration pushed and reports it applied: the
    # page hears it live.
    ws = await connected(served, device)
    answering = asyncio.create_task(device_answers(ws, []))
    try:
        await expect(state).to_contain_text(
            "Applied: the device reports version 1", timeout=LIVE_MS
        )
        await expect(rows).to_have_count(2)  # interval, led.on
        await expect(page.locator('#control-config tr[data-change="same"]')).to_have_count(2)
        # A change saved while the device is connected: pushed at once, applied, live.
        await expect(desired).to_have_value(
            '{\n  "interval": 30,\n  "led": {\n    "on": true\n  }\n}'
        )
        await desired.fill('{"interval": 60, "led": {"on": true}}')
        await page.get_by_role("button", name="Save desired configuration").click()
        await expect(page.locator("#control-config-saved")).to_contain_text("version 2")
        await expect(state).to_contain_text("the device reports version 2", timeout=LIVE_MS)
        await expect(rows.nth(0)).to_contain_text("60")
        assert await page.evaluate("window.notReloaded") is True
    finally:
        answering.cancel()
        await ws.close()


async def test_a_viewer_sees_the_section_without_controls(
    served: Served, page: Page, factory: Factory
):
    operator = await factory.user("operator")
    viewer = await factory.user("viewer")
    device = await make_device(served, operator)
    r = await served.http.post(
        f"/api/v1/devices/{device.id}/commands", json={"command": "reboot"},
        headers=operator.headers,
    )  # fmt: skip
    assert r.status_code == 201
    await open_device_page(page, served, viewer, device.id)
    row = page.locator("#control-commands tbody tr")
    await expect(row.locator("[data-state]")).to_have_text("pending")
    control = page.locator("#control")
    await expect(control.locator("form, textarea, input")).to_have_count(0)
    await expect(control.get_by_role("button")).to_have_count(0)
    assert await serious_violations(page) == []


async def test_a_waiting_command_is_cancelled_from_its_row(
    served: Served, page: Page, factory: Factory
):
    operator = await factory.user("operator")
    device = await make_device(served, operator)  # not connected: its commands wait
    for name in ("first", "second"):
        r = await served.http.post(
            f"/api/v1/devices/{device.id}/commands", json={"command": name},
            headers=operator.headers,
        )  # fmt: skip
        assert r.status_code == 201
    await open_device_page(page, served, operator, device.id)
    rows = page.locator("#control-commands tbody tr")
    await expect(rows.locator("[data-state]")).to_have_text(["pending", "pending"])
    cancel = rows.nth(1).get_by_role("button", name="Cancel")
    await expect(cancel).to_have_accessible_description("first")
    await cancel.focus()
    await page.keyboard.press("Enter")
    await expect(rows.locator("[data-state]")).to_have_text(["pending", "cancelled"])
    await expect(rows.nth(1).get_by_role("button", name="Cancel")).to_have_count(0)
    await expect(page.locator("#control [data-errors]:not(:empty)")).to_have_count(0)
    r = await served.http.get(f"/api/v1/devices/{device.id}/commands", headers=operator.headers)
    assert [c["status"] for c in r.json()["items"]] == ["pending", "cancelled"]
