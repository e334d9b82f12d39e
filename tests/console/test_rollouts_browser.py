"""The firmware rollout pages in a real browser against a real server: an operator
previews a rollout (a wrong field is shown next to it; the device left out says why),
creates the draft and starts it; real WebSocket devices take the update and the page's
figures follow live, keeping the keyboard focus; pause, resume and abort from the
buttons. A viewer sees the figures without any action. No JavaScript errors; axe-core's
checks."""

from __future__ import annotations

import asyncio
import json
import uuid

from playwright.async_api import Page, expect
from sqlalchemy import update

from conftest import Actor, Served
from console_helpers import browser, page, script_errors, serious_violations, sign_in
from fieldwatch.devices.models import Device
from fieldwatch.runtime import Runtime
from firmware_helpers import report, update_frame
from rollout_helpers import ROLLOUTS, body, launch, make_artifact, make_devices
from telemetry_helpers import device_with_token
from ws_helpers import Device as WsDevice
from ws_helpers import connected, recv

__all__ = ["browser", "page"]  # the fixtures

LIVE_MS = 5000


async def ws_device(served: Served, who: Actor, name: str) -> WsDevice:
    device, headers = await device_with_token(served.http, who, name=name)
    return WsDevice(device["id"], headers["Authorization"].split()[1], headers)


async def deployed_on_1(runtime: Runtime, ids: list[str]) -> None:
    async with runtime.uow() as uow:
        await uow.session.execute(
            update(Device)
            .where(Device.id.in_([uuid.UUID(i) for i in ids]))
            .values(status="deployed", firmware_version="1.0.0")
        )
        await uow.commit()


async def test_preview_create_start_and_follow_live(
    served: Served, page: Page, runtime: Runtime, operator: Actor
):
    errors = script_errors(page)
    await make_artifact(runtime, operator.workspace_id)
    devices = [await ws_device(served, operator, name) for name in ("North", "South")]
    await deployed_on_1(runtime, [d.id for d in devices])
    [on_it] = await make_devices(runtime, operator.workspace_id, 1, firmware_version="2.0.0")

    await sign_in(page, served, operator)
    await page.get_by_role("link", name="Rollouts", exact=True).click()
    await page.get_by_role("link", name="New rollout").click()
    await page.get_by_label("Name").fill("Spring release")
    await page.get_by_label("Firmware", exact=True).select_option(label="2.0.0 (sensor)")
    await page.get_by_label("A list of devices").check()
    await expect(page.get_by_label("Group", exact=True)).to_be_hidden()
    ids = "\n".join([*(d.id for d in devices), str(on_it)])
    await page.get_by_label("Devices", exact=True).fill(ids)
    await page.get_by_label("Percentages").fill("50")
    await page.get_by_label("Soak (seconds)").fill("3600")
    await page.get_by_role("button", name="Preview").click()
    await expect(page.locator("#re-percentages")).to_have_text("the last percentage must be 100")
    await expect(page.get_by_label("Percentages")).to_be_focused()
    await expect(page.get_by_label("Devices", exact=True)).to_have_value(ids)  # kept

    await page.get_by_label("Percentages").fill("100")
    await page.get_by_role("button", name="Preview").click()
    await expect(page.locator("#preview-summary")).to_contain_text(
        "3 target devices: 2 would be updated, 1 left out."
    )
    left_out = page.locator(f'#preview-devices tr[data-device-id="{on_it}"]')
    await expect(left_out).to_contain_text("left out: already on version")
    await expect(left_out).to_contain_text("the device already runs 2.0.0")
    await expect(page.locator("#preview-waves tbody tr")).to_have_count(2)
    assert await serious_violations(page) == []

    await page.get_by_role("button", name="Create draft").click()
    await expect(page.get_by_role("heading", name="Rollout Spring release")).to_be_visible()
    await expect(page.locator("#notice")).to_contain_text("created as a draft")
    await expect(page.locator("#draft-plan")).to_contain_text("2 of 3 target devices")
    await expect(page.locator("#live")).to_have_text("Live")
    await page.evaluate("window.notReloaded = true")
    await page.get_by_role("button", name="Start").click()
    await expect(page.locator("#rollout-status")).to_have_text("running")
    await expect(page.locator("#pause-button")).to_be_focused()  # the new part's button
    # The start time and the notice belong to the live part: a start shows the time and
    # drops the draft's notice without a reload.
    await expect(page.locator("#rollout-started")).not_to_have_text("—")
    await expect(page.locator("#notice")).to_have_count(0)
    rollout_id = await page.locator("#rollout").get_attribute("data-rollout-id")
    await expect(page.locator("#devices-table tbody tr")).to_have_count(2)

    r = await served.http.get(f"{ROLLOUTS}/{rollout_id}/devices?wave=1", headers=operator.headers)
    [canary_id] = [i["device_id"] for i in r.json()["items"]]
    canary = next(d for d in devices if d.id == canary_id)
    ws = await connected(served, canary)
    await runtime.rollouts.run()
    frame = await update_frame(ws)
    assert frame["version"] == "2.0.0"
    await report(ws, frame["update_id"], "downloading")
    await expect(page.locator("#fig-in_progress")).to_have_text("1", timeout=LIVE_MS)
    await expect(page.locator("#in-progress-states")).to_have_text("In progress: downloading 1")
    await expect(page.locator(f"#device-{canary_id}")).to_have_attribute(
        "data-state", "downloading"
    )
    await expect(page.locator("#pause-button")).to_be_focused()  # kept across the refresh

    await report(ws, frame["update_id"], "installing")
    await ws.send(json.dumps({"type": "heartbeat", "id": "hb", "firmware_version": "2.0.0"}))
    assert (await recv(ws))["type"] == "ack"
    await expect(page.locator("#fig-completed")).to_have_text("1", timeout=LIVE_MS)
    await runtime.rollouts.run()  # the canary's wave is done: it soaks
    await expect(page.locator("#wave-1")).to_have_attribute("data-status", "soaking")
    await expect(page.locator("#wave-1 progress")).to_have_attribute("value", "1")
    await expect(page.locator("#fig-pending")).to_have_text("1")

    await page.get_by_role("button", name="Pause").click()
    await expect(page.locator("#rollout-status")).to_have_text("paused")
    await expect(page.locator("#rollout-reason")).to_have_text(f"paused by user:{operator.email}")
    await expect(page.locator("#resume-button")).to_be_focused()
    await page.keyboard.press("Enter")  # resume, by keyboard
    await expect(page.locator("#rollout-status")).to_have_text("running")
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.get_by_role("button", name="Abort").click()
    await expect(page.locator("#rollout-status")).to_have_text("aborted")
    await expect(page.locator("#rollout-live button")).to_have_count(0)
    assert await page.evaluate("window.notReloaded === true")
    await ws.close()

    await page.get_by_role("link", name="Firmware rollouts").click()
    row = page.locator(f"#rollout-{rollout_id}")
    await expect(row).to_have_attribute("data-status", "aborted")
    await expect(row).to_contain_text("1 of 2 completed")
    assert errors == []


async def test_a_viewer_sees_the_figures_without_actions(
    served: Served, page: Page, runtime: Runtime, operator: Actor, viewer: Actor
):
    errors = script_errors(page)
    artifact = await make_artifact(runtime, operator.workspace_id)
    devices = await make_devices(runtime, operator.workspace_id, 3)
    rollout_id = await launch(served.http, operator, body(artifact, devices, soak_s=3600))
    await sign_in(page, served, viewer)
    await page.goto(f"{served.base_url}/console/firmware/rollouts")
    await expect(page.get_by_role("link", name="New rollout")).to_have_count(0)
    await page.get_by_role("link", name="Spring release").click()
    await expect(page.locator("#rollout-status")).to_have_text("running")
    await expect(page.locator("#fig-targets")).to_have_text("3")
    await expect(page.locator("#live")).to_have_text("Live")
    await expect(page.get_by_role("button", name="Pause")).to_have_count(0)
    await expect(page.get_by_role("button", name="Abort")).to_have_count(0)
    # Paused elsewhere: the viewer's page follows, still without a button.
    r = await served.http.post(f"{ROLLOUTS}/{rollout_id}/pause", headers=operator.headers)
    assert r.status_code == 200, r.text
    await expect(page.locator("#rollout-status")).to_have_text("paused", timeout=LIVE_MS)
    await expect(page.get_by_role("button", name="Resume")).to_have_count(0)
    assert await serious_violations(page) == []
    await page.get_by_role("button", name="Dark theme").click()
    await expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    assert await serious_violations(page) == []
    assert errors == []
