"""The console's firmware rollout pages over HTTP: the new-rollout form's preview (the
waves, the devices left out with the reason) and its draft, a refused form's messages
next to their fields, the actions (plain and htmx), the list's status filter, and the
refusals (no CSRF token, a viewer, another workspace)."""

from __future__ import annotations

import html
import re
import uuid
from typing import Any

import httpx
from sqlalchemy import update

from conftest import Actor, Factory
from console_helpers import csrf_of, sign_in_http
from fieldwatch.devices.models import Device
from fieldwatch.runtime import Runtime
from rollout_helpers import (
    ROLLOUTS,
    body,
    create,
    device_reports,
    launch,
    make_artifact,
    make_devices,
    read,
    targets_of,
    updates_of,
)

LIST = "/console/firmware/rollouts"
NEW = LIST + "/new"


def flat(page: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(page))


def words(page: str) -> str:
    """The page's text without its tags."""
    return flat(re.sub(r"<[^>]+>", "", page))


async def post(client: httpx.AsyncClient, url: str, data: dict[str, Any]) -> httpx.Response:
    page = await client.get(LIST)
    return await client.post(url, data={"csrf_token": csrf_of(page.text), **data})


def form(artifact: uuid.UUID, targets: list[uuid.UUID], **fields: Any) -> dict[str, Any]:
    return {"name": "Spring release", "artifact_id": str(artifact), "target_kind": "devices",
            "devices": "\n".join(str(d) for d in targets), "canary": "1",
            "percentages": "50, 100", "soak_s": "600", "failure_pct": "25", "min_finished": "2",
            "on_failure": "abort", "rate_per_minute": "30", "jitter_s": "0", "max_tries": "",
            "window_start": "", "window_end": "", **fields}  # fmt: skip


async def fleet(runtime: Runtime, who: Actor) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """An artifact 2.0.0 for sensors; 3 sensors that can take it, one already on it and a
    meter: (artifact, the five device ids)."""
    artifact = await make_artifact(runtime, who.workspace_id)
    able = await make_devices(runtime, who.workspace_id, 3)
    done = await make_devices(runtime, who.workspace_id, 1, firmware_version="2.0.0")
    meter = await make_devices(runtime, who.workspace_id, 1, type="meter")
    return artifact, [*able, *done, *meter]


async def test_preview_then_create_a_draft(client, runtime: Runtime, operator: Actor):
    artifact, devices = await fleet(runtime, operator)
    await sign_in_http(client, operator.email)
    firmware = (await client.get("/console/firmware")).text
    assert f'href="{NEW}?artifact={artifact}"' in firmware  # "Roll out" of an artifact
    page = await client.get(NEW, params={"artifact": str(artifact)})
    assert page.status_code == 200
    assert f'<option value="{artifact}" selected>2.0.0 (sensor)</option>' in page.text
    r = await post(client, NEW, {**form(artifact, devices), "action": "preview"})
    assert r.status_code == 200, r.text
    text = flat(r.text)
    assert "5 target devices: 3 would be updated, 2 left out." in text
    waves = re.findall(r'<tr><th scope="row">(\d)[^<]*</th><td class="num">(\d+)</td>', r.text)
    assert waves == [("1", "1"), ("2", "1"), ("3", "1")]
    reasons = dict(re.findall(r'data-device-id="([^"]+)" data-wave="" data-reason="([^"]+)"',
                              r.text))  # fmt: skip
    assert reasons == {str(devices[3]): "already_on_version", str(devices[4]): "incompatible_type"}
    assert "left out: already on version (the device already runs 2.0.0)" in words(r.text)
    assert await _rollouts(client, operator) == []  # a preview stores nothing

    r = await post(client, NEW, {**form(artifact, devices), "action": "create"})
    assert r.status_code == 303, r.text
    rollout_id = r.headers["location"].split("/")[-1].split("?")[0]
    stored = await read(client, operator, rollout_id)
    assert (stored["status"], stored["name"], stored["percentages"]) == (
        "draft", "Spring release", [50, 100],
    )  # fmt: skip
    assert (stored["failure_threshold"], stored["min_finished"], stored["on_failure"]) == (
        0.25, 2, "abort",
    )  # fmt: skip
    assert (stored["soak_s"], stored["rate_per_minute"], stored["max_tries"]) == (600, 30, 3)
    assert set(stored["target"]["device_ids"]) == {str(d) for d in devices}
    page = flat((await client.get(r.headers["location"])).text)
    assert "The rollout is created as a draft" in page
    assert "If started now: 3 of 5 target devices updated in 3 waves (1, 1, 1 devices); " \
           "2 left out (already on version: 1, incompatible type: 1)." in page  # fmt: skip
    assert 'id="start-button"' in page and 'id="pause-button"' not in page


async def _rollouts(client: httpx.AsyncClient, who: Actor) -> list[dict[str, Any]]:
    r = await client.get(ROLLOUTS, headers=who.headers)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def test_a_refused_form_shows_each_message_next_to_its_field(
    client, runtime: Runtime, operator: Actor
):
    artifact, devices = await fleet(runtime, operator)
    await sign_in_http(client, operator.email)
    r = await post(client, NEW, {**form(artifact, devices, percentages="50"), "action": "create"})
    assert r.status_code == 422
    assert re.search(r'id="re-percentages">the last percentage must be 100<', r.text)
    assert 'id="r-percentages" name="percentages" value="50" aria-describedby="rh-percentages ' \
           're-percentages" aria-invalid="true" autofocus' in r.text  # fmt: skip
    r = await post(client, NEW, {**form(artifact, devices, devices="SN-NOPE", canary="x"),
                                 "action": "preview"})  # fmt: skip
    assert r.status_code == 422
    assert 'id="re-devices">no such device: SN-NOPE<' in r.text
    r = await post(client, NEW, {**form(artifact, devices, target_kind="group"),
                                 "action": "preview"})  # fmt: skip
    assert r.status_code == 422 and 'id="re-group_id">choose a group<' in r.text
    r = await post(client, NEW, {**form(artifact, devices), "artifact_id": "",
                                 "action": "preview"})  # fmt: skip
    assert r.status_code == 422
    assert 'id="re-artifact_id">choose the firmware to roll out<' in r.text
    r = await post(client, NEW, {**form(artifact, devices, target_kind="filter"),
                                 "action": "preview"})  # fmt: skip
    assert r.status_code == 422 and "re-filter" in r.text and "needs at least one field" in r.text
    r = await post(client, NEW, {**form(uuid.uuid4(), devices), "action": "create"})
    assert r.status_code == 422 and 'id="re-artifact_id">no such artifact<' in r.text
    r = await post(client, NEW, {**form(artifact, devices, canary="many"), "action": "create"})
    assert r.status_code == 422 and 'id="re-canary">' in r.text
    assert await _rollouts(client, operator) == []


async def test_actions_list_filter_and_refusals(
    client, runtime: Runtime, operator: Actor, viewer: Actor, factory: Factory
):
    artifact, devices = await fleet(runtime, operator)
    draft = await create(client, operator, body(artifact, devices[:3], name="Second"))
    rid = draft["id"]
    await sign_in_http(client, operator.email)
    page = f"{LIST}/{rid}"
    r = await client.post(f"{page}/start", data={})  # no CSRF token
    assert r.status_code == 403 and (await read(client, operator, rid))["status"] == "draft"
    r = await post(client, f"{page}/start", {})
    assert r.status_code == 303 and r.headers["location"] == f"{page}?done=start"
    assert (await read(client, operator, rid))["status"] == "running"
    csrf = csrf_of((await client.get(page)).text)
    htmx = {"hx-request": "true", "x-csrf-token": csrf}
    r = await client.post(f"{page}/pause", headers=htmx)
    assert r.status_code == 200 and r.text.lstrip().startswith('<div id="rollout-live"')
    assert 'id="resume-button"' in r.text and 'id="abort-button"' in r.text
    assert f"paused by user:{operator.email}" in r.text
    r = await client.post(f"{page}/pause", headers=htmx)  # not running: 409, a fragment
    assert r.status_code == 409 and "only a running rollout can be paused" in r.text
    assert 'class="problem"' in r.text and "<html" not in r.text
    paused = flat((await client.get(LIST, params={"status": "paused"})).text)
    assert "Second" in paused and "0 of 3 completed" in paused
    assert "Second" not in flat((await client.get(LIST, params={"status": "draft"})).text)
    assert (await client.post(f"{page}/explode", headers=htmx)).status_code == 404

    other = await factory.user("operator", workspace="globex")
    their_artifact = await make_artifact(runtime, other.workspace_id)
    their_devices = await make_devices(runtime, other.workspace_id, 1)
    theirs = await create(client, other, body(their_artifact, their_devices))
    assert (await client.get(f"{LIST}/{theirs['id']}")).status_code == 404
    assert (await client.post(f"{LIST}/{theirs['id']}/start", headers=htmx)).status_code == 404

    client.cookies.clear()
    await sign_in_http(client, viewer.email)
    text = (await client.get(page)).text
    assert "Rollout Second" in text and 'id="resume-button"' not in text
    assert "abort-button" not in text and "New rollout" not in (await client.get(LIST)).text
    assert (await client.get(NEW)).status_code == 403
    r = await post(client, f"{page}/resume", {})
    assert r.status_code == 403 and (await read(client, operator, rid))["status"] == "paused"
    r = await post(client, NEW, {**form(artifact, devices), "action": "create"})
    assert r.status_code == 403 and len(await _rollouts(client, operator)) == 1


async def test_the_page_shows_figures_waves_and_devices(client, runtime: Runtime, operator: Actor):
    """A canary that fails (the threshold lets it go on), then a wave with a device that
    is no longer deployed (skipped) and one released: what the page and its parts show."""
    artifact = await make_artifact(runtime, operator.workspace_id)
    devices = await make_devices(runtime, operator.workspace_id, 3)
    data = body(artifact, devices, canary=1, failure_threshold=1, name="Figures")
    rid = await launch(client, operator, data)
    later = [t.device_id for t in await targets_of(runtime, rid) if t.wave == 2]
    async with runtime.uow() as uow:
        await uow.session.execute(update(Device).where(Device.id == later[0])
                                  .values(status="maintenance"))  # fmt: skip
        await uow.commit()
    await runtime.rollouts.run()
    [canary] = await updates_of(runtime, rid)
    await device_reports(runtime, canary.device_id, canary.command_id, "failed",
                         reason="install_failed")  # fmt: skip
    await runtime.rollouts.run()  # wave 1 ends, soaks 0 s
    await runtime.rollouts.run()  # wave 2 releases its devices
    await sign_in_http(client, operator.email)
    page = await client.get(f"{LIST}/{rid}")
    figures = dict(re.findall(r'<dd id="fig-([a-z_]+)" data-value="(\d+)">', page.text))
    assert figures == {"targets": "3", "pending": "0", "in_progress": "1", "completed": "0",
                       "failed": "1", "skipped": "1", "cancelled": "0", "expired": "0"}  # fmt: skip
    text = words(page.text)
    assert "Failed: install failed 1" in text and "In progress: pending 1" in text
    assert "0 completed · 1 failed (install failed 1) · 0 in progress · 0 not released" in text
    assert re.search(r'id="wave-1" data-status="completed"', page.text)
    assert re.search(r'id="wave-2" data-status="running"', page.text)
    states = dict(re.findall(r'<tr id="device-([^"]+)" data-state="([a-z]+)">', page.text))
    assert states == {str(canary.device_id): "failed", str(later[0]): "skipped",
                      str(later[1]): "pending"}  # fmt: skip
    part = await client.get(f"{LIST}/{rid}/devices", params={"state": "failed"})
    assert re.findall(r'<tr id="device-([^"]+)"', part.text) == [str(canary.device_id)]
    assert "install failed" in part.text and "<html" not in part.text
    part = await client.get(f"{LIST}/{rid}/devices", params={"wave": "2", "offset": "1"})
    assert len(re.findall(r'<tr id="device-', part.text)) == 1
    assert 'data-query="wave=2&amp;offset=1"' in part.text  # what a live refresh asks again
    live = await client.get(f"{LIST}/{rid}/live")
    assert live.text.lstrip().startswith('<div id="rollout-live"')
    assert 'id="pause-button"' in live.text and "Failed: install failed 1" in words(live.text)
    listing = words((await client.get(LIST)).text)
    assert "0 of 3 completed, 1 failed" in listing
