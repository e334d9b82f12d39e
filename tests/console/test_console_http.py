"""The console over HTTP: login, the session cookie, CSRF, logout, expiry, the workspace
switcher, roles and the overview's figures."""

from __future__ import annotations

import re
import time
from typing import Annotated

import httpx
import pytest
from fastapi import FastAPI

from conftest import JWT_SECRET, PASSWORD, Actor, Factory, create_device
from console_helpers import csrf_of
from console_helpers import sign_in_http as sign_in
from fieldwatch.auth.roles import Role
from fieldwatch.console.access import ConsoleUser, require
from fieldwatch.console.session import COOKIE, ConsoleSession, CookieSigner
from fieldwatch.runtime import Runtime


async def overview(client: httpx.AsyncClient) -> httpx.Response:
    r = await client.get("/console/")
    assert r.status_code == 200, (r.status_code, r.headers)
    return r


def figure(html: str, element_id: str) -> int:
    found = re.search(rf'id="{element_id}">(\d+)<', html)
    assert found, element_id
    return int(found.group(1))


async def test_the_root_leads_to_the_console_and_a_visitor_to_the_login_page(client):
    r = await client.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    r = await client.get("/console/")
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    page = await client.get("/console/login")
    assert 'for="email"' in page.text and 'for="password"' in page.text


async def test_a_login_sets_an_httponly_samesite_cookie_and_opens_the_overview(client, admin):
    r = await sign_in(client, admin.email)
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http
    assert PASSWORD not in cookie
    page = await overview(client)
    assert "Fleet overview" in page.text and admin.email in page.text
    assert '<span id="role">admin</span>' in page.text
    assert page.headers["cache-control"] == "no-store"


async def test_over_https_the_cookie_is_secure(app, admin):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://fieldwatch.test") as c:
        r = await sign_in(c, admin.email)
    assert r.status_code == 303
    assert "Secure" in r.headers["set-cookie"]


async def test_a_wrong_password_is_refused_with_a_message(client, admin):
    r = await sign_in(client, admin.email, "not-the-password")
    assert r.status_code == 401
    assert "Wrong email or password." in r.text and 'role="alert"' in r.text
    assert admin.email in r.text  # the e-mail stays filled in
    r = await client.get("/console/")
    assert r.status_code == 303 and r.headers["location"] == "/console/login"


async def test_state_changing_requests_without_the_csrf_token_are_refused(client, admin):
    await client.get("/console/login")
    body = {"email": admin.email, "password": PASSWORD}
    r = await client.post("/console/login", data=body)
    assert r.status_code == 403 and "Reload the page" in r.text
    r = await client.post("/console/login", data={**body, "csrf_token": "forged"})
    assert r.status_code == 403
    assert (await sign_in(client, admin.email)).status_code == 303
    assert (await client.post("/console/logout")).status_code == 403
    r = await client.post("/console/logout", headers={"X-CSRF-Token": "forged"})
    assert r.status_code == 403
    await overview(client)  # still signed in
    r = await client.get("/console/realtime-token")
    assert r.status_code == 403


async def test_the_csrf_token_works_in_a_form_field_and_in_the_htmx_header(client, admin):
    await sign_in(client, admin.email)
    page = await overview(client)
    token = csrf_of(page.text)
    assert f'hx-headers=\'{{"X-CSRF-Token": "{token}"}}\'' in page.text
    r = await client.get("/console/realtime-token", headers={"X-CSRF-Token": token})
    assert r.status_code == 200
    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {r.json()['token']}"}
    )
    assert me.status_code == 200 and me.json()["email"] == admin.email
    r = await client.post("/console/logout", data={"csrf_token": token})
    assert r.status_code == 303


async def test_logout_ends_the_login(client, admin):
    await sign_in(client, admin.email)
    page = await overview(client)
    stolen = client.cookies[COOKIE]
    r = await client.post("/console/logout", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 303 and r.headers["location"] == "/console/login?m=signed-out"
    assert "You have signed out." in (await client.get(r.headers["location"])).text
    r = await client.get("/console/")
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    # The old cookie no longer works: the login itself was ended.
    use_cookie(client, stolen)
    r = await client.get("/console/")
    assert r.status_code == 303 and r.headers["location"] == "/console/login?m=ended"


def use_cookie(client: httpx.AsyncClient, value: str) -> None:
    client.cookies.clear()  # not next to the one the server set last
    client.cookies.set(COOKIE, value)


def cookie_for(runtime: Runtime, actor: Actor, *, expires_at: float) -> str:
    claims = runtime.codec.decode(actor.token)
    session = ConsoleSession(
        csrf="x" * 40, expires_at=expires_at, user_id=claims.user_id, login_id=claims.session_id
    )
    return CookieSigner(JWT_SECRET).dumps(session)


async def test_an_expired_session_returns_to_the_login_page_with_a_message(client, runtime, admin):
    use_cookie(client, cookie_for(runtime, admin, expires_at=time.time() + 60))
    await overview(client)  # a valid cookie for the actor's login
    use_cookie(client, cookie_for(runtime, admin, expires_at=time.time() - 1))
    r = await client.get("/console/")
    assert r.status_code == 303 and r.headers["location"] == "/console/login?m=expired"
    page = await client.get(r.headers["location"])
    assert "Your session has expired; sign in again." in page.text
    # An htmx request is told where to go instead of getting the login page as a fragment.
    use_cookie(client, cookie_for(runtime, admin, expires_at=time.time() - 1))
    r = await client.get("/console/overview/figures", headers={"HX-Request": "true"})
    assert r.headers["hx-redirect"] == "/console/login?m=expired"


async def test_an_altered_cookie_counts_as_no_session(client, runtime, admin):
    value = cookie_for(runtime, admin, expires_at=time.time() + 60)
    use_cookie(client, value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    r = await client.get("/console/")
    assert r.status_code == 303 and r.headers["location"] == "/console/login"


async def test_the_workspace_switcher_moves_between_the_users_workspaces(
    client, factory: Factory, viewer: Actor
):
    other = await factory.join(viewer, "globex", "admin")
    foreign = await factory.workspace("initech")
    await sign_in(client, viewer.email)
    page = await overview(client)
    assert 'id="workspace"' in page.text and "globex (admin)" in page.text
    assert '<span id="role">viewer</span>' in page.text
    token = csrf_of(page.text)
    r = await client.post("/console/workspace", data={"csrf_token": token, "workspace": str(other)})
    assert r.status_code == 303
    page = await overview(client)
    assert '<span id="role">admin</span>' in page.text
    assert f'value="{other}" selected' in page.text
    # A workspace the user is not in: nothing changes.
    data = {"csrf_token": token, "workspace": str(foreign)}
    await client.post("/console/workspace", data=data)
    assert f'value="{other}" selected' in (await overview(client)).text


@pytest.fixture
def admin_page(app: FastAPI) -> str:
    """A page that needs the admin role, declared as console pages declare theirs."""

    @app.get("/console/test-admin-only")
    async def admin_only(user: Annotated[ConsoleUser, require(Role.admin)]) -> dict[str, str]:
        return {"role": user.principal.role.value}

    return "/console/test-admin-only"


async def test_roles_hold_in_the_console_as_in_the_api(client, admin_page, admin, viewer):
    await sign_in(client, viewer.email)
    await overview(client)  # a viewer sees the overview
    r = await client.get(admin_page)
    assert r.status_code == 403 and "This needs the admin role" in r.text
    client.cookies.clear()
    await sign_in(client, admin.email)
    r = await client.get(admin_page)
    assert r.status_code == 200 and r.json() == {"role": "admin"}


async def test_the_overview_shows_the_workspaces_figures(client, admin, factory: Factory):
    first = await create_device(client, admin, serial_number="SN-1")
    await create_device(client, admin, serial_number="SN-2")
    r = await client.put(f"/api/v1/devices/{first['id']}/reserve", headers=admin.headers)
    assert r.status_code == 200, r.text
    elsewhere = await factory.user("admin", workspace="globex")
    await create_device(client, elsewhere, serial_number="SN-3")
    await sign_in(client, admin.email)
    html = (await overview(client)).text
    assert figure(html, "devices-total") == 2
    assert figure(html, "status-in_stock") == 1 and figure(html, "status-reserved") == 1
    assert figure(html, "status-in_stock-offline") == 1
    assert figure(html, "status-in_stock-online") == 0
    assert figure(html, "devices-offline") == 2 and figure(html, "devices-online") == 0
    assert figure(html, "alerts-total") == 0 and figure(html, "readings-last-minute") == 0
    fragment = (await client.get("/console/overview/figures")).text
    assert "<html" not in fragment and figure(fragment, "devices-total") == 2


async def test_an_error_under_the_console_is_a_page_and_for_htmx_a_fragment(client, admin):
    await sign_in(client, admin.email)
    r = await client.get("/console/no-such-page")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "<h1>Not found</h1>" in r.text and 'role="alert"' in r.text
    r = await client.get("/console/no-such-page", headers={"HX-Request": "true"})
    assert r.status_code == 404 and r.text.lstrip().startswith('<div class="problem"')
    r = await client.get("/api/v1/no-such-route")  # the API still answers problems
    assert r.headers["content-type"] == "application/problem+json"


async def test_the_device_page_shows_the_device_and_another_workspaces_is_a_404_page(
    client, admin, factory: Factory
):
    device = await create_device(client, admin, serial_number="SN-PAGE")
    other = await factory.user(Role.admin, "elsewhere")
    foreign = await create_device(client, other, serial_number="SN-FOREIGN")
    await sign_in(client, admin.email)
    r = await client.get(f"/console/devices/{device['id']}")
    assert r.status_code == 200 and "SN-PAGE" in r.text
    assert f'data-device-id="{device["id"]}"' in r.text
    r = await client.get(f"/console/devices/{foreign['id']}")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "SN-FOREIGN" not in r.text


async def test_a_refused_page_keeps_the_menu_and_the_sign_out(client, viewer):
    await sign_in(client, viewer.email)
    r = await client.get("/console/admin")
    assert r.status_code == 403
    assert "Sign out" in r.text and 'aria-label="Sections"' in r.text
    assert "/console/admin" not in r.text.split("<main", 1)[0]  # no Administration link


async def test_a_malformed_id_in_the_address_is_a_not_found_page(client, admin):
    await sign_in(client, admin.email)
    r = await client.get("/console/devices/not-a-uuid")
    assert r.status_code == 404 and "<h1>Not found</h1>" in r.text
    assert "path.device_id" not in r.text


def test_every_state_changing_console_route_checks_the_csrf_token():
    from fastapi.routing import APIRoute

    from fieldwatch.console import ROUTERS
    from fieldwatch.console.access import check_csrf

    def calls(dependant) -> set:  # every dependency, however deep
        found = {d.call for d in dependant.dependencies}
        for d in dependant.dependencies:
            found |= calls(d)
        return found

    writes = [
        r
        for page in ROUTERS
        for r in page.routes
        if isinstance(r, APIRoute) and r.methods & {"POST", "PUT", "PATCH", "DELETE"}
    ]
    assert len(writes) >= 25
    assert all(r.path.startswith("/console/") for r in writes)
    # an upload streams its body and checks the token as it is read (check_streamed_csrf)
    streamed = [r.path for r in writes if getattr(r.endpoint, "csrf_checked_as_streamed", False)]
    assert sorted(streamed) == ["/console/devices/{device_id}/health-export", "/console/firmware"]
    unchecked = [
        r.path for r in writes if check_csrf not in calls(r.dependant) and r.path not in streamed
    ]
    assert unchecked == []
