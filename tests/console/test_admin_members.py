"""The administration page over HTTP: who may see it, and members and their roles (add,
change a role, remove) through the same service as the API, refusals included."""

from __future__ import annotations

import re

import httpx
import pytest

from conftest import Actor, Factory
from console_helpers import csrf_of
from console_helpers import sign_in_http as sign_in

ADMIN_LINK = '<a href="/console/admin"'


async def admin_session(client: httpx.AsyncClient, actor: Actor) -> str:
    """Sign in; the session's CSRF token."""
    assert (await sign_in(client, actor.email)).status_code == 303
    page = await client.get("/console/")
    return csrf_of(page.text)


def htmx(token: str) -> dict[str, str]:
    return {"HX-Request": "true", "X-CSRF-Token": token}


async def members(client: httpx.AsyncClient, actor: Actor) -> dict[str, str]:
    """E-mail → role, as the API lists them."""
    r = await client.get("/api/v1/members", headers=actor.headers)
    assert r.status_code == 200, r.text
    return {m["email"]: m["role"] for m in r.json()["items"]}


async def test_the_page_lists_the_members_for_an_admin_and_has_its_menu_link(
    client, admin: Actor, viewer: Actor
):
    await admin_session(client, admin)
    r = await client.get("/console/admin")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    assert ADMIN_LINK + ' aria-current="page">Administration</a>' in r.text
    assert "<h1>Administration</h1>" in r.text
    table = re.search(r'<table id="members-table">.*?</table>', r.text, re.S)
    assert table and admin.email in table.group(0) and viewer.email in table.group(0)
    assert "(you)" in table.group(0)
    for heading in ("Members and roles", "API keys", "Provisioning keys"):
        assert f">{heading}</h2>" in r.text
    fragment = await client.get("/console/admin/members", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert fragment.text.lstrip().startswith('<section id="members"')


@pytest.mark.parametrize("role", ["viewer", "operator"])
async def test_a_viewer_or_operator_gets_the_403_page_and_no_menu_link(
    client, factory: Factory, role: str
):
    actor = await factory.user(role)
    token = await admin_session(client, actor)
    overview = await client.get("/console/")
    assert ADMIN_LINK not in overview.text and "Administration" not in overview.text
    r = await client.get("/console/admin")
    assert r.status_code == 403 and "This needs the admin role" in r.text
    assert "members-table" not in r.text
    # Their writes are refused too, with a valid CSRF token.
    r = await client.post(
        "/console/admin/members",
        data={"csrf_token": token, "email": "new@acme.example.com", "role": "admin"},
    )
    assert r.status_code == 403 and "This needs the admin role" in r.text
    r = await client.post(
        f"/console/admin/members/{actor.user_id}/role", data={"role": "admin"},
        headers=htmx(token),
    )  # fmt: skip
    assert r.status_code == 403
    assert (await members(client, actor))[actor.email] == role


async def test_adding_a_new_member_shows_their_password_once(client, app, admin: Actor):
    token = await admin_session(client, admin)
    form = {"email": "New.Person@Acme.example.com", "role": "operator", "full_name": "New P"}
    r = await client.post("/console/admin/members", data=form, headers=htmx(token))
    assert r.status_code == 200, r.text
    assert "<html" not in r.text and "new.person@acme.example.com can sign in now" in r.text
    password = re.search(r'<code id="member-password" class="secret-value">([^<]+)</code>', r.text)
    assert password, r.text
    assert 'data-copy="member-password"' in r.text
    assert (await members(client, admin))["new.person@acme.example.com"] == "operator"
    page = await client.get("/console/admin")
    assert password.group(1) not in page.text  # shown once
    # The password works.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=client.base_url) as other:
        r = await sign_in(other, "new.person@acme.example.com", password.group(1))
        assert r.status_code == 303 and r.headers["location"] == "/console/"


async def test_adding_an_existing_account_and_the_refusals(client, admin: Actor, factory: Factory):
    elsewhere = await factory.user("admin", workspace="globex")
    token = await admin_session(client, admin)
    form = {"email": elsewhere.email, "role": "viewer"}
    r = await client.post("/console/admin/members", data=form, headers=htmx(token))
    assert r.status_code == 200, r.text
    assert f"{elsewhere.email} (an existing account) was added as viewer." in r.text
    assert "member-password" not in r.text
    # Already a member: the service's refusal, as a fragment for htmx and as a page.
    r = await client.post("/console/admin/members", data=form, headers=htmx(token))
    assert r.status_code == 409 and r.text.lstrip().startswith('<div class="problem"')
    assert "is already a member" in r.text
    r = await client.post("/console/admin/members", data={**form, "csrf_token": token})
    assert r.status_code == 409 and "<h1>Conflict</h1>" in r.text
    assert "is already a member" in r.text
    # Not an e-mail address, an unknown role: the schema's field problems.
    bad = {"email": "not-an-address", "role": "owner"}
    r = await client.post("/console/admin/members", data=bad, headers=htmx(token))
    assert r.status_code == 422
    assert "<strong>email</strong>" in r.text and "<strong>role</strong>" in r.text
    assert "not-an-address" not in await members(client, admin)


async def test_changing_a_role_and_the_last_admin_refusal(client, admin: Actor, operator: Actor):
    token = await admin_session(client, admin)
    url = f"/console/admin/members/{operator.user_id}/role"
    r = await client.post(url, data={"role": "viewer"}, headers=htmx(token))
    assert r.status_code == 200, r.text
    assert f"{operator.email} is now viewer." in r.text
    assert (await members(client, admin))[operator.email] == "viewer"
    # The workspace's only admin can not step down.
    mine = f"/console/admin/members/{admin.user_id}/role"
    r = await client.post(mine, data={"role": "operator"}, headers=htmx(token))
    assert r.status_code == 409 and "last admin" in r.text
    assert (await members(client, admin))[admin.email] == "admin"
    r = await client.post(url, data={"role": "superuser"}, headers=htmx(token))
    assert r.status_code == 422 and "<strong>role</strong>" in r.text


async def test_stepping_down_when_another_admin_exists_leaves_the_page(
    client, admin: Actor, factory: Factory
):
    other = await factory.user("admin")
    token = await admin_session(client, admin)
    r = await client.post(
        f"/console/admin/members/{admin.user_id}/role", data={"role": "viewer"},
        headers=htmx(token),
    )  # fmt: skip
    assert r.status_code == 200 and r.headers["hx-redirect"] == "/console/"
    assert (await members(client, other))[admin.email] == "viewer"
    assert (await client.get("/console/admin")).status_code == 403


async def test_removing_a_member_and_the_last_admin_refusal(client, admin: Actor, viewer: Actor):
    token = await admin_session(client, admin)
    r = await client.post(f"/console/admin/members/{viewer.user_id}/remove", headers=htmx(token))
    assert r.status_code == 200, r.text
    assert "The member was removed." in r.text and viewer.email not in r.text
    assert viewer.email not in await members(client, admin)
    r = await client.post(f"/console/admin/members/{admin.user_id}/remove", headers=htmx(token))
    assert r.status_code == 409 and "last admin" in r.text
    assert admin.email in await members(client, admin)
    # Not a member (any more): the service's 404.
    r = await client.post(f"/console/admin/members/{viewer.user_id}/remove", headers=htmx(token))
    assert r.status_code == 404 and "No such member" in r.text


async def test_member_writes_need_the_csrf_token(client, admin: Actor, operator: Actor):
    await admin_session(client, admin)
    for url, data in (
        ("/console/admin/members", {"email": "x@acme.example.com", "role": "viewer"}),
        (f"/console/admin/members/{operator.user_id}/role", {"role": "admin"}),
        (f"/console/admin/members/{operator.user_id}/remove", {}),
    ):
        r = await client.post(url, data=data)
        assert r.status_code == 403 and "Reload the page" in r.text, url
        r = await client.post(url, data={**data, "csrf_token": "forged"})
        assert r.status_code == 403, url
    assert await members(client, admin) == {admin.email: "admin", operator.email: "operator"}
