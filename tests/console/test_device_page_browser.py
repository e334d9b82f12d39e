"""The device page in a real browser against a real server: deploying a device from its
page, a refused transition, another workspace's device, agent tokens, live values from
a WebSocket device, and axe-core's checks in both themes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, expect

from conftest import Actor, Factory, Served, create_device
from console_helpers import browser, page, serious_violations, sign_in
from fieldwatch.auth.roles import Role
from ws_helpers import connected, make_device, recv

__all__ = ["browser", "page"]  # the fixtures

# The tests ask for ``served`` before ``page``: the browser closes its live connection
# before the server stops, as it would for a real user.


async def open_device(page: Page, served: Served, actor: Actor, device_id: str) -> None:
    await sign_in(page, served, actor)
    await page.goto(f"{served.base_url}/console/devices/{device_id}")
    await expect(page.locator("#live")).to_have_text("Live")


async def test_deploy_a_device_from_its_page_and_see_the_audit_row(
    served: Served, page: Page, operator: Actor
):
    device = await create_device(served.http, operator, serial_number="SN-B-DEPLOY")
    await open_device(page, served, operator, device["id"])
    await expect(page.locator("#lifecycle-status")).to_have_text("in stock")
    deploy = page.locator("form[data-action=deploy]")
    await deploy.get_by_label("Location").fill("Dock 4")
    await deploy.get_by_label("Notes (optional)").fill("first install")
    await deploy.get_by_role("button", name="Deploy").click()
    await expect(page.locator("#lifecycle-status")).to_have_text("deployed")
    await expect(page.get_by_role("heading", name="Lifecycle")).to_be_focused()
    newest = page.locator("#audit-log tbody tr").first
    await expect(newest).to_contain_text("in stock → deployed")
    await expect(newest).to_contain_text("location: (none) → Dock 4")
    await expect(newest).to_contain_text("first install")
    await expect(page.locator("#device-location")).to_have_text("Dock 4")
    # The forms are those of a deployed device now.
    actions = page.locator("#lifecycle form")
    await expect(actions).to_have_count(3)
    await expect(page.get_by_role("button", name="Recall to the warehouse")).to_be_visible()
    r = await served.http.get(f"/api/v1/devices/{device['id']}", headers=operator.headers)
    assert (r.json()["status"], r.json()["location"]) == ("deployed", "Dock 4")


async def test_a_refused_transition_shows_the_allowed_statuses(
    served: Served, page: Page, operator: Actor
):
    device = await create_device(served.http, operator, serial_number="SN-B-REFUSED")
    await open_device(page, served, operator, device["id"])
    reserve = page.locator("form[data-action=reserve]")
    await reserve.get_by_label("Notes (optional)").fill("for Monday's job")
    # Someone else deploys the device while this user fills in the form.
    r = await served.http.put(f"/api/v1/devices/{device['id']}/deploy",
                              json={"location": "Field"}, headers=operator.headers)  # fmt: skip
    assert r.status_code == 200
    await expect(page.locator("#lifecycle-status")).to_have_text("deployed", timeout=2000)
    stale = page.locator("#lifecycle-stale")
    await expect(stale).to_be_visible()
    await expect(stale).to_contain_text("The status changed to deployed")
    await reserve.get_by_role("button", name="Reserve").click()
    problem = reserve.get_by_role("alert")
    await expect(problem).to_contain_text("A device that is deployed cannot become reserved.")
    await expect(problem).to_contain_text("Allowed from here: in stock, maintenance, retired.")
    await expect(page.locator("#lifecycle-targets")).to_have_text(
        "From deployed it can go to: in stock, maintenance, retired."
    )
    await page.get_by_role("button", name="Show the actions for the current status").click()
    await expect(page.locator("#lifecycle")).to_have_attribute("data-status", "deployed")
    await expect(page.locator("form[data-action=reserve]")).to_have_count(0)
    await expect(page.get_by_role("button", name="Send to maintenance")).to_be_visible()


async def test_another_workspaces_device_is_a_404_page(
    served: Served, page: Page, operator: Actor, factory: Factory
):
    other = await factory.user(Role.admin, "elsewhere")
    foreign = await create_device(served.http, other, serial_number="SN-B-FOREIGN")
    await sign_in(page, served, operator)
    response = await page.goto(f"{served.base_url}/console/devices/{foreign['id']}")
    assert response is not None and response.status == 404
    await expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    await expect(page.get_by_role("alert").last).to_contain_text("in this workspace")
    assert "SN-B-FOREIGN" not in await page.content()


@pytest.fixture
async def clipboard_page(browser: Browser, served: Served) -> AsyncIterator[Page]:
    """A page allowed to write and read the clipboard (to check what was copied)."""
    context = await browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    try:
        yield await context.new_page()
    finally:
        await context.close()


async def test_a_new_token_is_shown_once_with_a_copy_button_and_can_be_revoked(
    clipboard_page: Page, served: Served, operator: Actor
):
    page = clipboard_page
    device = await create_device(served.http, operator, serial_number="SN-B-TOKEN")
    await open_device(page, served, operator, device["id"])
    await page.get_by_label("Name (optional)").fill("gateway")
    await page.get_by_label("Expires after").select_option(label="90 days")
    await page.get_by_role("button", name="Create token").click()
    secret = page.get_by_label("New agent token")
    await expect(secret).to_be_focused()
    token = await secret.input_value()
    assert token.startswith("fwd_")
    await page.get_by_role("button", name="Copy").click()
    await expect(page.locator("[data-copy-result]")).to_have_text("Copied to the clipboard.")
    assert await page.evaluate("navigator.clipboard.readText()") == token
    r = await served.http.get("/api/v1/device/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    row = page.locator("#token-list tbody tr")
    await expect(row).to_have_attribute("data-state", "active")
    await expect(page.locator("#audit-log tbody tr").first).to_contain_text("token issued")
    # Shown once: not after a reload.
    await page.reload()
    await expect(page.locator("#token-list tbody tr")).to_contain_text("gateway")
    await expect(page.get_by_label("New agent token")).to_have_count(0)
    assert token not in await page.content()
    # Revoke, after confirming.
    dialogs: list[str] = []

    async def accept(dialog) -> None:  # type: ignore[no-untyped-def]
        dialogs.append(dialog.message)
        await dialog.accept()

    page.on("dialog", accept)
    await page.get_by_role("button", name="Revoke gateway").click()
    await expect(page.locator("#token-list tbody tr")).to_have_attribute("data-state", "revoked")
    assert dialogs and dialogs[0].startswith("Revoke the token gateway?")
    await expect(page.locator("#audit-log tbody tr").first).to_contain_text("token revoked")
    r = await served.http.get("/api/v1/device/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401


async def test_without_the_clipboard_the_new_token_is_selected_for_copying(
    served: Served, page: Page, operator: Actor
):
    await page.add_init_script("Object.defineProperty(navigator, 'clipboard', {value: undefined})")
    device = await create_device(served.http, operator, serial_number="SN-B-COPY")
    await open_device(page, served, operator, device["id"])
    await page.get_by_role("button", name="Create token").click()
    secret = page.get_by_label("New agent token")
    await expect(secret).to_have_attribute("readonly", "")
    await page.get_by_role("button", name="Copy").click()
    await expect(page.locator("[data-copy-result]")).to_contain_text("press Ctrl+C")
    await expect(secret).to_be_focused()
    selected = await secret.evaluate("el => el.value.slice(el.selectionStart, el.selectionEnd)")
    assert selected == await secret.input_value() and selected.startswith("fwd_")


async def test_connectivity_and_latest_values_follow_a_websocket_device_live(
    served: Served, page: Page, operator: Actor
):
    device = await make_device(served, operator)
    rule = {"name": "Too hot", "metric": "temperature", "operator": ">", "threshold": 30,
            "severity": "critical"}  # fmt: skip
    r = await served.http.post("/api/v1/alert-rules", json=rule, headers=operator.headers)
    assert r.status_code == 201, r.text
    r = await served.http.put(f"/api/v1/devices/{device.id}/deploy", json={"location": "Roof"},
                              headers=operator.headers)  # fmt: skip
    assert r.status_code == 200, r.text
    await open_device(page, served, operator, device.id)
    await expect(page.locator("#connectivity")).to_have_text("offline")
    await expect(page.locator("#no-active-alerts")).to_be_visible()
    await expect(page.locator("#no-readings")).to_be_visible()
    ws = await connected(served, device)
    try:
        await expect(page.locator("#connectivity")).to_have_text("online", timeout=2000)
        frame = {"type": "telemetry", "id": "t1",
                 "metrics": {"temperature": {"value": 21.5, "unit": "celsius"}}}  # fmt: skip
        await ws.send(json.dumps(frame))
        assert (await recv(ws))["accepted"] == 1
        row = page.locator('#latest-values tr[data-metric="temperature"]')
        await expect(row.locator("[data-value]")).to_have_text("21.5", timeout=2000)
        await expect(row).to_contain_text("celsius")
        # The next reading changes the value in place (the row is not drawn again).
        await row.evaluate("el => { el.dataset.marked = 'yes'; }")
        frame = {"type": "telemetry", "id": "t2", "metrics": {"temperature": 22.125}}
        await ws.send(json.dumps(frame))
        assert (await recv(ws))["accepted"] == 1
        await expect(row.locator("[data-value]")).to_have_text("22.125", timeout=2000)
        await expect(row).to_have_attribute("data-marked", "yes")
        await expect(row).to_contain_text("celsius")
        # A reading over the rule's threshold: the alert appears on the page.
        frame = {"type": "telemetry", "id": "t3", "metrics": {"temperature": 35}}
        await ws.send(json.dumps(frame))
        assert (await recv(ws))["accepted"] == 1
        await expect(page.locator("#alerts")).to_contain_text(
            "Too hot: temperature = 35 > 30", timeout=2000
        )
    finally:
        await ws.close()
    await expect(page.locator("#connectivity")).to_have_text("offline", timeout=5000)


async def test_the_device_page_has_no_serious_accessibility_violations(
    served: Served, page: Page, operator: Actor
):
    device = await create_device(
        served.http, operator, serial_number="SN-B-AXE", specs={"sensor": "BME280"}
    )
    r = await served.http.post(f"/api/v1/devices/{device['id']}/tokens", headers=operator.headers)
    assert r.status_code == 201
    await open_device(page, served, operator, device["id"])
    await page.get_by_role("button", name="Create token").click()
    await expect(page.get_by_label("New agent token")).to_be_visible()
    assert await serious_violations(page) == []
    await page.get_by_role("button", name="Dark theme").click()
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    assert await serious_violations(page) == []


async def test_a_viewer_sees_the_device_but_no_write_controls(
    served: Served, page: Page, operator: Actor, viewer: Actor
):
    device = await create_device(served.http, operator, serial_number="SN-B-VIEWER")
    r = await served.http.post(f"/api/v1/devices/{device['id']}/tokens", headers=operator.headers)
    assert r.status_code == 201
    await open_device(page, served, viewer, device["id"])
    await expect(page.locator("#serial-number")).to_have_text("SN-B-VIEWER")
    await expect(page.locator("#token-list tbody tr")).to_have_count(1)
    await expect(page.locator("#lifecycle form, #tokens form")).to_have_count(0)
    for name in ("Deploy", "Retire", "Create token", "Revoke"):
        await expect(page.get_by_role("button", name=name)).to_have_count(0)
    assert await serious_violations(page) == []
