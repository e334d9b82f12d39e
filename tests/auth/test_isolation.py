"""Two workspaces: nothing of A is visible to or changeable by B (404, never 403)."""

from __future__ import annotations

from conftest import Actor, Factory, create_device, problem


def device_routes(device_id: str, token_id: str) -> list[tuple[str, str, dict | None]]:
    base = f"/api/v1/devices/{device_id}"
    return [
        ("GET", base, None),
        ("PATCH", base, {"name": "hijacked"}),
        ("PUT", base, {"name": "hijacked"}),
        ("DELETE", base, None),
        ("DELETE", f"{base}?purge=true", None),
        ("GET", f"{base}/logs", None),
        ("PUT", f"{base}/deploy", {"location": "B's site"}),
        ("PUT", f"{base}/recall", {"location": "B's warehouse"}),
        ("PUT", f"{base}/maintenance", {}),
        ("PUT", f"{base}/reserve", {}),
        ("PUT", f"{base}/retire", {}),
        ("PUT", f"{base}/status", {"status": "retired"}),
        ("POST", f"{base}/tokens", {}),
        ("GET", f"{base}/tokens", None),
        ("DELETE", f"{base}/tokens/{token_id}", None),
    ]


async def _b_credentials(client, factory: Factory) -> list[dict[str, str]]:
    b_admin = await factory.user("admin", "globex")
    key = (
        await client.post(
            "/api/v1/api-keys", json={"name": "b-script", "role": "admin"}, headers=b_admin.headers
        )
    ).json()["key"]
    return [b_admin.headers, {"Authorization": f"Bearer {key}"}]


async def test_other_workspace_gets_404_on_every_device_route(client, factory: Factory):
    a_admin = await factory.user("admin", "acme")
    device = await create_device(client, a_admin, serial_number="A-1", location="A's site")
    token = (
        await client.post(f"/api/v1/devices/{device['id']}/tokens", headers=a_admin.headers)
    ).json()
    for headers in await _b_credentials(client, factory):
        for method, url, body in device_routes(device["id"], token["id"]):
            r = await client.request(method, url, json=body, headers=headers)
            problem(r, 404)
        listing = (await client.get("/api/v1/devices", headers=headers)).json()
        assert listing["total"] == 0
        assert (await client.get("/api/v1/devices?q=A-1", headers=headers)).json()["items"] == []
        summary = (await client.get("/api/v1/inventory/summary", headers=headers)).json()
        assert summary["total"] == 0
        export = await client.get("/api/v1/devices/export", headers=headers)
        assert "A-1" not in export.text
    after = (await client.get(f"/api/v1/devices/{device['id']}", headers=a_admin.headers)).json()
    assert after == device
    logs = (
        await client.get(f"/api/v1/devices/{device['id']}/logs", headers=a_admin.headers)
    ).json()
    assert [row["action"] for row in logs["items"]] == ["token_issued", "created"]
    tokens = (
        await client.get(f"/api/v1/devices/{device['id']}/tokens", headers=a_admin.headers)
    ).json()["items"]
    assert tokens[0]["revoked_at"] is None


async def test_import_in_b_cannot_touch_a_by_serial(client, factory: Factory):
    a_admin = await factory.user("admin", "acme")
    device = await create_device(client, a_admin, serial_number="SHARED-1", name="A's")
    b_admin = await factory.user("admin", "globex")
    r = await client.post(
        "/api/v1/devices/import",
        content="name,type,serial_number\nB's,meter,SHARED-1\n",
        headers={**b_admin.headers, "content-type": "text/csv"},
    )
    assert r.json()["created"] == 1 and r.json()["updated"] == 0
    after = (await client.get(f"/api/v1/devices/{device['id']}", headers=a_admin.headers)).json()
    assert after["name"] == "A's"


async def test_members_and_keys_are_per_workspace(client, factory: Factory):
    a_admin = await factory.user("admin", "acme")
    b_admin = await factory.user("admin", "globex")
    key = (
        await client.post("/api/v1/api-keys", json={"name": "a-key"}, headers=a_admin.headers)
    ).json()
    problem(await client.delete(f"/api/v1/api-keys/{key['id']}", headers=b_admin.headers), 404)
    problem(
        await client.patch(
            f"/api/v1/members/{a_admin.user_id}", json={"role": "viewer"}, headers=b_admin.headers
        ),
        404,
    )
    problem(await client.delete(f"/api/v1/members/{a_admin.user_id}", headers=b_admin.headers), 404)
    members = (await client.get("/api/v1/members", headers=b_admin.headers)).json()["items"]
    assert [m["email"] for m in members] == [b_admin.email]


async def test_x_workspace_cannot_reach_a_workspace_you_are_not_in(client, factory: Factory):
    a_admin = await factory.user("admin", "acme")
    await create_device(client, a_admin)
    b_admin: Actor = await factory.user("admin", "globex")
    for hint in ("acme", str(a_admin.workspace_id)):
        problem(
            await client.get("/api/v1/devices", headers={**b_admin.headers, "X-Workspace": hint}),
            404,
        )
