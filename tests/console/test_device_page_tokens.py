"""The device page's agent tokens over HTTP: a new token is shown once (in the answer to
the form that made it) and works; the list never shows it again; revoking ends it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx

from conftest import Actor, create_device
from console_helpers import csrf_of
from console_helpers import sign_in_http as sign_in

HTMX = {"HX-Request": "true"}


async def headers_for(client: httpx.AsyncClient, device_id: str) -> dict[str, str]:
    r = await client.get(f"/console/devices/{device_id}")
    assert r.status_code == 200
    return {**HTMX, "X-CSRF-Token": csrf_of(r.text)}


def new_token(fragment: str) -> str:
    found = re.search(r'id="new-token-value" class="secret" type="text" readonly value="([^"]+)"',
                      fragment)  # fmt: skip
    assert found, fragment
    return found.group(1)


async def whoami(client: httpx.AsyncClient, token: str) -> int:
    r = await client.get("/api/v1/device/me", headers={"Authorization": f"Bearer {token}"})
    return r.status_code


async def test_a_new_token_is_shown_once_and_works_until_revoked(client, operator: Actor):
    device = await create_device(client, operator, serial_number="SN-TOK-1")
    await sign_in(client, operator.email)
    headers = await headers_for(client, device["id"])
    base = f"/console/devices/{device['id']}/tokens"
    r = await client.post(base, data={"name": "gateway", "expires_in_days": "30"}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.text.lstrip().startswith('<section id="tokens"') and "<html" not in r.text
    assert r.headers["hx-trigger"] == "device-log-changed"
    assert "it is not shown again" in r.text and 'data-copy="new-token-value"' in r.text
    token = new_token(r.text)
    assert token.startswith("fwd_") and await whoami(client, token) == 200
    # The list: name, prefix, state and expiry; the token itself never again.
    listed = await client.get(base)
    page = await client.get(f"/console/devices/{device['id']}")
    for again in (listed.text, page.text):
        assert token not in again and "new-token-value" not in again
    [row] = re.findall(r'<tr data-token-id="([^"]+)" data-state="active">', listed.text)
    api = (await client.get(f"/api/v1/devices/{device['id']}/tokens",
                            headers=operator.headers)).json()["items"]  # fmt: skip
    assert [t["id"] for t in api] == [row] and api[0]["name"] == "gateway"
    expires = datetime.fromisoformat(api[0]["expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=5)
    assert f"<code>{api[0]['prefix']}…</code>" in listed.text and "gateway" in listed.text
    assert 'hx-confirm="Revoke the token gateway?' in listed.text
    # Revoke it.
    r = await client.post(f"{base}/{row}/revoke", headers=headers)
    assert r.status_code == 200 and r.headers["hx-trigger"] == "device-log-changed"
    assert f'<tr data-token-id="{row}" data-state="revoked">' in r.text
    assert f"{base}/{row}/revoke" not in r.text  # nothing more to revoke
    assert await whoami(client, token) == 401
    log = (await client.get(f"/console/devices/{device['id']}/log")).text
    assert 'data-action="token_revoked"' in log and 'data-action="token_issued"' in log


async def test_without_script_the_page_itself_shows_the_new_token(client, operator: Actor):
    device = await create_device(client, operator, serial_number="SN-TOK-2")
    await sign_in(client, operator.email)
    token = (await headers_for(client, device["id"]))["X-CSRF-Token"]
    base = f"/console/devices/{device['id']}/tokens"
    r = await client.post(base, data={"csrf_token": token})
    assert r.status_code == 200 and "<html" in r.text and "SN-TOK-2" in r.text
    secret = new_token(r.text)
    assert await whoami(client, secret) == 200
    [row] = re.findall(r'<tr data-token-id="([^"]+)" data-state="active">', r.text)
    assert "(unnamed)" in r.text and "never" in r.text
    r = await client.post(f"{base}/{row}/revoke", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["location"].endswith("#tokens")
    assert await whoami(client, secret) == 401


async def test_refused_token_forms_say_why(client, operator: Actor):
    device = await create_device(client, operator, serial_number="SN-TOK-3")
    await sign_in(client, operator.email)
    headers = await headers_for(client, device["id"])
    base = f"/console/devices/{device['id']}/tokens"
    r = await client.post(base, data={"expires_in_days": "7000"}, headers=headers)
    assert r.status_code == 422 and "Choose one of the lifetimes offered." in r.text
    r = await client.post(base, data={"name": "n" * 101}, headers=headers)
    assert r.status_code == 422 and "<strong>name</strong>" in r.text
    r = await client.post(f"{base}/00000000-0000-0000-0000-000000000000/revoke", headers=headers)
    assert r.status_code == 404 and "No token" in r.text
    r = await client.put(f"/api/v1/devices/{device['id']}/retire", headers=operator.headers)
    assert r.status_code == 200
    r = await client.post(base, data={}, headers=headers)
    assert r.status_code == 409 and "A retired device cannot get new credentials." in r.text
    page = (await client.get(f"/console/devices/{device['id']}")).text
    assert "Create token" not in page and "A retired device gets no new tokens." in page
    r = await client.get(f"/api/v1/devices/{device['id']}/tokens", headers=operator.headers)
    assert r.json()["total"] == 0
