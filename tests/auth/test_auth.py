from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from conftest import JWT_SECRET, PASSWORD, Actor, Factory, create_device, problem


async def login(client, email: str, password: str = PASSWORD):
    return await client.post("/api/v1/auth/login", json={"email": email, "password": password})


async def test_login_returns_token_pair_and_me_works(client, admin: Actor):
    r = await login(client, admin.email.upper())  # emails are case-insensitive
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    assert body["refresh_token"].startswith("fwr_")
    claims = jwt.decode(
        body["access_token"], JWT_SECRET, algorithms=["HS256"], audience="fieldwatch"
    )
    assert claims["exp"] - claims["iat"] == 900
    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json()["email"] == admin.email
    assert me.json()["workspace"] == {
        "id": str(admin.workspace_id),
        "name": "acme",
        "role": "admin",
    }


async def test_wrong_password_and_unknown_user_look_the_same(client, admin: Actor):
    wrong = problem(await login(client, admin.email, "not-the-password"), 401)
    unknown = problem(await login(client, "nobody@acme.example.com"), 401)
    assert wrong["detail"] == unknown["detail"] == "Wrong email or password."
    assert "access_token" not in wrong


async def test_login_validation_names_fields(client):
    body = problem(await client.post("/api/v1/auth/login", json={"email": "x"}), 422)
    fields = {e["field"] for e in body["errors"]}
    assert fields == {"email", "password"}


async def test_refresh_rotates_and_reuse_revokes_the_whole_login(client, admin: Actor):
    first = (await login(client, admin.email)).json()
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    ok = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {second['access_token']}"}
    )
    assert ok.status_code == 200

    # Replaying the spent token: refused, and the whole login (every token from it) ends.
    replay = problem(
        await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}),
        401,
    )
    assert replay["type"].endswith("refresh-token-reused")
    problem(
        await client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}),
        401,
    )
    gone = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {second['access_token']}"}
    )
    problem(gone, 401)
    # A different login of the same user is not affected.
    other = (await login(client, admin.email)).json()
    assert (
        await client.get(
            "/api/v1/auth/me", headers={"Authorization": f"Bearer {other['access_token']}"}
        )
    ).status_code == 200


async def test_logout_ends_access_and_refresh(client, admin: Actor):
    pair = (await login(client, admin.email)).json()
    headers = {"Authorization": f"Bearer {pair['access_token']}"}
    assert (await client.post("/api/v1/auth/logout", headers=headers)).status_code == 204
    problem(await client.get("/api/v1/auth/me", headers=headers), 401)
    problem(
        await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}),
        401,
    )


async def test_missing_and_bad_credentials_are_401_with_challenge(client, admin: Actor):
    r = await client.get("/api/v1/devices")
    problem(r, 401)
    assert r.headers["www-authenticate"] == "Bearer"
    problem(await client.get("/api/v1/devices", headers={"Authorization": "Bearer nonsense"}), 401)
    problem(await client.get("/api/v1/devices", headers={"Authorization": "Basic abc"}), 401)


def _forge(claims: dict, secret: str = JWT_SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=alg)


async def test_jwt_checks_are_strict(client, admin: Actor):
    good = jwt.decode(admin.token, JWT_SECRET, algorithms=["HS256"], audience="fieldwatch")
    now = int(time.time())
    cases = {
        "wrong secret": _forge(good, secret="y" * 48),
        "no aud": _forge({k: v for k, v in good.items() if k != "aud"}),
        "other aud": _forge({**good, "aud": "someone-else"}),
        "no exp": _forge({k: v for k, v in good.items() if k != "exp"}),
        "no iat": _forge({k: v for k, v in good.items() if k != "iat"}),
        "expired": _forge({**good, "iat": now - 3600, "nbf": now - 3600, "exp": now - 1800}),
        "alg none": jwt.encode(good, None, algorithm="none"),
        "HS512": _forge(good, alg="HS512"),
    }
    for name, token in cases.items():
        r = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, name
    assert (await client.get("/api/v1/auth/me", headers=admin.headers)).status_code == 200


async def test_api_key_lifecycle(client, admin: Actor, operator: Actor):
    problem(
        await client.post("/api/v1/api-keys", json={"name": "x"}, headers=operator.headers), 403
    )
    r = await client.post(
        "/api/v1/api-keys", json={"name": "ci-script", "role": "operator"}, headers=admin.headers
    )
    assert r.status_code == 201, r.text
    created = r.json()
    key = created["key"]
    assert key.startswith("fwk_") and created["prefix"] == key[:12]
    key_headers = {"Authorization": f"Bearer {key}"}

    device = await create_device(client, key_headers)
    assert device["workspace_id"] == str(admin.workspace_id)
    # An operator key cannot do admin things.
    problem(await client.get("/api/v1/api-keys", headers=key_headers), 403)

    listed = (await client.get("/api/v1/api-keys", headers=admin.headers)).json()["items"]
    assert [k["name"] for k in listed] == ["ci-script"]
    assert listed[0]["last_used_at"] is not None  # noted when the key was used
    assert "key" not in listed[0] and "key_digest" not in listed[0]

    me = (await client.get("/api/v1/auth/me", headers=key_headers)).json()
    assert me["kind"] == "api_key" and me["workspace"]["role"] == "operator"

    revoked = await client.delete(f"/api/v1/api-keys/{created['id']}", headers=admin.headers)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    problem(await client.get("/api/v1/devices", headers=key_headers), 401)


async def test_api_key_expiry(client, admin: Actor, runtime):
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    problem(
        await client.post(
            "/api/v1/api-keys", json={"name": "old", "expires_at": past}, headers=admin.headers
        ),
        422,
    )
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    key = (
        await client.post(
            "/api/v1/api-keys", json={"name": "short", "expires_at": soon}, headers=admin.headers
        )
    ).json()["key"]
    headers = {"Authorization": f"Bearer {key}"}
    assert (await client.get("/api/v1/devices", headers=headers)).status_code == 200
    # Move the key's expiry into the past rather than sleeping.
    from sqlalchemy import update

    from fieldwatch.auth.models import ApiKey

    async with runtime.uow() as uow:
        await uow.session.execute(
            update(ApiKey).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await uow.commit()
    # The key was checked a moment ago and is cached until its (old) expiry; moving the
    # expiry in the database is no event, so drop the cache as the passing time would.
    runtime.principals.clear()
    body = problem(await client.get("/api/v1/devices", headers=headers), 401)
    assert "expired" in body["detail"]


async def test_api_key_secret_is_stored_hashed(client, admin: Actor, runtime):
    key = (await client.post("/api/v1/api-keys", json={"name": "k"}, headers=admin.headers)).json()[
        "key"
    ]
    from sqlalchemy import select

    from fieldwatch.auth.models import ApiKey

    async with runtime.uow() as uow:
        stored = (await uow.session.scalars(select(ApiKey))).one()
    assert key not in (stored.key_digest, stored.prefix)
    assert len(stored.key_digest) == 64


async def test_device_token_is_refused_on_user_endpoints(client, operator: Actor):
    device = await create_device(client, operator)
    token = (
        await client.post(f"/api/v1/devices/{device['id']}/tokens", headers=operator.headers)
    ).json()["token"]
    r = await client.get("/api/v1/devices", headers={"Authorization": f"Bearer {token}"})
    assert "device endpoints" in problem(r, 401)["detail"]


async def test_x_workspace_picks_among_memberships(client, factory: Factory):
    user = await factory.user("admin", "acme")
    await factory.join(user, "globex", "viewer")
    me = (await client.get("/api/v1/auth/me", headers=user.headers)).json()
    assert {w["name"] for w in me["workspaces"]} == {"acme", "globex"}
    assert me["workspace"]["name"] == "acme"  # the first joined is the default

    headers = {**user.headers, "X-Workspace": "globex"}
    me = (await client.get("/api/v1/auth/me", headers=headers)).json()
    assert me["workspace"]["name"] == "globex" and me["workspace"]["role"] == "viewer"
    # Viewer there: writes refused.
    r = await client.post("/api/v1/devices", json={"name": "a", "type": "b"}, headers=headers)
    problem(r, 403)
    problem(
        await client.get("/api/v1/devices", headers={**user.headers, "X-Workspace": "nope"}), 404
    )


async def test_members_management_and_last_admin(client, admin: Actor, viewer: Actor):
    r = await client.post(
        "/api/v1/members",
        json={"email": "new@acme.example.com", "role": "operator"},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    generated = r.json()["generated_password"]
    assert generated and len(generated) >= 16
    assert (await login(client, "new@acme.example.com", generated)).status_code == 200
    problem(
        await client.post(
            "/api/v1/members",
            json={"email": "x@acme.example.com", "role": "viewer"},
            headers=viewer.headers,
        ),
        403,
    )
    problem(
        await client.patch(
            f"/api/v1/members/{admin.user_id}", json={"role": "viewer"}, headers=admin.headers
        ),
        409,
    )
    r = await client.patch(
        f"/api/v1/members/{viewer.user_id}", json={"role": "admin"}, headers=admin.headers
    )
    assert r.json()["role"] == "admin"
    # Roles are read per request: the promotion applies to the viewer's current token.
    assert (await client.get("/api/v1/api-keys", headers=viewer.headers)).status_code == 200
    members = (await client.get("/api/v1/members", headers=admin.headers)).json()["items"]
    assert len(members) == 3
    problem(
        await client.patch(
            f"/api/v1/members/{admin.user_id}", json={"role": "root"}, headers=admin.headers
        ),
        422,
    )


async def test_login_throttle(client, admin: Actor, runtime):
    runtime.throttle.max_failures = 3
    for _ in range(3):
        problem(await login(client, admin.email, "wrong-password"), 401)
    r = await login(client, admin.email)  # even the right password waits now
    problem(r, 429)
    assert int(r.headers["retry-after"]) > 0


async def test_change_password(client, admin: Actor):
    other_login = (await login(client, admin.email)).json()
    wrong = await client.post(
        "/api/v1/auth/password",
        json={"current_password": "nope", "new_password": "a-new-long-password"},
        headers=admin.headers,
    )
    assert problem(wrong, 422)["errors"][0]["field"] == "current_password"
    r = await client.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "a-new-long-password"},
        headers=admin.headers,
    )
    assert r.status_code == 204
    problem(await login(client, admin.email), 401)
    assert (await login(client, admin.email, "a-new-long-password")).status_code == 200
    # The login that changed it goes on; every other login of the user has ended.
    assert (await client.get("/api/v1/auth/me", headers=admin.headers)).status_code == 200
    other = {"Authorization": f"Bearer {other_login['access_token']}"}
    problem(await client.get("/api/v1/auth/me", headers=other), 401)


@pytest.mark.parametrize("secret", ["changeme", "short"])
def test_production_refuses_placeholder_secret(secret):
    from fieldwatch.core.settings import Settings

    with pytest.raises(ValueError, match="placeholder"):
        Settings(env="production", jwt_secret=secret).check_production_safety()
    Settings(env="development", jwt_secret=secret).check_production_safety()


async def test_api_callers_are_cached_and_dropped_on_credential_events(
    client, admin: Actor, runtime
):
    from fieldwatch.core.events import credentials_changed

    runtime.principals.clear()
    assert (await client.get("/api/v1/devices", headers=admin.headers)).status_code == 200
    assert len(runtime.principals) == 1  # checked once, then trusted for auth_cache_s
    assert (await client.get("/api/v1/devices", headers=admin.headers)).status_code == 200
    assert len(runtime.principals) == 1
    # Another process revoked something: its event empties this process's cache.
    await runtime.bus.publish(credentials_changed(admin.workspace_id, "api_key_revoked"))
    assert len(runtime.principals) == 0


async def test_role_change_applies_to_the_next_call(client, admin: Actor, factory: Factory):
    member = await factory.user("operator", workspace=admin.workspace)
    device = await create_device(client, admin)
    path = f"/api/v1/devices/{device['id']}/commands"
    body = {"command": "ping", "params": {}}
    assert (await client.post(path, json=body, headers=member.headers)).status_code == 201
    r = await client.patch(
        f"/api/v1/members/{member.user_id}", json={"role": "viewer"}, headers=admin.headers
    )
    assert r.status_code == 200, r.text
    problem(await client.post(path, json=body, headers=member.headers), 403)


async def test_a_user_removed_from_their_last_workspace(client, admin: Actor, factory: Factory):
    """``/auth/me`` answers (the user, no workspace); workspace routes answer 403; the
    account routes (password, workspaces, logout) still work."""
    member = await factory.user("operator", workspace=admin.workspace)
    assert (await client.get("/api/v1/devices", headers=member.headers)).status_code == 200
    r = await client.delete(f"/api/v1/members/{member.user_id}", headers=admin.headers)
    assert r.status_code == 204, r.text

    me = await client.get("/api/v1/auth/me", headers=member.headers)
    assert me.status_code == 200, me.text
    body = me.json()
    assert (body["kind"], body["id"], body["email"]) == ("user", str(member.user_id), member.email)
    assert body["workspace"] is None and body["workspaces"] == []
    for path in ("/api/v1/devices", "/api/v1/members", "/api/v1/monitoring/stats"):
        gone = problem(await client.get(path, headers=member.headers), 403)
        assert gone["type"].endswith("no-workspace"), gone
    with_hint = {**member.headers, "X-Workspace": admin.workspace}
    problem(await client.get("/api/v1/devices", headers=with_hint), 403)
    assert (await client.get("/api/v1/workspaces", headers=member.headers)).json()["items"] == []

    change = {"current_password": PASSWORD, "new_password": "a-new-passphrase!"}
    r = await client.post("/api/v1/auth/password", json=change, headers=member.headers)
    assert r.status_code == 204, r.text
    r = await client.post("/api/v1/workspaces", json={"name": "own"}, headers=member.headers)
    assert r.status_code == 201, r.text
    me = (await client.get("/api/v1/auth/me", headers=member.headers)).json()
    assert me["workspace"]["name"] == "own" and me["workspace"]["role"] == "admin"
    assert (await client.get("/api/v1/devices", headers=member.headers)).status_code == 200
    assert (await client.post("/api/v1/auth/logout", headers=member.headers)).status_code == 204
    problem(await client.get("/api/v1/auth/me", headers=member.headers), 401)
