"""The console's firmware page over HTTP: uploading through its form (streamed, stored
with the server's SHA-256; a refused upload shows each message next to its field),
deleting (an artifact in use is refused with a readable reason), the signing policy and
keys as an admin, and the refusals (a viewer sees no form and a forged POST is 403)."""

from __future__ import annotations

import hashlib
import html
import os
import re
from typing import Any

import httpx

from artifact_helpers import ARTIFACTS, Signer
from conftest import Actor, create_device
from console_helpers import csrf_of, sign_in_http
from fieldwatch.runtime import Runtime
from firmware_helpers import add_artifact, start_update

PAGE = "/console/firmware"


def flat(page: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(page))


async def csrf(client: httpx.AsyncClient) -> str:
    return csrf_of((await client.get(PAGE)).text)


async def post(client: httpx.AsyncClient, url: str, data: dict[str, Any]) -> httpx.Response:
    return await client.post(url, data={"csrf_token": await csrf(client), **data})


async def upload(
    client: httpx.AsyncClient, data: bytes, token: str | None = None, **fields: Any
) -> httpx.Response:
    form = {"csrf_token": token or await csrf(client), "version": "2.0.0",
            "device_types": "esp32, esp32-s3", "security_version": "1", **fields}  # fmt: skip
    files = {"file": ("fw-2.0.0.bin", data, "application/octet-stream")}
    return await client.post(PAGE, data=form, files=files)


async def artifacts(client: httpx.AsyncClient, actor: Actor) -> list[dict[str, Any]]:
    r = await client.get(ARTIFACTS, headers=actor.headers)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def test_upload_through_the_form_stores_the_file(client, operator: Actor):
    await sign_in_http(client, operator.email)
    data = os.urandom(200_000)
    r = await upload(client, data, hardware_versions="rev-a", notes="watchdog fix")
    assert r.status_code == 303, r.text
    page = await client.get(r.headers["location"])
    digest = hashlib.sha256(data).hexdigest()
    text = flat(page.text)
    assert "The firmware is uploaded." in text
    assert f'title="{digest}"' in page.text and f"{digest[:12]}…" in text
    assert "esp32, esp32-s3" in text and "200,000 bytes" in text
    [stored] = await artifacts(client, operator)
    assert stored["sha256"] == digest and stored["size"] == len(data)
    assert stored["version"] == "2.0.0" and stored["device_types"] == ["esp32", "esp32-s3"]
    assert stored["hardware_versions"] == ["rev-a"] and stored["notes"] == "watchdog fix"
    assert stored["created_by"] == f"user:{operator.email}"
    content = await client.get(f"{ARTIFACTS}/{stored['id']}/content", headers=operator.headers)
    assert content.content == data


async def test_a_refused_upload_shows_messages_next_to_fields(client, operator: Actor):
    await sign_in_http(client, operator.email)
    r = await upload(client, b"fw", version="bad version!", device_types="")
    assert r.status_code == 422
    assert 'id="ue-version"' in r.text and 'id="ue-device_types"' in r.text
    assert 'value="bad version!"' in r.text  # what was typed is kept
    r = await upload(client, b"")
    assert r.status_code == 422 and "The firmware file is empty." in r.text
    assert await artifacts(client, operator) == []
    assert (await upload(client, b"fw")).status_code == 303
    r = await upload(client, b"other")
    assert r.status_code == 409
    assert 'id="ue-version"' in r.text and "Version 2.0.0 is already uploaded" in r.text


async def test_a_viewer_sees_the_list_only(client, runtime: Runtime, viewer: Actor):
    await add_artifact(runtime, viewer.workspace_id, "1.5.0")
    await sign_in_http(client, viewer.email)
    page = await client.get(PAGE)
    assert page.status_code == 200 and "1.5.0" in page.text
    assert 'enctype="multipart/form-data"' not in page.text
    assert "/delete" not in page.text and "Signing keys" not in page.text
    r = await upload(client, b"fw", token=csrf_of(page.text))
    assert r.status_code == 403
    assert [a["version"] for a in await artifacts(client, viewer)] == ["1.5.0"]


async def test_a_forged_upload_is_refused(client, operator: Actor):
    await sign_in_http(client, operator.email)
    r = await upload(client, b"fw", token="forged")
    assert r.status_code == 403 and "did not come from the console" in r.text
    assert await artifacts(client, operator) == []


async def test_delete_and_delete_refused_while_in_use(client, runtime: Runtime, operator: Actor):
    await sign_in_http(client, operator.email)
    spare = await add_artifact(runtime, operator.workspace_id, "1.4.0")
    used = await add_artifact(runtime, operator.workspace_id, "1.5.0")
    device = await create_device(client, operator, type="sensor")
    await start_update(client, operator, device["id"], artifact_id=used["id"])
    r = await post(client, f"{PAGE}/{used['id']}/delete", {})
    assert r.status_code == 409
    assert ("Version 1.5.0 is not deleted: A device update that has not finished uses this "
            "artifact.") in flat(r.text)  # fmt: skip
    r = await post(client, f"{PAGE}/{spare['id']}/delete", {})
    assert r.status_code == 303
    assert [a["version"] for a in await artifacts(client, operator)] == ["1.5.0"]


async def test_policy_and_keys_as_an_admin(client, admin: Actor, operator: Actor):
    await sign_in_http(client, admin.email)
    page = flat((await client.get(PAGE)).text)
    assert "Signing keys" in page and "No signing keys yet." in page
    r = await post(client, f"{PAGE}/policy", {"require_signed": "1"})
    assert r.status_code == 303
    policy = await client.get("/api/v1/firmware/policy", headers=admin.headers)
    assert policy.json()["require_signed"] is True
    assert "signed firmware required" in flat((await client.get(PAGE)).text)

    r = await post(client, f"{PAGE}/keys", {"name": "ci", "public_key": "AAAA"})
    assert r.status_code == 422 and 'id="ke-public_key"' in r.text
    signer = Signer()
    r = await post(client, f"{PAGE}/keys", {"name": "ci", "public_key": signer.public_b64})
    assert r.status_code == 303
    page = flat((await client.get(PAGE)).text)
    assert signer.fingerprint in page and "Revoke signing key ci" in page
    keys = (await client.get("/api/v1/firmware/signing-keys", headers=admin.headers)).json()
    [key] = keys["items"]
    assert key["fingerprint"] == signer.fingerprint and key["revoked_at"] is None
    r = await post(client, f"{PAGE}/keys", {"name": "again", "public_key": signer.public_b64})
    assert r.status_code == 409 and "already registered" in r.text

    data = b"signed firmware"
    sig = signer.sign(data, "2.0.0", ["esp32", "esp32-s3"], [], 1)
    r = await upload(client, data, signature=sig)
    assert r.status_code == 303, r.text
    assert "yes (ci)" in flat((await client.get(PAGE)).text)

    r = await post(client, f"{PAGE}/keys/{key['id']}/revoke", {})
    assert r.status_code == 303
    keys = (await client.get("/api/v1/firmware/signing-keys", headers=admin.headers)).json()
    assert keys["items"][0]["revoked_at"] is not None
    r = await upload(client, data, version="2.0.1", signature=sig)
    assert r.status_code == 422 and 'id="ue-signature"' in r.text

    await client.post("/console/logout", data={"csrf_token": await csrf(client)})
    await sign_in_http(client, operator.email)
    r = await post(client, f"{PAGE}/policy", {})
    assert r.status_code == 403


async def updates_of(client: httpx.AsyncClient, actor: Actor, device_id: str) -> list[dict]:
    r = await client.get(
        "/api/v1/firmware/updates", params={"device_id": device_id}, headers=actor.headers
    )
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def test_update_and_cancel_from_the_device_page(client, runtime: Runtime, operator: Actor):
    built = await add_artifact(runtime, operator.workspace_id, "1.5.0")
    other = await add_artifact(runtime, operator.workspace_id, "9.0.0", device_types=["meter"])
    dev = await create_device(client, operator, type="sensor")
    url = f"/console/devices/{dev['id']}"
    await sign_in_http(client, operator.email)
    page = await client.get(url)
    assert 'id="h-firmware"' in page.text and "No firmware updates yet" in page.text
    assert f'<option value="{built["id"]}">1.5.0</option>' in page.text
    assert other["id"] not in page.text  # built for another type: not offered

    r = await client.post(f"{url}/firmware", data={"csrf_token": csrf_of(page.text),
                                                   "artifact_id": other["id"]})  # fmt: skip
    assert r.status_code == 409
    assert "Firmware 9.0.0 can not go to this device" in flat(r.text)
    assert await updates_of(client, operator, dev["id"]) == []

    token = csrf_of(page.text)
    r = await client.post(f"{url}/firmware", data={"csrf_token": token, "artifact_id": built["id"]})
    assert r.status_code == 303 and r.headers["location"] == f"{url}?fw=started#firmware-part"
    [update] = await updates_of(client, operator, dev["id"])
    assert update["artifact_id"] == built["id"] and update["state"] == "pending"
    part = await client.get(f"{url}/firmware")
    assert part.status_code == 200 and part.text.lstrip().startswith('<section id="firmware-part"')
    assert f'data-update-id="{update["update_id"]}" data-state="pending"' in part.text
    assert "0 of 1,048,576 bytes" in part.text and "Cancel the update to 1.5.0" in part.text

    r = await client.post(f"{url}/firmware", data={"csrf_token": token, "artifact_id": built["id"]})
    assert r.status_code == 409 and "is still pending on this device" in flat(r.text)

    cancel = f"{url}/firmware/{update['update_id']}/cancel"
    r = await client.post(cancel, data={"csrf_token": token})
    assert r.status_code == 303
    [update] = await updates_of(client, operator, dev["id"])
    assert update["state"] == "cancelled"
    page = await client.get(r.headers["location"])
    assert "The update is cancelled." in page.text and 'data-state="cancelled"' in page.text
    r = await client.post(cancel, data={"csrf_token": token})
    assert r.status_code == 409 and "the update is already cancelled" in flat(r.text)


async def test_a_viewer_sees_updates_but_no_firmware_forms(
    client, runtime: Runtime, operator: Actor, viewer: Actor
):
    built = await add_artifact(runtime, operator.workspace_id, "1.5.0")
    dev = await create_device(client, operator, type="sensor")
    update = await start_update(client, operator, dev["id"], artifact_id=built["id"])
    url = f"/console/devices/{dev['id']}"
    await sign_in_http(client, viewer.email)
    page = await client.get(url)
    assert 'data-state="pending"' in page.text
    assert "Update firmware" not in page.text and "/cancel" not in page.text
    token = csrf_of(page.text)
    r = await client.post(
        f"{url}/firmware/{update['update_id']}/cancel", data={"csrf_token": token}
    )
    assert r.status_code == 403
    r = await client.post(f"{url}/firmware", data={"csrf_token": token, "artifact_id": built["id"]})
    assert r.status_code == 403
    assert [u["state"] for u in await updates_of(client, operator, dev["id"])] == ["pending"]
