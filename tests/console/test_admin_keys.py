"""The administration page over HTTP: API keys and provisioning keys (created and shown
once, revoked, rotated) through the same services as the API, refusals included."""

from __future__ import annotations

import re

import httpx

from conftest import Actor, Factory
from console_helpers import csrf_of
from console_helpers import sign_in_http as sign_in

REGISTER = {"serial_number": "ESP-42", "name": "Sensor 42", "type": "sensor"}


async def admin_session(client: httpx.AsyncClient, actor: Actor) -> str:
    assert (await sign_in(client, actor.email)).status_code == 303
    return csrf_of((await client.get("/console/")).text)


def htmx(token: str) -> dict[str, str]:
    return {"HX-Request": "true", "X-CSRF-Token": token}


def shown_secret(html: str, element_id: str) -> str:
    found = re.search(rf'<code id="{element_id}" class="secret-value">([^<]+)</code>', html)
    assert found, html
    assert f'data-copy="{element_id}"' in html  # with its copy button
    return found.group(1)


def row_of(html: str, key_id: str) -> str:
    found = re.search(rf'<tr data-key-id="{key_id}">(.*?)</tr>', html, re.S)
    assert found, key_id
    return found.group(1)


async def me_with(client: httpx.AsyncClient, secret: str) -> int:
    r = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {secret}"})
    return r.status_code


async def api_keys(client: httpx.AsyncClient, actor: Actor) -> list[dict]:
    r = await client.get("/api/v1/api-keys", headers=actor.headers)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def test_an_api_key_is_shown_once_works_and_is_revoked(client, admin: Actor):
    token = await admin_session(client, admin)
    form = {"name": "ci-bot", "role": "operator", "expires_on": "2999-12-31"}
    r = await client.post("/console/admin/api-keys", data=form, headers=htmx(token))
    assert r.status_code == 200, r.text
    assert r.text.lstrip().startswith('<section id="api-keys"')
    secret = shown_secret(r.text, "new-api-key")
    assert "Copy it now: it is shown only this once." in r.text
    (key,) = await api_keys(client, admin)
    assert (key["name"], key["role"]) == ("ci-bot", "operator")
    assert key["expires_at"].startswith("2999-12-31T23:59:59")
    assert secret.startswith(key["prefix"]) and f"<code>{key['prefix']}…</code>" in r.text
    assert await me_with(client, secret) == 200
    page = await client.get("/console/admin")
    assert secret not in page.text  # shown once
    assert "active" in row_of(page.text, key["id"])

    r = await client.post(f"/console/admin/api-keys/{key['id']}/revoke", headers=htmx(token))
    assert r.status_code == 200, r.text
    assert "The API key &#39;ci-bot&#39; is revoked." in r.text
    assert "revoked" in row_of(r.text, key["id"]) and "Revoke" not in row_of(r.text, key["id"])
    assert await me_with(client, secret) == 401
    assert (await api_keys(client, admin))[0]["revoked_at"] is not None


async def test_api_key_form_refusals(client, admin: Actor):
    token = await admin_session(client, admin)
    r = await client.post(
        "/console/admin/api-keys", data={"name": "old", "role": "viewer",
                                         "expires_on": "2001-01-01"}, headers=htmx(token),
    )  # fmt: skip
    assert r.status_code == 422 and "expires_at is in the past." in r.text
    r = await client.post("/console/admin/api-keys", data={"role": "god"}, headers=htmx(token))
    assert r.status_code == 422
    assert "<strong>name</strong>" in r.text and "<strong>role</strong>" in r.text
    r = await client.post(
        "/console/admin/api-keys", data={"name": "x", "expires_on": "soon"}, headers=htmx(token)
    )
    assert r.status_code == 422 and "<strong>expires_at</strong>" in r.text
    assert await api_keys(client, admin) == []


async def test_a_plain_form_post_answers_the_whole_page_with_the_secret(client, admin: Actor):
    token = await admin_session(client, admin)
    r = await client.post(
        "/console/admin/api-keys", data={"csrf_token": token, "name": "cron", "role": "viewer"}
    )
    assert r.status_code == 200 and "<h1>Administration</h1>" in r.text
    secret = shown_secret(r.text, "new-api-key")
    assert await me_with(client, secret) == 200
    assert "new-provisioning-key" not in r.text


async def test_a_provisioning_key_is_shown_once_registers_devices_rotates_and_is_revoked(
    client, admin: Actor
):
    token = await admin_session(client, admin)
    form = {"name": "line 1", "initial_status": "reserved"}
    r = await client.post("/console/admin/provisioning-keys", data=form, headers=htmx(token))
    assert r.status_code == 200, r.text
    secret = shown_secret(r.text, "new-provisioning-key")
    assert secret.startswith("fwp_")
    (key,) = (await client.get("/api/v1/provisioning-keys", headers=admin.headers)).json()["items"]
    assert (key["name"], key["initial_status"]) == ("line 1", "reserved")
    bearer = {"Authorization": f"Bearer {secret}"}
    r = await client.post("/api/v1/provision", json=REGISTER, headers=bearer)
    assert r.status_code == 201, r.text
    page = await client.get("/console/admin")
    assert secret not in page.text
    assert '<td class="num">1</td>' in row_of(page.text, key["id"])  # devices registered

    url = f"/console/admin/provisioning-keys/{key['id']}"
    r = await client.post(url + "/rotate", headers=htmx(token))
    assert r.status_code == 200, r.text
    rotated = shown_secret(r.text, "new-provisioning-key")
    assert rotated != secret and "rotated" in row_of(r.text, key["id"])
    r = await client.post("/api/v1/provision", json=REGISTER, headers=bearer)
    assert r.status_code == 401  # the old secret stopped working
    bearer = {"Authorization": f"Bearer {rotated}"}
    r = await client.post("/api/v1/provision", json=REGISTER, headers=bearer)
    assert r.status_code == 200, r.text  # the same device again, with the new secret

    r = await client.post(url + "/revoke", headers=htmx(token))
    assert r.status_code == 200, r.text
    assert "The provisioning key &#39;line 1&#39; is revoked." in r.text
    assert "revoked" in row_of(r.text, key["id"])
    r = await client.post("/api/v1/provision", json=REGISTER, headers=bearer)
    assert r.status_code == 401

    r = await client.post(
        "/console/admin/provisioning-keys", data={"name": "", "initial_status": "retired"},
        headers=htmx(token),
    )  # fmt: skip
    assert r.status_code == 422
    assert "<strong>name</strong>" in r.text and "<strong>initial_status</strong>" in r.text


async def test_another_workspaces_keys_are_404_pages(client, admin: Actor, factory: Factory):
    other = await factory.user("admin", workspace="globex")
    r = await client.post("/api/v1/api-keys", json={"name": "theirs"}, headers=other.headers)
    api_key = r.json()
    r = await client.post(
        "/api/v1/provisioning-keys", json={"name": "theirs"}, headers=other.headers
    )
    provisioning_key = r.json()
    token = await admin_session(client, admin)
    for url in (
        f"/console/admin/api-keys/{api_key['id']}/revoke",
        f"/console/admin/provisioning-keys/{provisioning_key['id']}/revoke",
        f"/console/admin/provisioning-keys/{provisioning_key['id']}/rotate",
    ):
        r = await client.post(url, data={"csrf_token": token})
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html"), url
        assert "theirs" not in r.text
    assert await me_with(client, api_key["key"]) == 200  # still works


async def test_key_writes_need_the_csrf_token_and_the_admin_role(
    client, admin: Actor, operator: Actor
):
    r = await client.post("/api/v1/api-keys", json={"name": "kept"}, headers=admin.headers)
    api_key = r.json()
    r = await client.post("/api/v1/provisioning-keys", json={"name": "kept"}, headers=admin.headers)
    provisioning_key = r.json()
    writes = [
        ("/console/admin/api-keys", {"name": "sneaky", "role": "admin"}),
        (f"/console/admin/api-keys/{api_key['id']}/revoke", {}),
        ("/console/admin/provisioning-keys", {"name": "sneaky"}),
        (f"/console/admin/provisioning-keys/{provisioning_key['id']}/rotate", {}),
        (f"/console/admin/provisioning-keys/{provisioning_key['id']}/revoke", {}),
    ]
    await admin_session(client, admin)
    for url, data in writes:
        r = await client.post(url, data=data)
        assert r.status_code == 403 and "Reload the page" in r.text, url
    client.cookies.clear()
    token = await admin_session(client, operator)  # a valid token, the wrong role
    for url, data in writes:
        r = await client.post(url, data={**data, "csrf_token": token})
        assert r.status_code == 403 and "This needs the admin role" in r.text, url
    assert await me_with(client, api_key["key"]) == 200
    keys = (await client.get("/api/v1/provisioning-keys", headers=admin.headers)).json()
    assert [(k["name"], k["revoked_at"], k["rotated_at"]) for k in keys["items"]] == [
        ("kept", None, None)
    ]
    assert [k["name"] for k in await api_keys(client, admin)] == ["kept"]
