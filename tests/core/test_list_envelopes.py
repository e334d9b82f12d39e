"""Every list answers one envelope, ``{items, total, limit, offset}``, paged with
``limit`` and ``offset`` (cursor-paged reads and logs have pages of their own)."""

from __future__ import annotations

from conftest import Actor, create_device
from fieldwatch.runtime import Runtime
from rollout_helpers import body as rollout_body
from rollout_helpers import launch, make_artifact, make_devices

PAGE_KEYS = {"items", "total", "limit", "offset"}
#: Lists paged otherwise: by cursor (readings) or by the id of the oldest entry (logs).
OTHER_PAGES = {
    "/api/v1/devices/{device_id}/data",
    "/api/v1/devices/{device_id}/connectivity",
    "/api/v1/devices/{device_id}/logs",
    "/api/v1/monitoring/data",
    "/api/v1/monitoring/data/{device_id}",
}
#: Lists whose items come from a vendor's cloud (a connection is needed): their envelope
#: is checked with the vendor's stand-in (tests/integrations/test_sync.py).
VENDOR_LISTS = {"/api/v1/integrations/{kind}/devices"}


def _list_routes(schema: dict) -> set[str]:
    """The GET routes that answer a page or an array."""
    found = set()
    for path, operations in schema["paths"].items():
        get = operations.get("get")
        if get is None:
            continue
        content = get["responses"].get("200", {}).get("content", {})
        body = content.get("application/json", {}).get("schema", {})
        name = body.get("$ref", "").rsplit("/", 1)[-1]
        if body.get("type") == "array" or "Page" in name:
            found.add(path)
    return found


async def test_no_list_answers_a_bare_array(app):
    schema = app.openapi()
    for path in _list_routes(schema) - OTHER_PAGES:
        body = schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
        assert "$ref" in body["schema"], path
        ref = body["schema"]["$ref"].rsplit("/", 1)[-1]
        assert ref.startswith("Page_"), (path, ref)
        names = {p["name"] for p in schema["paths"][path]["get"].get("parameters", [])}
        assert {"limit", "offset"} <= names, path


async def test_every_list_answers_the_envelope(client, app, admin: Actor, runtime: Runtime):
    device = await create_device(client, admin)
    artifact = await make_artifact(runtime, admin.workspace_id)
    targets = await make_devices(runtime, admin.workspace_id, 2)
    rollout = await launch(client, admin, rollout_body(artifact, targets))

    await client.post(f"/api/v1/devices/{device['id']}/tokens", headers=admin.headers)
    await client.post("/api/v1/api-keys", json={"name": "k"}, headers=admin.headers)
    await client.post("/api/v1/provisioning-keys", json={"name": "p"}, headers=admin.headers)
    r = await client.post("/api/v1/webhooks", json={"url": "https://1.1.1.1/h"},
                          headers=admin.headers)  # fmt: skip
    group = await client.post("/api/v1/device-groups", json={"name": "g"}, headers=admin.headers)
    ids = {"device_id": device["id"], "webhook_id": r.json()["id"], "group_id": group.json()["id"]}
    routes = _list_routes(app.openapi()) - OTHER_PAGES - VENDOR_LISTS
    assert {"/api/v1/webhooks", "/api/v1/alert-rules", "/api/v1/members",
            "/api/v1/webhooks/{webhook_id}/deliveries", "/api/v1/devices",
            "/api/v1/alerts"} <= routes  # fmt: skip
    for route in sorted(routes):
        path = route.format(**ids, rollout_id=rollout)
        r = await client.get(path, params={"limit": 1, "offset": 0}, headers=admin.headers)
        assert r.status_code == 200, (path, r.text)
        body = r.json()
        assert set(body) == PAGE_KEYS, (path, body)
        assert (body["limit"], body["offset"]) == (1, 0) and len(body["items"]) <= 1, path
        assert body["total"] >= len(body["items"]), path
        r = await client.get(path, params={"limit": 501}, headers=admin.headers)
        assert r.status_code == 422, path
        r = await client.get(path, params={"offset": -1}, headers=admin.headers)
        assert r.status_code == 422, path


async def test_pages_of_a_list_do_not_overlap(client, admin: Actor):
    for n in range(3):
        await client.post("/api/v1/api-keys", json={"name": f"k{n}"}, headers=admin.headers)
    seen = []
    for offset in range(4):
        r = await client.get("/api/v1/api-keys", params={"limit": 1, "offset": offset},
                             headers=admin.headers)  # fmt: skip
        assert r.json()["total"] == 3
        seen += [k["name"] for k in r.json()["items"]]
    assert seen == ["k0", "k1", "k2"]
