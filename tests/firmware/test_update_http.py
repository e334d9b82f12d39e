"""Devices that sleep and poll: the update over the HTTP device API (agent token)."""

from __future__ import annotations

import hashlib
import time
import uuid
from urllib.parse import parse_qsl, urlsplit

import httpx

from artifact_helpers import uploaded
from conftest import Actor, Factory, create_device, problem
from fieldwatch.commands.models import Command
from fieldwatch.runtime import Runtime
from firmware_helpers import add_artifact, read_command, read_update, start_update
from telemetry_helpers import device_with_token

NEXT = "/api/v1/device/firmware/next"


def state_path(update_id: str) -> str:
    return f"/api/v1/device/firmware/updates/{update_id}/state"


async def polling_device(client: httpx.AsyncClient, op: Actor) -> tuple[dict, dict[str, str]]:
    return await device_with_token(client, op, firmware_version="1.0.0")


async def test_poll_report_and_complete_by_the_polled_version(
    client: httpx.AsyncClient, runtime: Runtime, operator: Actor
):
    runtime.settings.firmware_poll_interval_s = 600
    device, headers = await polling_device(client, operator)
    r = await client.get(NEXT, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"action": "none", "update": None, "poll_after_s": 600}

    artifact = await add_artifact(runtime, operator.workspace_id, "1.5.0")
    update_id = (await start_update(client, operator, device["id"], artifact_id=artifact["id"]))[
        "update_id"
    ]
    r = await client.get(NEXT, params={"version": "1.0.0"}, headers=headers)
    body = r.json()
    assert (body["action"], body["poll_after_s"]) == ("update", 30)
    message = body["update"]
    assert (message["update_id"], message["version"], message["attempt"]) == (update_id, "1.5.0", 1)
    assert message["url"].startswith("http://") and "sig=" in message["url"]
    command = await read_command(client, operator, update_id)
    assert (command["status"], command["transport"], command["attempts"]) == ("sent", "http", 1)
    assert (await read_update(client, operator, update_id))["state"] == "sent"

    for state, extra, expected in [
        ("downloading", {"bytes": 512}, "downloading"),
        ("acknowledged", {}, "downloading"),  # earlier: answered, ignored
        ("installing", {}, "installing"),
        ("rebooting", {}, "rebooting"),
    ]:
        body = {"state": state, **extra}
        r = await client.post(state_path(update_id), json=body, headers=headers)
        assert r.status_code == 200, r.text
        assert r.json() == {"update_id": update_id, "state": expected, "tries": 1}
    assert (await read_command(client, operator, update_id))["status"] == "acknowledged"

    # Back from the reboot, the poll reports the new version: completed, nothing to do.
    r = await client.get(NEXT, params={"version": "1.5.0"}, headers=headers)
    assert r.json() == {"action": "none", "update": None, "poll_after_s": 600}
    done = await read_update(client, operator, update_id)
    assert done["state"] == "completed"
    assert (await read_command(client, operator, update_id))["status"] == "completed"
    r = await client.get(f"/api/v1/devices/{device['id']}", headers=operator.headers)
    assert r.json()["firmware_version"] == "1.5.0"


async def test_an_acknowledged_update_is_handed_out_again_without_a_new_send(
    client: httpx.AsyncClient, runtime: Runtime, operator: Actor
):
    device, headers = await polling_device(client, operator)
    await add_artifact(runtime, operator.workspace_id, "1.5.0")
    update_id = (await start_update(client, operator, device["id"], version="1.5.0"))["update_id"]
    assert (await client.get(NEXT, headers=headers)).json()["action"] == "update"
    r = await client.post(state_path(update_id), json={"state": "acknowledged"}, headers=headers)
    assert r.json()["state"] == "acknowledged"
    again = (await client.get(NEXT, headers=headers)).json()
    assert (again["action"], again["update"]["update_id"]) == ("update", update_id)
    command = await read_command(client, operator, update_id)
    assert (command["status"], command["attempts"]) == ("acknowledged", 1)


async def test_bad_reports_and_other_devices(
    client: httpx.AsyncClient, runtime: Runtime, factory: Factory
):
    op = await factory.user("operator", "acme")
    device, headers = await polling_device(client, op)
    _, other_headers = await polling_device(client, op)
    await add_artifact(runtime, op.workspace_id, "1.5.0")
    update_id = (await start_update(client, op, device["id"], version="1.5.0"))["update_id"]
    for body in (
        {"state": "completed"},
        {"state": "failed"},
        {"state": "failed", "reason": "gremlins"},
        {"state": "downloading", "bytes": -1},
        {"state": "verified", "reason": "timeout"},
    ):
        problem(await client.post(state_path(update_id), json=body, headers=headers), 422)
    body = {"state": "downloading"}
    r = await client.post(state_path(update_id), json=body, headers=other_headers)
    problem(r, 404)
    assert (await client.get(NEXT, headers=other_headers)).json()["action"] == "none"
    problem(await client.get(NEXT), 401)
    r = await client.get(NEXT, headers=op.headers)  # a user's token is not a device's
    problem(r, 401)
    assert (await read_update(client, op, update_id))["state"] == "pending"


async def test_failed_reports_retry_over_http(
    client: httpx.AsyncClient, runtime: Runtime, operator: Actor
):
    device, headers = await polling_device(client, operator)
    await add_artifact(runtime, operator.workspace_id, "1.5.0")
    update_id = (await start_update(client, operator, device["id"], version="1.5.0"))["update_id"]
    await client.get(NEXT, headers=headers)
    body = {"state": "failed", "reason": "download_failed", "detail": "connection reset"}
    r = await client.post(state_path(update_id), json=body, headers=headers)
    assert r.json() == {"update_id": update_id, "state": "sent", "tries": 2}
    again = (await client.get(NEXT, headers=headers)).json()
    assert again["update"]["attempt"] == 2
    detail = await read_update(client, operator, update_id)
    assert detail["transitions"][-2]["detail"] == (
        "retry after download_failed on the device: connection reset"
    )


async def test_a_device_without_updates_polls_at_the_interval(
    client: httpx.AsyncClient, operator: Actor
):
    device = await create_device(client, operator)
    r = await client.post(f"/api/v1/devices/{device['id']}/tokens", headers=operator.headers)
    headers = {"Authorization": f"Bearer {r.json()['token']}"}
    r = await client.get(NEXT, params={"version": "2.0.0"}, headers=headers)
    assert r.json()["poll_after_s"] == 300
    r = await client.get(f"/api/v1/devices/{device['id']}", headers=operator.headers)
    assert r.json()["firmware_version"] == "2.0.0"
    r = await client.get(f"/api/v1/devices/{device['id']}/logs", headers=operator.headers)
    assert r.status_code == 200, r.text
    newest = r.json()["items"][0]
    assert newest["changes"]["firmware_version"] == {"before": None, "after": "2.0.0"}
    assert (newest["action"], newest["actor"]) == ("updated", f"device:{device['id']}")
    # The same version again changes nothing (no new log entry).
    await client.get(NEXT, params={"version": "2.0.0"}, headers=headers)
    r = await client.get(f"/api/v1/devices/{device['id']}/logs", headers=operator.headers)
    assert r.json()["items"][0]["id"] == newest["id"]


async def test_an_http_heartbeat_reports_the_running_version(
    client: httpx.AsyncClient, runtime: Runtime, operator: Actor
):
    device, headers = await polling_device(client, operator)
    await add_artifact(runtime, operator.workspace_id, "1.5.0")
    update_id = (await start_update(client, operator, device["id"], version="1.5.0"))["update_id"]
    await client.get(NEXT, headers=headers)
    r = await client.post(state_path(update_id), json={"state": "rebooting"}, headers=headers)
    assert r.json()["state"] == "rebooting"
    heartbeat = f"/api/v1/devices/{device['id']}/heartbeat"
    r = await client.post(heartbeat, json={"battery_level": 80}, headers=headers)
    assert r.status_code == 200, r.text
    assert (await read_update(client, operator, update_id))["state"] == "rebooting"
    r = await client.post(
        heartbeat, json={"battery_level": 80, "firmware_version": "1.5.0"}, headers=headers
    )
    assert r.status_code == 200, r.text
    assert (await read_update(client, operator, update_id))["state"] == "completed"


async def test_an_edited_version_is_corrected_by_the_next_report(
    client: httpx.AsyncClient, operator: Actor
):
    device, headers = await polling_device(client, operator)
    heartbeat = f"/api/v1/devices/{device['id']}/heartbeat"
    url = f"/api/v1/devices/{device['id']}"
    for _ in range(2):  # the second time from the process's memory of the version
        r = await client.post(heartbeat, json={"firmware": "1.1.0"}, headers=headers)
        assert r.status_code == 200, r.text
        assert (await client.get(url, headers=operator.headers)).json()["firmware_version"] == (
            "1.1.0"
        )
    r = await client.patch(url, json={"firmware_version": "0.9.0"}, headers=operator.headers)
    assert r.status_code == 200, r.text
    await client.post(heartbeat, json={"firmware": "1.1.0"}, headers=headers)
    assert (await client.get(url, headers=operator.headers)).json()["firmware_version"] == "1.1.0"


async def test_the_update_message_links_download_the_uploaded_file(
    client: httpx.AsyncClient, operator: Actor
):
    data = bytes(range(256)) * 4000  # ~1 MB
    device, headers = await polling_device(client, operator)
    await uploaded(client, operator, data, version="1.5.0", device_types="sensor")
    await start_update(client, operator, device["id"], version="1.5.0")
    message = (await client.get(NEXT, headers=headers)).json()["update"]
    link = urlsplit(message["url"])
    r = await client.get(f"{link.path}?{link.query}")  # no token: the link is the key
    assert r.status_code == 200, r.text
    assert r.content == data
    assert hashlib.sha256(r.content).hexdigest() == message["sha256"] == message["checksum"]
    r = await client.get(message["download_path"], headers={**headers, "Range": "bytes=1000-"})
    assert (r.status_code, r.content) == (206, data[1000:])
    forged = message["url"].replace("sig=", "sig=0")
    link = urlsplit(forged)
    assert (await client.get(f"{link.path}?{link.query}")).status_code == 403


async def test_links_are_signed_by_the_process_signer_not_the_secret_read_again(
    client: httpx.AsyncClient, runtime: Runtime, operator: Actor, monkeypatch
):
    """The links of a poll and of a pushed message are signed with the runtime's one
    signer (the one that checks them): the installation secret is not looked up again at
    each send, so a secret changed under a running process does not matter here."""
    data = bytes(range(256)) * 100
    device, headers = await polling_device(client, operator)
    await uploaded(client, operator, data, version="1.5.0", device_types="sensor")
    update_id = (await start_update(client, operator, device["id"], version="1.5.0"))["update_id"]
    monkeypatch.setattr(runtime.settings, "jwt_secret", "another-secret-" + "y" * 40)
    polled = (await client.get(NEXT, headers=headers)).json()["update"]
    async with runtime.uow() as uow:
        command = await uow.session.get(Command, uuid.UUID(update_id))
        assert command is not None
        pushed = await runtime.firmware.message(command)
    for message in (polled, pushed):
        link = urlsplit(message["url"])
        query = dict(parse_qsl(link.query))
        assert query["device"] == device["id"]
        assert runtime.firmware_files.signer.valid(
            uuid.UUID(link.path.rsplit("/", 1)[1]), uuid.UUID(device["id"]),
            int(query["expires"]), query["sig"], time.time(),
        )  # fmt: skip
        r = await client.get(f"{link.path}?{link.query}")
        assert (r.status_code, r.content) == (200, data)
